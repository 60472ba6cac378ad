"""`seqpt demo`: both reproduction experiments at their demo scale, one seed, in one folder.

  growth      (bert2BERT) a small MLM encoder grown into a larger one (FPI, AKI, AKI + two-stage,
              StackBERT, DirectCopy, a random-init control) beside the larger one from scratch
  sequential  (Soltan et al.) an MLM encoder; a seq2seq model from scratch and warm-started from
              the encoder (frozen 0/25/50/100 %); encoders extracted from seq2seq models;
              the encoders and a random init fine-tuned, tested zero-shot on six languages

It finds the embedded corpus (or builds the demo languages, a few minutes), trains one
vocabulary, runs every arm (`seqpt experiment run NAME --scale demo`), writes each experiment's
report, and OUT/summary.md: per claim, what this run shows, with OUT/loss_vs_flops.png (every
arm against its scratch baseline on one FLOPs axis, without and with its source's FLOPs).
Every arm writes a DONE marker: a rerun with the same --out skips finished arms and resumes
a killed one from its checkpoint.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str]) -> int:
    from seqpt_jax.experiment.demo import DEMO_LANGS, EXPERIMENTS, SCALE
    parser = argparse.ArgumentParser(
        prog="seqpt demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="seqpt-demo", help="output directory (default: ./seqpt-demo); "
                        "rerun with the same --out to continue")
    parser.add_argument("--corpus", help="corpus directory (default: the built corpus in the data dir, "
                        f"else a build of {','.join(DEMO_LANGS)} beside it)")
    parser.add_argument("--plan", action="store_true", help="print each experiment's arms, sizes, FLOPs and "
                        "expected time (`seqpt experiment run NAME --scale demo --plan`) and exit")
    parser.add_argument("--no-progress", action="store_true", help="plain log lines, no progress bars")
    args = parser.parse_args(argv)
    if args.plan:
        from seqpt_jax.experiment import plan as plan_lib
        plans = [plan_lib.plan(name, SCALE, 1) for name in EXPERIMENTS]
        print("\n".join(plan_lib.text(p) for p in plans))
        total = sum(p["total_seconds"] or 0.0 for p in plans)
        print(f"both experiments: {total / 60:.1f} min of training and evaluation at the declared throughput; "
              "the corpus, vocabulary, compiles and fine-tuning come on top")
        return 0
    from seqpt_jax.experiment import demo
    from seqpt_jax.train.preemption import EXIT_CODES, Stopped
    start = time.time()
    try:
        result = demo.run(args.out, corpus=args.corpus, progress=False if args.no_progress else None)
    except Stopped as e:
        print(e, file=sys.stderr)
        return EXIT_CODES[e.reason]
    print("\n" + result["text"])
    print(f"summary: {result['markdown']}  {result['json']}\nplot:    {result['plot']}")
    print(f"demo finished in {time.time() - start:.0f} s; stages run now: {len(result['ran'])}")
    return 0
