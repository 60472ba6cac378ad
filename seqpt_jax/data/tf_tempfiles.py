"""TensorFlow imported quietly and cleanly, only where a seqio/TFDS task needs it
(`import_tensorflow`: its native start-up lines filtered, no autograph leftovers).

Every Python function a tf.data `map` runs (seqio's preprocessors and feature converters, ours)
is converted by autograph into a module whose source is written to the temp dir as
`__autograph_generated_file*.py` and imported from there. TensorFlow deletes these files in an
`atexit` handler, which never runs when a process is killed (a preempted or timed-out run, a
test worker torn down), so they piled up in /tmp. `delete_autograph_sources` makes autograph
delete each file as soon as its module is imported: nothing is left whatever ends the process.
The modules are loaded by then; only source lines in later tracebacks through generated code
are lost.

TensorFlow prints native start-up lines (under seqio/TFDS) before any log level applies;
`import_tensorflow` captures file descriptor 2 while it imports and passes on everything else.
Training on the embedded corpus or an exported one never imports it (docs/experiments.md).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

PREFIX = "__autograph_generated_file"


def delete_autograph_sources() -> bool:
    """Installs the deletion (idempotent); False when this TensorFlow has no such loader."""
    try:
        from tensorflow.python.autograph.pyct import loader
    except ImportError:
        return False
    original = getattr(loader, "load_source", None)
    if original is None or getattr(original, "deletes_source", False):
        return original is not None

    def load_source(source, delete_on_exit):
        module, file_name = original(source, delete_on_exit)
        if os.path.basename(file_name).startswith(PREFIX):
            try:
                os.remove(file_name)
            except OSError:
                pass
        return module, file_name

    load_source.deletes_source = True
    loader.load_source = load_source
    return True


# TensorFlow's native start-up lines, printed before any log level applies.
_NATIVE_NOISE = re.compile(r"^(I0000 |W0000 |WARNING: All log messages before absl::InitializeLog)")


@contextlib.contextmanager
def native_startup_noise_filtered():
    """Captures file descriptor 2 while imports run, then passes on all but the noise above."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (e.g. under a test runner): nothing to filter
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(True)
                    if not _NATIVE_NOISE.match(line)]
            sys.stderr.write("".join(kept))


def import_tensorflow():
    """The tensorflow module, imported once with its start-up noise filtered and autograph's
    source files deleted as they load; seqio and TFDS are imported after it."""
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with native_startup_noise_filtered():
            import tensorflow  # noqa: F401
    delete_autograph_sources()
    return sys.modules["tensorflow"]
