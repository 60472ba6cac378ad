"""`seqpt bench train|freeze|phases|data`: tokens/s, TFLOP/s per device, MFU and per-phase cost on this hardware.

  seqpt bench train --gin_file=models/bert_small.gin --gin_file=runs/pretrain_mlm.gin \
      --gin_file=hw/cpu.gin --gin.VOCAB=... [--steps 20]
  seqpt bench train --vs hf [--size small|bert-base|mt5-small|gpu] [--model t5|bert|both]
      [--rounds 3] [--steps N] [--gin_file=hw/gpu.gin]
                                      the same model in Hugging Face transformers (PyTorch) on
                                      the same device, timed alternately in this process:
                                      tokens/s of both, ratio, MFU (docs/performance.md)
  seqpt bench gpu-suite --out DIR     the one-shot GPU check: cuDNN vs XLA attention numerics,
                                      chunked-loss equality, the --vs hf table at both GPU sizes
  seqpt bench freeze [--steps 20]     frozen (encoder stop-gradient) vs unfrozen t5 steps
  seqpt bench phases --gin_file=models/t5_tiny.gin --gin_file=runs/warmstart_seq2seq.gin \
      --gin_file=hw/cpu.gin [--rounds 5 --steps 3]
                                      every phase of a run: counted vs jaxpr GFLOP, ms/step,
                                      (time ratio to full) / (FLOPs ratio to full)
  seqpt bench data [...]              the input pipeline against the trainer's appetite
"""

from __future__ import annotations

import argparse

from seqpt_jax.bench import vs_hf
from seqpt_jax.errors import UserError


def main(argv: list[str]) -> int:
    if argv and argv[0] == "data":
        from seqpt_jax.bench import data as data_bench
        return int(data_bench.main_data(argv[1:]) or 0)
    if argv and argv[0] == "gpu-suite":
        from seqpt_jax.bench import gpu_suite
        return int(gpu_suite.main(argv[1:]) or 0)
    from seqpt_jax.bench import train as train_bench
    from seqpt_jax.commands.train import split_gin_args
    parser = argparse.ArgumentParser(prog="seqpt bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["train", "freeze", "phases", "data", "gpu-suite"])
    parser.add_argument("--gin_file", action="append", default=[])
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps (train/freeze: default 20, the first compiles; phases: per "
                             "phase and round, default 3)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="phases: timing rounds, phases alternating (default 5); with --vs hf: "
                             "alternating timed rounds of --steps steps each (default 3; steps: 2 on "
                             "a CPU, 10 on a GPU)")
    parser.add_argument("--vs", choices=["hf"], help="train: compare with Hugging Face transformers "
                        "on the same device (hw/gpu.gin on a GPU, else hw/cpu.gin, unless --gin_file "
                        "names an hw/ file)")
    parser.add_argument("--size", choices=list(vs_hf.SIZES), default="small",
                        help="with --vs hf: small = t5 v1.1 4+4 / bert 4 layers, d 256, d_ff 1024, "
                             "vocab 8000, batch 32 x 128 (-> 32); bert-base = vocab 32k, 64 x 512; "
                             "mt5-small = vocab 250,112, 64 x 512 -> 114; gpu = both of those")
    parser.add_argument("--model", choices=["t5", "bert", "both"], default="both",
                        help="with --vs hf --size small")
    rest, bindings = split_gin_args(argv)
    args = parser.parse_args(rest)
    if args.vs:
        if args.what != "train":
            raise UserError(f"--vs hf compares train steps; use `seqpt bench train --vs hf`, not {args.what}.")
        args.rounds = 3 if args.rounds is None else args.rounds
        return _vs_hf(args, bindings)
    if args.what == "phases":
        args.rounds = 5 if args.rounds is None else args.rounds
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


def _vs_hf(args, bindings: list[str]) -> int:
    if args.rounds < 3:
        raise UserError(f"--rounds {args.rounds} gives no median worth reading; use at least 3.")
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps {args.steps}: time at least 1 step per round.")
    names = vs_hf.SIZES[args.size]
    if args.size == "small" and args.model != "both":
        names = (args.model,)
    for name in names:
        cfg, steps = vs_hf.seqpt_config(name, args.gin_file, bindings), args.steps
        steps = steps or (10 if vs_hf.on_gpu() else 2)
        print(vs_hf.report(vs_hf.compare(name, cfg, rounds=args.rounds, steps=steps)), flush=True)
    return 0

