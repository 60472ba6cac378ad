"""A training run's loss curve, read back from its TensorBoard events (eval/loss against
train/cumulative_flops, so a run that was killed and resumed still has its whole curve).
"""

from __future__ import annotations


def curve(logdir: str) -> list[list[float]]:
    """[[cumulative FLOPs, validation loss], ...] in step order. FLOPs at an eval step come from
    the training log of that step (the loop logs both at the last step and at multiples)."""
    from seqpt_jax.train import events
    tags = events.scalars(logdir)
    flops, losses = tags.get("train/cumulative_flops", {}), tags.get("eval/loss", {})
    logged = sorted(flops)
    points = []
    for step in sorted(losses):
        if step in flops:
            f = flops[step]
        else:  # linear between the nearest logged steps (constant FLOPs per step within a phase)
            below = max((s for s in logged if s < step), default=None)
            above = min((s for s in logged if s > step), default=None)
            if below is None or above is None:
                continue
            f = flops[below] + (flops[above] - flops[below]) * (step - below) / (above - below)
        points.append([f, losses[step]])
    return points
