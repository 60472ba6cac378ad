"""`seqpt bench train|freeze|phases|data`: tokens/s, TFLOP/s per device, MFU and per-phase cost on this hardware.

  seqpt bench train --gin_file=models/bert_small.gin --gin_file=runs/pretrain_mlm.gin \
      --gin_file=hw/cpu.gin --gin.VOCAB=... [--steps 20]
  seqpt bench freeze [--steps 20]     frozen (encoder stop-gradient) vs unfrozen t5 steps
  seqpt bench phases --gin_file=models/t5_tiny.gin --gin_file=runs/warmstart_seq2seq.gin \
      --gin_file=hw/cpu.gin [--rounds 5 --steps 3]
                                      every phase of a run: counted vs jaxpr GFLOP, ms/step,
                                      (time ratio to full) / (FLOPs ratio to full)
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
    parser.add_argument("what", choices=["train", "freeze", "phases", "data"])
    parser.add_argument("--gin_file", action="append", default=[])
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps (train/freeze: default 20, the first compiles; phases: per "
                             "phase and round, default 3)")
    parser.add_argument("--rounds", type=int, default=5, help="phases: timing rounds, phases alternating")
    rest, bindings = split_gin_args(argv)
    args = parser.parse_args(rest)
    if args.what == "phases":
        if not args.gin_file:
            raise UserError("seqpt bench phases needs --gin_file=... (models/, runs/, hw/ as for seqpt train).")
        if args.rounds < 1 or (args.steps is not None and args.steps < 1):
            raise UserError("--rounds and --steps must be at least 1.")
        from seqpt_jax.bench import phases as phases_bench
        return phases_bench.main_phases(args.gin_file, bindings, args.rounds, args.steps or 3)
    args.steps = 20 if args.steps is None else args.steps
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
