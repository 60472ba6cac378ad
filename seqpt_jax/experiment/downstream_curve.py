"""Downstream score against pre-training FLOPs: the FLOPs-to-target of encoders whose own losses
cannot be compared (ELECTRA's MLM + 50 x RTD against the MLM encoder's MLM loss).

Every arm that declares `'downstream_curve': REF` keeps a checkpoint every
DOWNSTREAM_CURVE_EVERY steps (loop.train.keep_every). Each kept checkpoint is fine-tuned on
TASK alone, with the downstream rows' settings (experiment/downstream.py), and a random init
of the same shape is the curve's FLOPs-0 point, per seed. As Clark et al. (2020) compare
ELECTRA with BERT (GLUE against pre-training FLOPs), with savings.py's definitions on a score:
- target: REF's score at its final checkpoint, the mean over its seeds;
- FLOPs-to-target of a seed: the first pre-training FLOPs at which its score, linear between
  checkpoints, reaches the target (score >= target); none reached: "not reached";
- saving = 1 - arm / REF's training FLOPs, per paired seed, with savings.py's Student-t interval.
One fine-tuning run per point: the interval includes fine-tuning noise only through the seeds.

Stages: downstream_curve/<arm>/seed<k>/step<n>/DONE {"arm", "seed", "step", "flops", "score", ...}.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from seqpt_jax.experiment import savings, spec

TASK = "ja_ner"          # token-level, real labels: where the papers' encoders differ most
RANDOM = "random_init"   # the FLOPs-0 point: a random init of the arms' shape, fine-tuned alike


def every() -> int:
    """The parsed scale's checkpoint interval (0: no curve)."""
    return int(spec.macro("DOWNSTREAM_CURVE_EVERY", 0) or 0)


def flops_at(model_dir: str, step: int) -> float:
    """The counted training FLOPs at a kept checkpoint (its meta, written with the checkpoint)."""
    meta = Path(model_dir) / "checkpoints" / str(step) / "meta" / "metadata"
    return float(json.loads(meta.read_text("utf-8"))["flops"])


def load(out: str | Path) -> dict:
    """{arm: {seed: [(step, flops, score), ...] by step}} from the stages' DONE records."""
    points: dict = {}
    for marker in sorted(Path(out).glob("downstream_curve/*/seed*/step*/DONE")):
        rec = json.loads(marker.read_text("utf-8"))
        points.setdefault(rec["arm"], {}).setdefault(int(rec["seed"]), []).append(
            (int(rec["step"]), float(rec["flops"]), rec["score"]))
    return {arm: {s: sorted(p) for s, p in by_seed.items()} for arm, by_seed in points.items()}


def curves(points: dict, refs: dict) -> dict:
    """Per arm of `refs` ({arm: ref arm}): seeds, per-seed [(flops, score)] starting at the
    random init's point of that seed, the final score and FLOPs, and its reference."""
    out = {}
    for arm, ref in refs.items():
        seeds = sorted(s for s in points.get(arm, {}) if s in points.get(RANDOM, {}))
        rows = []
        for s in seeds:
            start = [(0.0, points[RANDOM][s][0][2])]
            rows.append(start + [(f, score) for _, f, score in points[arm][s]])
        out[arm] = {"reference": ref, "seeds": seeds, "curves": rows,
                    "steps": [[st for st, _, _ in points[arm][s]] for s in seeds],
                    "final_score": [c[-1][1] for c in rows], "train_flops": [c[-1][0] for c in rows]}
    return out


def stats(table: dict) -> dict:
    """Per arm with a reference other than itself: savings.arm_savings on the negated scores
    (higher is better), stated back in score units ("target", "closest_gap" = how far short)."""
    out = {}
    for arm, row in table.items():
        ref = table.get(row["reference"])
        if row["reference"] == arm or not ref or not ref["seeds"] or not row["seeds"]:
            continue
        neg = lambda cs: [[(f, -s) for f, s in c] for c in cs]  # noqa: E731
        st = savings.arm_savings(neg(row["curves"]), neg(ref["curves"]), ref["train_flops"])
        out[arm] = {"reference": row["reference"], "target": -st["target"], "reached": st["reached"],
                    "reference_flops": st["scratch_flops"], "flops_to_target": st["flops_to_target"],
                    "saving": st["saving"], "saving_ci": st["saving_ci"], "seeds_paired": st["seeds_paired"],
                    "saving_per_seed": st["saving_per_seed"],
                    "min_effect": True,  # no held-out loss here: the fine-tuning noise is in the seeds' spread
                    "closest_gap": st["closest_gap"], "final_score": row["final_score"],
                    # claims._missed on negated scores: short of the reference's finals beyond the seeds' spread
                    "final_val_loss": [-s for s in row["final_score"]], "targets": st["targets"], "eval_noise": 0.0}
    return out


def build(out: str | Path, refs: dict) -> dict | None:
    """The report's "downstream_curve" section, or None when no curve has run."""
    points = load(out)
    if not points:
        return None
    table = curves(points, {a: r for a, r in refs.items() if a in points})
    return {"task": TASK, "metric": "f1", "arms": table, "stats": stats(table)}


def lines(section: dict | None) -> list[str]:
    """Markdown: the curve's points (mean over seeds) and each arm's FLOPs-to-target."""
    if not section:
        return []
    out = ["", f"## Downstream against pre-training FLOPs ({section['task']} {section['metric']})", "",
           "Each kept checkpoint fine-tuned alone on the task; FLOPs 0 is a random init of the same shape. "
           "Target = the reference arm's final score (mean over seeds); FLOPs-to-target = first pre-training "
           "FLOPs at which an arm's score reaches it; saving = 1 - arm / reference FLOPs, 95% Student-t "
           "interval over paired seeds (experiment/downstream_curve.py).", "",
           "| arm | seeds | score at each checkpoint (pre-training FLOPs: mean score) | final |", "|---|---|---|---|"]
    for arm, row in section["arms"].items():
        n = min(len(c) for c in row["curves"])
        cells = [f"{np.mean([c[i][0] for c in row['curves']]):.3g}: {np.mean([c[i][1] for c in row['curves']]):.3f}"
                 for i in range(n)]
        fin = np.mean(row["final_score"])
        out.append(f"| {arm} | {len(row['seeds'])} | {'; '.join(cells)} | {fin:.3f} ± {np.std(row['final_score']):.3f} |")
    for arm, st in section["stats"].items():
        lo, hi = st["saving_ci"]
        pct = lambda x: "not reached" if x is None else f"{100 * x:.1f}%"  # noqa: E731
        gaps = [g for g in st["closest_gap"] if g is not None and g > 0]
        short = f", closest {min(gaps):.3f} short" if st["saving"] is None and gaps else ""
        out += ["", f"- **{arm}** against {st['reference']} (target {st['target']:.3f}): reached {st['reached']} "
                f"seeds, saving {pct(st['saving'])} [{pct(lo)}, {pct(hi)}]{short}"]
    return out


def plot(section: dict, path: Path) -> Path:
    """Score against pre-training FLOPs: a thin line per seed, the target dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqpt_jax.experiment.stages import save_figure_atomic
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (arm, row) in enumerate(section["arms"].items()):
        for k, curve in enumerate(row["curves"]):
            x, y = zip(*curve)
            ax.plot(x, y, color=colors[i % len(colors)], marker="o", markersize=3, lw=1.0,
                    label=arm if k == 0 else None)
    for st in section["stats"].values():
        ax.axhline(st["target"], color="k", ls="--", lw=0.8, label=f"target ({st['reference']} final)")
        break
    ax.set_xlabel("counted pre-training FLOPs")
    ax.set_ylabel(f"{section['task']} {section['metric']} after fine-tuning")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{section['task']} against pre-training FLOPs (FLOPs 0: random init)", fontsize=9)
    fig.tight_layout()
    return save_figure_atomic(fig, path, dpi=100)
