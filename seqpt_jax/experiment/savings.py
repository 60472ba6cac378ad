"""Compute savings, defined once: what `seqpt experiment report` states and every claim reads.

- target: the scratch arm's final validation loss, the mean over its seeds.
- FLOPs-to-target of a run: the first counted training FLOPs at which its validation loss
  curve, linear between evaluations, reaches the target (loss <= target). A run whose curve
  never gets there has none ("not reached"); its closest gap is min(loss) - target.
- saving = 1 - arm / scratch, where `scratch` is the scratch arm's mean training FLOPs (the
  compute at which it reaches its own final loss) and `arm` the mean FLOPs-to-target over the
  arm's seeds. Stated twice: without the source model's cost (as bert2BERT reports it) and
  with it (what a user who has no source model pays).
- intervals: a percentile bootstrap over seeds (arm and scratch seeds resampled independently,
  the target recomputed from each scratch resample), with a fixed generator seed so a report
  is reproducible. A resample in which some arm seed misses the target has no saving; it
  counts as -inf, so the lower bound is None when that happens in more than alpha/2 of them.
- the curve: savings against the scratch budget B. The target at B is the scratch curve's loss
  at FLOPs B (mean over seeds); the saving is 1 - arm FLOPs-to-that-target / B.

Curves are lists of (FLOPs, loss) pairs in the order the run produced them. Pure functions of
plain lists: no jax, no I/O.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Curve = Sequence[Sequence[float]]


def _sorted(curve: Curve) -> list[tuple[float, float]]:
    return sorted((float(f), float(l)) for f, l in curve)


def flops_to_target(curve: Curve, target: float) -> float | None:
    """First FLOPs at which the curve (linear between points) reaches loss <= target."""
    points = _sorted(curve)
    if not points:
        return None
    if points[0][1] <= target:
        return points[0][0]
    for (f0, l0), (f1, l1) in zip(points, points[1:]):
        if l1 <= target:
            return f0 + (f1 - f0) * (l0 - target) / (l0 - l1)
    return None


def loss_at(curve: Curve, flops: float) -> float | None:
    """The curve's loss at `flops` (linear between points; None outside the evaluated range)."""
    points = _sorted(curve)
    if not points or flops < points[0][0] or flops > points[-1][0]:
        return None
    for (f0, l0), (f1, l1) in zip(points, points[1:]):
        if f0 <= flops <= f1:
            return l0 if f1 == f0 else l0 + (l1 - l0) * (flops - f0) / (f1 - f0)
    return points[-1][1]


def final_loss(curve: Curve) -> float | None:
    points = _sorted(curve)
    return points[-1][1] if points else None


def closest_gap(curve: Curve, target: float) -> float | None:
    """min(loss) - target: how far above the target a run got at best (<= 0 once reached)."""
    points = _sorted(curve)
    return min(l for _, l in points) - target if points else None


def saving(arm_flops: float | None, scratch_flops: float) -> float | None:
    """1 - arm / scratch (None when the arm did not reach the target)."""
    if arm_flops is None or not scratch_flops:
        return None
    return 1.0 - arm_flops / scratch_flops


def target_of(scratch_curves: Sequence[Curve]) -> float:
    """The target: mean final validation loss over the scratch arm's seeds."""
    finals = [final_loss(c) for c in scratch_curves]
    if not finals or any(f is None for f in finals):
        raise ValueError("every scratch seed needs a validation curve to define the target")
    return float(np.mean(finals))


def _point(arm_curves, extra, scratch_flops, target) -> float:
    """The saving for one set of seeds; -inf if any seed misses the target."""
    ftt = [flops_to_target(c, target) for c in arm_curves]
    if any(f is None for f in ftt):
        return -math.inf
    return 1.0 - float(np.mean([f + e for f, e in zip(ftt, extra)])) / scratch_flops


def bootstrap(arm_curves: Sequence[Curve], scratch_curves: Sequence[Curve], scratch_flops: Sequence[float],
              extra: Sequence[float] | None = None, *, resamples: int = 2000, level: float = 0.95,
              seed: int = 0) -> tuple[float | None, float | None]:
    """(low, high) percentile interval of the saving over seed resamples (see the module doc).

    extra: per arm seed, FLOPs added to its FLOPs-to-target (the source model's cost).
    """
    extra = list(extra) if extra is not None else [0.0] * len(arm_curves)
    rng = np.random.default_rng(seed)
    n_arm, n_scr = len(arm_curves), len(scratch_curves)
    values = np.empty(resamples)
    for i in range(resamples):
        a = rng.integers(0, n_arm, n_arm)
        s = rng.integers(0, n_scr, n_scr)
        target = target_of([scratch_curves[j] for j in s])
        values[i] = _point([arm_curves[j] for j in a], [extra[j] for j in a],
                           float(np.mean([scratch_flops[j] for j in s])), target)
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")  # no -inf arithmetic
    return (None if not np.isfinite(lo) else float(lo)), (None if not np.isfinite(hi) else float(hi))


def arm_savings(arm_curves: Sequence[Curve], scratch_curves: Sequence[Curve], scratch_flops: Sequence[float],
                source_flops: Sequence[float] | None = None, **bootstrap_kw) -> dict:
    """Everything the report states about one arm against the scratch arm.

    arm_curves / scratch_curves: per seed, (FLOPs counted from the run's own start, val loss).
    scratch_flops: per scratch seed, its total training FLOPs.
    source_flops: per arm seed, the cost of the model it started from (None: no source).
    """
    target = target_of(scratch_curves)
    budget = float(np.mean(scratch_flops))
    source = list(source_flops) if source_flops is not None else [0.0] * len(arm_curves)
    ftt = [flops_to_target(c, target) for c in arm_curves]
    reached = [f is not None for f in ftt]
    out = {
        "target": target, "scratch_flops": budget, "reached": f"{sum(reached)}/{len(ftt)}",
        "final_val_loss": [final_loss(c) for c in arm_curves],
        "flops_to_target": ftt,
        "flops_to_target_with_source": [None if f is None else f + s for f, s in zip(ftt, source)],
        "source_flops": source,
        "closest_gap": [closest_gap(c, target) for c in arm_curves],
    }
    all_reached = all(reached) and bool(ftt)
    out["saving"] = saving(float(np.mean(ftt)), budget) if all_reached else None
    out["saving_with_source"] = (saving(float(np.mean([f + s for f, s in zip(ftt, source)])), budget)
                                 if all_reached else None)
    out["saving_ci"] = list(bootstrap(arm_curves, scratch_curves, scratch_flops, None, **bootstrap_kw))
    out["saving_with_source_ci"] = list(bootstrap(arm_curves, scratch_curves, scratch_flops, source,
                                                  **bootstrap_kw))
    return out


def savings_curve(arm_curves: Sequence[Curve], scratch_curves: Sequence[Curve], budgets: Sequence[float],
                  source_flops: Sequence[float] | None = None) -> list[dict]:
    """Per scratch budget B: the target (scratch's mean loss at B), the arm's mean
    FLOPs-to-target and the saving 1 - arm / B, with and without the source cost.

    Caveat the report repeats: the scratch loss at B is read off one run trained to its full
    budget (its learning-rate schedule had not ended at B), not a run sized for B.
    """
    source = list(source_flops) if source_flops is not None else [0.0] * len(arm_curves)
    rows = []
    for budget in budgets:
        losses = [loss_at(c, budget) for c in scratch_curves]
        if any(l is None for l in losses):
            continue
        target = float(np.mean(losses))
        ftt = [flops_to_target(c, target) for c in arm_curves]
        row = {"budget": float(budget), "target": target, "reached": f"{sum(f is not None for f in ftt)}/{len(ftt)}"}
        if all(f is not None for f in ftt):
            row["flops_to_target"] = float(np.mean(ftt))
            row["saving"] = saving(row["flops_to_target"], budget)
            row["saving_with_source"] = saving(float(np.mean([f + s for f, s in zip(ftt, source)])), budget)
        else:
            row["flops_to_target"] = row["saving"] = row["saving_with_source"] = None
        rows.append(row)
    return rows
