"""Unit maps: which source unit each unit of a grown axis copies (Net2Net's `g`).

A map for an axis grown from `old` to `new` units keeps the source units in place
(`g(j) = j` for `j < old`, so the source sits in the top-left block) and sends every new
unit `j >= old` to a source unit:

- "tile":   g(j) = j mod old. When `new` is a multiple of `old` every source unit has the
            same number of copies, which keeps LayerNorm/RMSNorm statistics exact.
- "random": g(j) ~ Uniform{0..old-1} (bert2BERT). Linear parts stay exact; norm statistics
            become a weighted mean (weights = copy counts), so the function is perturbed.

Maps are plain numpy, computed outside `jit` from the caller's key, so they are static.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from seqpt_jax.errors import UserError

UNIT_MAPS = ("random", "tile")


@dataclasses.dataclass(frozen=True)
class UnitMap:
    """`index[j]` is the source unit that new unit `j` copies."""

    index: np.ndarray
    old_size: int

    @property
    def new_size(self) -> int:
        return int(self.index.shape[0])

    @property
    def counts(self) -> np.ndarray:
        """Copies of each source unit, `[old_size]` (Net2Net's |{j : g(j) = i}|)."""
        return np.bincount(self.index, minlength=self.old_size)

    @property
    def copies(self) -> np.ndarray:
        """For every new unit, the copy count of its source unit: `counts[index]`, `[new_size]`."""
        return self.counts[self.index]

    @property
    def is_new(self) -> np.ndarray:
        """True for the units that did not exist in the source (`j >= old_size`)."""
        return np.arange(self.new_size) >= self.old_size

    @property
    def is_identity(self) -> bool:
        return self.new_size == self.old_size


def unit_map(old: int, new: int, how: str, rng: np.random.Generator) -> UnitMap:
    """The map growing an axis of `old` units to `new` units (`new >= old`)."""
    if how not in UNIT_MAPS:
        raise UserError(f"unit_map={how!r} is unknown; use one of {UNIT_MAPS}.")
    if new < old:
        raise UserError(f"cannot shrink an axis from {old} to {new} units.")
    extra = np.arange(old, new) % old if how == "tile" else rng.integers(0, old, new - old)
    return UnitMap(np.concatenate([np.arange(old), extra]).astype(np.int32), old)


def numpy_rng(key: jax.Array) -> np.random.Generator:
    """A numpy generator seeded from a JAX key, so maps are reproducible from the same key."""
    data = np.asarray(jax.random.key_data(key)) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) \
        else np.asarray(key)
    return np.random.default_rng(data.astype(np.uint32).ravel().tolist())


def depth_map(old: int, new: int, how: str) -> np.ndarray:
    """Source layer of each target layer (`new >= old`):

    - "stack" (StackBERT / bert2BERT): the whole source stack repeated `new // old` times, then
      the leftover `new mod old` layers copied from the *top* of the source (bert2BERT):
      6 -> 8 is 0..5,4,5; 2 -> 4 is 0,1,0,1 (StackBERT's doubling).
    - "interpolate": each layer repeated in place, target i <- floor(i old / new) (0,0,1,1,..).
    """
    if how == "stack":
        full, rest = divmod(new, old)
        return np.concatenate([np.tile(np.arange(old), full), np.arange(old - rest, old)]).astype(np.int32)
    if how == "interpolate":
        return (np.arange(new) * old // new).astype(np.int32)
    raise UserError(f"depth={how!r} is unknown; use 'stack' or 'interpolate'.")
