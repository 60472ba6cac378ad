"""Compute savings, defined once: what `seqpt experiment report` states and every claim reads.

Seeds are paired: arm seed k is compared with scratch seed k (same data order, same held-out set).
- target_k: scratch seed k's final validation loss; the reported target is their mean.
- FLOPs-to-target of a run: the first counted training FLOPs at which its validation loss
  curve, linear between evaluations, reaches the target (loss <= target). A run whose curve
  never gets there has none ("not reached"); its closest gap is min(loss) - target.
- saving_k = 1 - arm_k / scratch_k, arm_k the arm seed's FLOPs-to-target_k, scratch_k the scratch
  seed's training FLOPs; the saving is their mean. Stated twice: without the source model's cost
  (as bert2BERT reports it) and with it (what a user who has no source model pays). A saving
  reached at 0 own FLOPs (an `init` arm, or an arm that starts below the target) is vacuous:
  100% by construction, shown as "—" beside its with-source figure.
- interval: Student-t on the per-seed savings (n - 1 degrees of freedom), its variance the seeds'
  (sd^2 / n) plus the held-out set's: the eval noise sigma (the standard error of the paired
  per-batch loss difference arm - scratch over the eval batches, root mean square over seeds)
  moves the target, so the saving by sigma / (scratch_k * the arm's loss slope at the crossing).
  The held-out set is shared by every seed, so that term does not shrink with n. Fewer than
  MIN_SEEDS seeds, a seed that misses its target, or a flat crossing: no interval (None).
- minimum effect: the scratch seed's loss at the arm's FLOPs-to-target minus the target, mean
  over seeds, must exceed NOISE_Z x the eval noise; a saving claim needs it AND the interval's
  lower bound above 0 (claims.py).
- the curve: savings against the scratch budget B. The target at B is the scratch curve's loss
  at FLOPs B (mean over seeds); the saving is 1 - arm FLOPs-to-that-target / B (point estimates).

Curves are lists of (FLOPs, loss) pairs in the order the run produced them. Pure functions of
plain lists: no jax, no I/O.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as _stats

Curve = Sequence[Sequence[float]]
MIN_SEEDS = 3      # below this a spread cannot be estimated: every claim that needs one "cannot tell"
NOISE_Z = 1.96     # the loss gap at the target must exceed this many eval-noise standard errors


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


def slope_at_target(curve: Curve, target: float) -> float | None:
    """-d loss / d FLOPs of the segment where the curve first reaches `target` (the first
    segment when it starts there); None when it never does or that segment is flat."""
    points = _sorted(curve)
    if len(points) < 2:
        return None
    for (f0, l0), (f1, l1) in zip(points, points[1:]):
        if l1 <= target or l0 <= target:
            drop = (l0 - l1) / (f1 - f0) if f1 > f0 else 0.0
            return drop if drop > 0 else None
    return None


def t_interval(values: Sequence[float], level: float = 0.95,
               extra_var: float = 0.0) -> tuple[float | None, float | None]:
    """mean +- t(level, n - 1) * sqrt(sd^2 / n + extra_var); (None, None) below MIN_SEEDS values."""
    n = len(values)
    if n < MIN_SEEDS or not math.isfinite(extra_var):
        return None, None
    mean = float(np.mean(values))
    half = float(_stats.t.ppf((1 + level) / 2, n - 1)) * math.sqrt(float(np.var(values, ddof=1)) / n + extra_var)
    return mean - half, mean + half


def eval_noise(arm_batches: Sequence[Sequence[float] | None],
               scratch_batches: Sequence[Sequence[float] | None]) -> float | None:
    """The held-out set's standard error of the paired loss difference arm - scratch: per seed,
    sd(per-batch difference) / sqrt(batches), root mean square over seeds. None when a seed has
    no per-batch losses recorded."""
    per_seed = []
    for a, s in zip(arm_batches, scratch_batches):
        if not a or not s or len(a) != len(s) or len(a) < 2:
            return None
        d = np.asarray(a, float) - np.asarray(s, float)
        per_seed.append(float(np.var(d, ddof=1)) / len(d))
    return math.sqrt(float(np.mean(per_seed))) if per_seed else None


def arm_savings(arm_curves: Sequence[Curve], scratch_curves: Sequence[Curve], scratch_flops: Sequence[float],
                source_flops: Sequence[float] | None = None, noise: float | None = None, level: float = 0.95) -> dict:
    """Everything the report states about one arm against the scratch arm (see the module doc).

    arm_curves / scratch_curves: per paired seed, (FLOPs counted from the run's own start, val loss).
    scratch_flops: per scratch seed, its total training FLOPs.
    source_flops: per arm seed, the cost of the model it started from (None: no source).
    noise: the eval noise (`eval_noise`), in loss units; None: not measured.
    """
    n = min(len(arm_curves), len(scratch_curves))
    arm_curves, scratch_curves, budgets = list(arm_curves)[:n], list(scratch_curves)[:n], list(scratch_flops)[:n]
    targets = [final_loss(c) for c in scratch_curves]
    if not targets or any(t is None for t in targets):
        raise ValueError("every scratch seed needs a validation curve to define the target")
    source = list(source_flops)[:n] if source_flops is not None else [0.0] * n
    ftt = [flops_to_target(c, t) for c, t in zip(arm_curves, targets)]
    reached = all(f is not None for f in ftt)
    out = {
        "target": float(np.mean(targets)), "targets": targets, "scratch_flops": float(np.mean(budgets)),
        "reached": f"{sum(f is not None for f in ftt)}/{n}", "seeds_paired": n,
        "final_val_loss": [final_loss(c) for c in arm_curves],
        "flops_to_target": ftt,
        "flops_to_target_with_source": [None if f is None else f + s for f, s in zip(ftt, source)],
        "source_flops": source,
        "closest_gap": [closest_gap(c, t) for c, t in zip(arm_curves, targets)],
        "vacuous": reached and all(f == 0.0 for f in ftt),   # 100% by construction without the source
        "eval_noise": noise,
    }
    for key, extra in (("saving", [0.0] * n), ("saving_with_source", source)):
        per_seed = [saving(f + e, b) for f, e, b in zip(ftt, extra, budgets)] if reached else None
        out[key] = float(np.mean(per_seed)) if per_seed else None
        out[key + "_per_seed"] = per_seed
        out[key + "_ci"] = [None, None]
        if per_seed:
            out[key + "_ci"] = list(t_interval(per_seed, level, _noise_var(arm_curves, targets, budgets, noise)))
    gaps = ([loss_at(c, f) - t for c, f, t in zip(scratch_curves, ftt, targets)] if reached else None)
    out["loss_gap"] = float(np.mean(gaps)) if gaps and all(g is not None for g in gaps) else None
    out["min_effect"] = (None if noise is None or out["loss_gap"] is None
                         else bool(out["loss_gap"] > NOISE_Z * noise))
    return out


def _noise_var(arm_curves, targets, budgets, noise) -> float:
    """The eval noise carried into a saving's variance: (noise / (scratch_k * slope_k))^2, the
    mean over seeds (one held-out set: it does not average down); 0 when not measured."""
    if not noise:
        return 0.0
    terms = []
    for c, t, b in zip(arm_curves, targets, budgets):
        slope = slope_at_target(c, t)
        if slope is None:
            return math.inf
        terms.append((noise / (b * slope)) ** 2)
    return float(np.mean(terms))


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
