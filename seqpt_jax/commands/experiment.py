"""`seqpt experiment run NAME [--scale S] [--seeds N] [--out DIR] [--plan [--measure]]` and
`seqpt experiment report DIR`: the papers' claims measured, with seeds and scratch baselines.

Experiments are gin files, one per arm, under gin/experiments/NAME/ (`growth`: bert2BERT;
`sequential`: Soltan et al.); scale_<S>.gin sets sizes and budgets (paper | gpu | cpu | demo | test).
`run` trains every arm x seed through `seqpt train`'s gin composition, dependencies first; a
rerun skips finished arms and resumes unfinished ones. `--plan` prints each arm's model size,
tokens, counted FLOPs and expected time, running nothing (`--measure`: timed here). `report` writes report.md,
report.json and plots into DIR (savings: seqpt_jax/experiment/savings.py).
"""

from __future__ import annotations

import argparse
import json
import sys

from seqpt_jax.errors import UserError


def _run(args) -> int:
    from seqpt_jax.experiment import plan as plan_lib, spec
    if args.name not in spec.experiments():
        raise UserError(f"unknown experiment {args.name!r}; choose one of: {', '.join(spec.experiments())}.")
    if args.plan:
        vocab_size = None
        if args.vocab:
            from seqpt_jax.train import data
            vocab_size = data.vocab_size(args.vocab)
        p = plan_lib.plan(args.name, args.scale, args.seeds, args.hw, args.throughput, vocab_size,
                          only=args.arms.split(",") if args.arms else None, measure=args.measure)
        print(json.dumps(p, indent=1) if args.json else plan_lib.text(p), end="" if not args.json else "\n")
        return 0
    from seqpt_jax.experiment import report, runner
    from seqpt_jax.train.preemption import EXIT_CODES, Stopped
    out = args.out or f"experiments/{args.name}-{args.scale}"
    shard = _shard(args.shard)
    _compilation_cache(out)
    try:
        result = runner.Runner(args.name, args.scale, args.seeds, out, hw=args.hw, corpus=args.corpus,
                               vocab=args.vocab, progress=False if args.no_progress else None,
                               only=args.arms.split(",") if args.arms else None, shard=shard).run()
    except Stopped as e:
        print(e, file=sys.stderr)
        return EXIT_CODES[e.reason]
    if shard[1] > 1:  # the other shards may still be running: the report waits for all of them
        print(f"shard {shard[0]}/{shard[1]}: ran {len(result['ran'])} stage(s); once every shard is done: "
              f"seqpt experiment report {out}", file=sys.stderr)
        return 0
    written = report.write(out)
    print(f"ran {len(result['ran'])} stage(s); report: {written['markdown']}", file=sys.stderr)
    return 0


def _shard(text: str | None) -> tuple[int, int]:
    """'I/N' -> (I, N); the Runner checks the range."""
    if not text:
        return 0, 1
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r} is not I/N; give e.g. --shard 0/3 (this process runs seeds 0, 3, 6, ...).") from None
    return index, count


def _compilation_cache(out: str) -> None:
    """JAX's persistent compilation cache in OUT/jax_cache (unless JAX_COMPILATION_CACHE_DIR names
    one): arms of one shape and phase compile the same program whatever their init, and every seed
    repeats them, so all but the first load it instead of compiling (docs/experiments.md)."""
    import os

    import jax
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.abspath(out), "jax_cache"))


def _report(args) -> int:
    from seqpt_jax.experiment import report
    written = report.write(args.dir)
    print(open(written["markdown"], encoding="utf-8").read())
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="seqpt experiment", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or --plan) every arm of an experiment")
    run.add_argument("name", help="growth | sequential (folders of gin/experiments/)")
    run.add_argument("--scale", default="cpu", help="paper | gpu | cpu | demo | test (default cpu)")
    run.add_argument("--seeds", type=int, default=1, help="seeds per arm (default 1)")
    run.add_argument("--out", help="output folder (default experiments/NAME-SCALE)")
    run.add_argument("--plan", action="store_true", help="print sizes, tokens, FLOPs and time; run nothing")
    run.add_argument("--json", action="store_true", help="with --plan: the figures as JSON")
    run.add_argument("--throughput", type=float, help="with --plan: sustained FLOP/s (default: the scale's)")
    run.add_argument("--measure", action="store_true",
                     help="with --plan: time every model shape's train and eval steps, their compiles and a "
                          "fine-tune on this machine, and plan the wall time from those (seconds to minutes)")
    run.add_argument("--hw", default="hw/cpu.gin", help="hardware gin (default hw/cpu.gin)")
    run.add_argument("--corpus", help="corpus folder (default: the one `seqpt corpus build` made), or an exported "
                                      "corpus (`seqpt corpus export`: its own vocabulary, no TensorFlow)")
    run.add_argument("--vocab", help="SentencePiece model (default: trained into OUT/vocab); with --plan, its size")
    run.add_argument("--arms", help="comma-separated arms to run (with the arms they need); default all")
    run.add_argument("--shard", metavar="I/N",
                     help="run only the seeds s with s %% N == I (and their fine-tunes); start N processes, "
                          "I = 0..N-1, on one --out, then `report` it (default: every seed)")
    run.add_argument("--no-progress", action="store_true", help="plain log lines instead of progress bars")
    rep = sub.add_parser("report", help="write report.md, report.json and plots for a run folder")
    rep.add_argument("dir")
    args = parser.parse_args(argv)
    return _run(args) if args.command == "run" else _report(args)
