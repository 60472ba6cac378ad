"""MLM batches as masked positions: the model runs its vocabulary head only where a loss is.

An MLM row selects ~`rate` of its tokens; the head (a d x vocab projection) at the other ~85%
of positions is wasted work (70% of a small MLM model's FLOPs at vocab 8000). So batches carry,
per row, the first `max_predictions` selected positions with their targets and weights, padded
with weight 0 to one static shape, and the model gathers those positions before the head.
"""

from __future__ import annotations

import math

import numpy as np


def max_predictions(rate: float, length: int) -> int:
    """Positions kept per row: ceil(rate * length), at least 1. The MLM objectives select
    round(rate * maskable tokens) <= this, so nothing overflows at the default settings."""
    return max(1, math.ceil(rate * length))


def compact(targets: np.ndarray, weights: np.ndarray, max_predictions: int) -> dict[str, np.ndarray]:
    """Aligned [B, L] `targets`/`weights` -> {mlm_positions, mlm_targets, mlm_weights: [B, P],
    mlm_dropped: [B] selected positions that did not fit in P (counted, never silent)}."""
    b = targets.shape[0]
    selected = weights != 0
    # Stable sort puts each row's selected positions first, in order.
    order = np.argsort(~selected, axis=1, kind="stable")[:, :max_predictions].astype(np.int32)
    if order.shape[1] < max_predictions:  # rows shorter than P
        order = np.pad(order, ((0, 0), (0, max_predictions - order.shape[1])))
    kept = np.take_along_axis(selected, order, 1)
    positions = np.where(kept, order, 0).astype(np.int32)
    return {"mlm_positions": positions,
            "mlm_targets": np.where(kept, np.take_along_axis(targets, positions, 1), 0).astype(np.int32),
            "mlm_weights": np.where(kept, np.take_along_axis(weights, positions, 1), 0).astype(np.float32),
            "mlm_dropped": (selected.sum(1) - kept.sum(1)).astype(np.int32).reshape(b)}
