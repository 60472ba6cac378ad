"""No TensorFlow autograph leftovers in the system temp dir.

Every Python function a tf.data `map` runs (seqio's preprocessors and feature converters, ours)
is converted by autograph into a module whose source is written to the temp dir as
`__autograph_generated_file*.py` and imported from there. TensorFlow deletes these files in an
`atexit` handler, which never runs when a process is killed (a preempted or timed-out run, a
test worker torn down), so they piled up in /tmp. `delete_autograph_sources` makes autograph
delete each file as soon as its module is imported: nothing is left whatever ends the process.
The modules are loaded by then; only source lines in later tracebacks through generated code
are lost. Called where seqio tasks are registered and where the CLI imports TensorFlow.
"""

from __future__ import annotations

import os

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
