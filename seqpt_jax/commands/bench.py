"""`seqpt bench train|freeze|data`: tokens/s, TFLOP/s per device and MFU on this hardware.

  seqpt bench train --gin_file=models/bert_small.gin --gin_file=runs/pretrain_mlm.gin \
      --gin_file=hw/cpu.gin --gin.VOCAB=... [--steps 20]
  seqpt bench freeze [--steps 20]     frozen (encoder stop-gradient) vs unfrozen t5 steps
  seqpt bench data [...]              the input pipeline against the trainer's appetite
"""

from __future__ import annotations

import argparse

from seqpt_jax.errors import UserError


def main(argv: list[str]) -> int:
    if argv and argv[0] == "data":
        from seqpt_jax.bench import data as data_bench
        return int(data_bench.main_data(argv[1:]) or 0)
    from seqpt_jax.bench import train as train_bench
    from seqpt_jax.commands.train import split_gin_args
    parser = argparse.ArgumentParser(prog="seqpt bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["train", "freeze", "data"])
    parser.add_argument("--gin_file", action="append", default=[])
    parser.add_argument("--steps", type=int, default=20, help="timed steps (the first compiles)")
    rest, bindings = split_gin_args(argv)
    args = parser.parse_args(rest)
    if args.steps < 4:
        raise UserError(f"--steps {args.steps} is too few to time; use at least 4.")
    if args.what == "freeze":
        summary = train_bench.freeze_comparison(args.steps, args.gin_file or None, bindings)
        print(train_bench.report(summary))
        t = summary["throughput"]
        if {"frozen", "full"} <= set(t):
            print(f"frozen step / unfrozen step time: {t['frozen']['step_time'] / t['full']['step_time']:.2f}")
        return 0
    if not args.gin_file:
        raise UserError("seqpt bench train needs --gin_file=... (models/, runs/, hw/ as for seqpt train).")
    print(train_bench.report(train_bench.run(args.gin_file, bindings, args.steps)))
    return 0
