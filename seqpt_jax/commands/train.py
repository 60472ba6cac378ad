"""`seqpt train --gin_file=... [--gin_file=...] --gin.MODEL_DIR=... [--gin.X=...]` (T5X style).

Gin files compose in the order given (models/, runs/, hw/; later bindings win), then the
`--gin.X=V` bindings. Files are looked up as given, then under the package's gin/ folder
(seqpt_jax/gin), so `--gin_file=runs/pretrain_mlm.gin` works from anywhere. String values may
be given bare: `--gin.MODEL_DIR=/tmp/run` means `MODEL_DIR = '/tmp/run'`. The run is `train.loop.train`
called through gin (`launcher`); the operative config is written to MODEL_DIR/config.gin beside the
rest of the run directory's layout (seqpt_jax/train/run_dir.py, LAYOUT).

Every --gin.X must name a macro the files define or a parameter that exists (a typo is an
error with the closest names). One trainer per MODEL_DIR (MODEL_DIR/trainer.lock); a rerun
resumes only with the settings recorded in MODEL_DIR/run.json (more TRAIN_STEPS, another
learning rate or cadence are fine; see docs/reliability.md).

Exit codes: 0 done; 2 a mistake, named in one line with the fix; 3 the loss became NaN/inf;
143 stopped by SIGTERM (preemption) and 130 by Ctrl-C, each after saving a checkpoint of the
current step: rerun the same command to continue.
"""

from __future__ import annotations

import argparse
import sys

from seqpt_jax import gin_config
from seqpt_jax.errors import UserError

# The gin plumbing lives in seqpt_jax/gin_config.py; these names stay importable from here.
GIN_DIR, BINDING_IMPORTS = gin_config.GIN_DIR, gin_config.BINDING_IMPORTS
split_gin_args, parse_gin, macros_defined_by = gin_config.split_gin_args, gin_config.parse, gin_config.macros_defined_by


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="seqpt train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="--gin.NAME=VALUE  any gin binding, e.g. --gin.MODEL_DIR=/tmp/run "
                                            "--gin.TRAIN_STEPS=200")
    parser.add_argument("--gin_file", action="append", default=[],
                        help="gin file (repeatable; models/, runs/, hw/ compose)")
    parser.add_argument("--gin_search_path", action="append", default=[],
                        help="extra folder to look up gin files and includes in")
    rest, bindings = gin_config.split_gin_args(argv)
    args = parser.parse_args(rest)
    if not args.gin_file:
        raise UserError("no --gin_file given; e.g. --gin_file=models/bert_tiny.gin "
                        "--gin_file=runs/pretrain_mlm.gin --gin_file=hw/cpu.gin --gin.MODEL_DIR=/tmp/run")
    from seqpt_jax import launcher
    summary = launcher.train(args.gin_file, bindings, search=args.gin_search_path, distributed=True)
    if summary.get("stopped"):
        from seqpt_jax.train.preemption import EXIT_CODES
        print(f"stopped by {summary['stopped']} after step {summary['stopped_at']} of {summary['steps']}; the "
              f"checkpoint is saved: rerun the same command to continue (exit code "
              f"{EXIT_CODES[summary['stopped']]}).", file=sys.stderr)
        return EXIT_CODES[summary["stopped"]]
    print(f"trained {summary['steps']} steps: loss {summary['first_loss']} -> {summary['last_loss']}; "
          f"{summary['train_flops']:.3e} training FLOPs", file=sys.stderr)
    return 0
