"""`seqpt eval`: score a model saved by `seqpt finetune` on test files or corpus languages.

  seqpt eval --model DIR/model --task classification --test new.jsonl --vocab spm.model --out EVAL
"""

from __future__ import annotations

import argparse

from seqpt_jax.commands.finetune import (add_task_args, load_vocab, options, resolve_task,
                                         split_gin_bindings, write_results)
from seqpt_jax.errors import UserError


def main(argv: list[str]) -> int:
    argv, bindings = split_gin_bindings(argv)
    parser = argparse.ArgumentParser(prog="seqpt eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_args(parser)
    parser.add_argument("--model", required=True, help="DIR/model written by `seqpt finetune`")
    args = parser.parse_args(argv)

    from seqpt_jax.evaluate import finetune, protocol

    opts = options(args.gin_file, bindings)
    kind, cfg, labels, params = finetune.load(args.model)
    task = resolve_task(args)
    if task.kind != kind:
        raise UserError(f"the model at {args.model} was fine-tuned for {kind}, not {task.kind}; "
                        f"pass --task {kind}.")
    results = protocol.evaluate_saved(task, cfg, labels, params, load_vocab(args.vocab, None), opts)
    results["model"] = args.model
    write_results(results, args.out)
    return 0
