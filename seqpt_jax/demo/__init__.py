"""`seqpt demo`: the demo scale of both reproduction experiments (`growth`: bert2BERT;
`sequential`: Soltan et al.), one seed, resumable, with one summary and one plot.

    from seqpt_jax.demo import run
    result = run("demo-out")   # result["text"]: per claim, what this run shows

Layout: suite.py (the corpus, then both experiments through `experiment.runner`), report.py
(summary.md/json and the plot of every arm), recipe.py (the corpus; the downstream slice),
stages.py (DONE markers: skip on rerun), backend.py (loss curves, fine-tuning), plan.py (sizes).
"""

from __future__ import annotations

from seqpt_jax.demo.plan import DEMO_LANGS
from seqpt_jax.demo.suite import EXPERIMENTS, SCALE, run

__all__ = ["DEMO_LANGS", "EXPERIMENTS", "SCALE", "run"]
