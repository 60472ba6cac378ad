"""Language-temperature sampling rates, as in mT5 (and XLM): p_l proportional to n_l ** alpha.

alpha = 1 samples by size, alpha -> 0 samples uniformly; mT5 found 0.3 balances high- and
low-resource languages best. Used for the vocabulary's training text and for mixtures.
"""

from __future__ import annotations

from typing import Mapping

from seqpt_jax.errors import UserError

DEFAULT_ALPHA = 0.3


def temperature_rates(sizes: Mapping[str, float], alpha: float = DEFAULT_ALPHA) -> dict[str, float]:
    """Normalised rates {name: p} from sizes (documents, characters or tokens)."""
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"temperature alpha must be in [0, 1], got {alpha}.")
    sizes = {k: float(v) for k, v in sizes.items() if v > 0}
    if not sizes:
        raise UserError("no data to sample from: every language has size 0.")
    total = sum(sizes.values())
    weights = {k: (v / total) ** alpha for k, v in sizes.items()}
    norm = sum(weights.values())
    return {k: w / norm for k, w in weights.items()}
