"""A training run's loss curve, read back from its TensorBoard events (eval/loss against
train/cumulative_flops, so a run that was killed and resumed still has its whole curve).
"""

from __future__ import annotations

import glob
import os


def _scalars(logdir: str) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} from every event file under logdir (later files win)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    out: dict[str, dict[int, float]] = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*")), key=os.path.getmtime):
        for event in EventFileLoader(path).Load():
            for v in event.summary.value:  # the loader migrates simple_value to a scalar tensor
                if v.HasField("simple_value"):
                    value = v.simple_value
                elif v.HasField("tensor") and v.tensor.float_val:
                    value = v.tensor.float_val[0]
                else:
                    continue
                out.setdefault(v.tag, {})[int(event.step)] = float(value)
    return out


def curve(logdir: str) -> list[list[float]]:
    """[[cumulative FLOPs, validation loss], ...] in step order. FLOPs at an eval step come from
    the training log of that step (the loop logs both at the last step and at multiples)."""
    tags = _scalars(logdir)
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
