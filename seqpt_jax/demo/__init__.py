"""`seqpt demo`: the whole sequential recipe end to end, on the embedded corpus, resumable.

    from seqpt_jax.demo import run
    result = run("demo-out", minutes=15)   # result["text"]: the summary table

Layout: plan.py (sizes and step budgets), stages.py (DONE markers, skip on rerun),
recipe.py (the stages), backend.py (trainer / fine-tuning calls), report.py (table and plot).
"""

from __future__ import annotations

from seqpt_jax.demo.plan import DEFAULT_MINUTES, DEMO_LANGS, Plan


def run(out, minutes: float = DEFAULT_MINUTES, corpus=None, log=print, progress=None,
        plan: Plan | None = None, backend=None) -> dict:
    """Runs every stage not done yet under `out`; returns the summary (paths, text, stages)."""
    from seqpt_jax.demo.backend import Backend
    from seqpt_jax.demo.recipe import Demo
    plan = plan or Plan().scaled(minutes)
    return Demo(out, plan, backend or Backend(plan, progress), corpus=corpus, log=log).run()


__all__ = ["DEFAULT_MINUTES", "DEMO_LANGS", "Plan", "run"]
