"""The `seqpt` command: a thin dispatcher over `seqpt_jax/commands/<name>.py`.

Each command module defines `main(argv) -> int` with its own argparse parser. Modules are
imported only when their command runs, so `seqpt --help` stays fast and a command never pays
for another's dependencies (TensorFlow is imported only where a seqio/TFDS task is used). A
`UserError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage(), end="")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"seqpt: error: unknown command {name!r}; run `seqpt --help` for the list.", file=sys.stderr)
        return 2
    # No command imports TensorFlow up front: only a seqio/TFDS task does, when it is used
    # (data/tf_tempfiles.import_tensorflow), so training on the embedded corpus or an exported
    # one runs where TensorFlow is not installed.
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
