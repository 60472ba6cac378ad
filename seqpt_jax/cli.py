"""The `seqpt` command: a thin dispatcher over `seqpt_jax/commands/<name>.py`.

Each command module defines `main(argv) -> int` with its own argparse parser. Modules are
imported only when their command runs, so `seqpt --help` stays fast and a command never pays
for another's dependencies. A `UserError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile

from seqpt_jax.errors import UserError

# name -> one-line help. The module is seqpt_jax.commands.<name>.
COMMANDS = {
    "models": "list presets with their parameter counts (and published counts)",
    "grow": "grow a checkpoint into a larger model (bert2BERT FPI/AKI, stacking, DirectCopy)",
    "warmstart": "seq2seq checkpoint whose encoder is an MLM/encoder checkpoint's (Soltan et al.)",
    "extract": "the encoder of a seq2seq checkpoint, with a fresh MLM head",
    "convert": "convert Hugging Face checkpoints to seqpt_jax and back",
    "corpus": "build the embedded multilingual corpus from Debian packages",
    "vocab": "train a SentencePiece vocabulary on the corpus (mT5 conventions, sentinels on top) or extend one for new languages",
    "finetune": "fine-tune a checkpoint on a downstream task; scores per language (zero-shot + in-language)",
    "eval": "score a fine-tuned model on test files or the corpus's languages",
    "train": "train a model from gin files (models/ + runs/ + hw/), resuming from MODEL_DIR",
    "bench": "measure tokens/s, TFLOP/s per device and MFU (train | freeze | phases | data)",
    "experiment": "reproduce the papers' claims: arms x seeds, scratch baselines, savings report (or --plan)",
    "demo": "both experiments (growth, sequential) at demo scale: every claim checked (resumable; ~15 min on 2 CPUs)",
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {text}" for name, text in COMMANDS.items())
    return ("usage: seqpt COMMAND [options]   (seqpt COMMAND --help for its options)\n\n"
            f"commands:\n{rows}\n")


# Commands whose work imports TensorFlow (seqio, tf.summary); it is imported up front for them,
# inside the filter below, so its start-up lines never reach the user.
_USES_TENSORFLOW = {"vocab", "train", "bench", "finetune", "eval", "demo", "experiment"}
# TensorFlow's native start-up lines (under seqio/tfds), printed before any log level applies.
_NATIVE_NOISE = re.compile(r"^(I0000 |W0000 |WARNING: All log messages before absl::InitializeLog)")


@contextlib.contextmanager
def _native_startup_noise_filtered():
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage(), end="")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"seqpt: error: unknown command {name!r}; run `seqpt --help` for the list.", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _native_startup_noise_filtered():
        if name in _USES_TENSORFLOW:
            importlib.import_module("tensorflow")
            from seqpt_jax.data.tf_tempfiles import delete_autograph_sources
            delete_autograph_sources()
        module = importlib.import_module(f"seqpt_jax.commands.{name.replace('-', '_')}")
    try:
        return int(module.main(rest) or 0)
    except UserError as e:
        # gin appends "In call to configurable ..." lines to errors raised under it; the first
        # line is the one that names the problem and the fix.
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"seqpt {name}: error: {message}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"seqpt {name}: interrupted; completed work is kept, rerun to continue.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
