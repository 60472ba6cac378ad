"""A fixed held-out set for every arm and seed: the trainer's data factory with the
validation (and test) batches drawn from one seed, whatever the run's training seed.

    loop.train.data = @heldout.fixed()
    heldout.fixed.factory = @data.mixture_or_task

The trainer evaluates on `data("validation", batch_size, seed, shard)`, which otherwise
changes with the run's seed (the masks and the window order follow it). FLOPs-to-target
compares curves across arms and seeds, so they must all be measured on the same batches.
"""

from __future__ import annotations

from typing import Callable


def fixed(factory: Callable, seed: int = 1234) -> Callable:
    """`factory` with every split but "train" drawn from `seed`."""
    def data(split: str, batch_size: int, run_seed: int, shard):
        return factory(split, batch_size, run_seed if split == "train" else seed, shard)
    return data
