"""The demo: both reproduction experiments at `--scale demo`, one seed, in one folder.

    OUT/corpus/DONE        where the corpus is (found, or a demo-sized build: recipe.find_corpus)
    OUT/growth/            `seqpt experiment run growth --scale demo` (its vocab/ is the demo's)
    OUT/sequential/        `seqpt experiment run sequential --scale demo`, same corpus and vocabulary
    OUT/<experiment>/report.{md,json}, loss_vs_flops.png    each experiment's own report
    OUT/summary.{md,json}, OUT/loss_vs_flops.png           both, per claim, one plot (report.py)

Each arm is a resumable stage of `experiment.runner` (DONE markers; a killed run resumes from
its checkpoint), so a rerun with the same OUT skips what has finished.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

EXPERIMENTS = ("growth", "sequential")
SCALE = "demo"


def run(out: str | os.PathLike, corpus: str | None = None, log: Callable[[str], None] = print,
        progress: bool | None = None, scale: str = SCALE, arms: dict | None = None) -> dict:
    """Runs whatever is not done yet, writes every report; returns the summary's paths and text.
    `arms`: {experiment: [arm, ...]} runs those arms and what they need (the tests' subset)."""
    from seqpt_jax.demo import report
    from seqpt_jax.demo.plan import Plan
    from seqpt_jax.demo.recipe import find_corpus
    from seqpt_jax.demo.stages import StageRunner
    from seqpt_jax.experiment import report as experiment_report, runner
    out = Path(out).expanduser()
    stages = StageRunner(out, log=log)
    src = stages.run("corpus", lambda w: {"corpus": str(find_corpus(corpus, Plan(), log, progress))},
                     "find or build the embedded corpus")["corpus"]
    ran, vocab, reports = list(stages.ran), None, {}
    for name in EXPERIMENTS:
        log(f"== experiment {name} at --scale {scale}, 1 seed, in {out / name}")
        exp = runner.Runner(name, scale, 1, out / name, corpus=src, vocab=vocab, log=log, progress=progress,
                            only=(arms or {}).get(name))
        ran += [f"{name}/{stage}" for stage in exp.run()["ran"]]
        vocab = vocab or exp.vocab_path   # one vocabulary: the demo scales train the same VOCAB_PIECES
        reports[name] = experiment_report.write(out / name)
    return {**report.write(out, reports, scale), "ran": ran}
