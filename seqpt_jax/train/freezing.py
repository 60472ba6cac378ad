"""Which parameters a step may change: freeze masks, stop-gradient, and sub-model views.

A *trainable* tree matches the params; each leaf is `True` (train), `False` (frozen) or a
numpy bool vector over the leaf's leading `layers` axis (train only those layers; used by
bert2BERT two-stage training). Frozen leaves go through `jax.lax.stop_gradient` in the
forward pass, so XLA prunes their whole backward pass (their weight gradients, and the
activation gradients below them when nothing underneath trains): frozen steps really cost
less. After the optimizer, frozen updates are zeroed (AdamW's decoupled decay would
otherwise still move them) and the optimizer moments of frozen entries are restored, so
unfreezing resumes from the moments they had. The optimizer's shared step count still
advances (it drives bias correction and the schedule, not per-parameter state).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from seqpt_jax.errors import UserError
from seqpt_jax.train.optimizers import path_tree, regex_mask

LAYER_STACKS = ("encoder", "decoder")


def all_trainable(params):
    return jax.tree.map(lambda _: True, params)


def freeze_by_regex(params, patterns: Sequence[str]):
    """Trainable tree: False where a path matches one of `patterns` (e.g. '^encoder/')."""
    if not patterns:
        return all_trainable(params)
    frozen = regex_mask(params, patterns)
    if not any(jax.tree.leaves(frozen)):
        raise UserError(f"freeze patterns {list(patterns)} match no parameter; paths look like "
                        f"{next(iter(jax.tree.leaves(path_tree(params))))!r}.")
    return jax.tree.map(lambda f: not f, frozen)


def is_static(trainable) -> bool:
    """True when every leaf is a plain bool (the mask then only decides what XLA prunes)."""
    return all(isinstance(t, (bool, np.bool_)) for t in jax.tree.leaves(trainable))


def _broadcast(mask: np.ndarray, x) -> jax.Array:
    return jnp.asarray(mask).reshape(mask.shape + (1,) * (x.ndim - mask.ndim))


def stop_frozen(params, trainable):
    """Params with frozen leaves (or frozen layers of a leaf) behind `stop_gradient`."""
    def one(p, t):
        if isinstance(t, (bool, np.bool_)):
            return p if t else jax.lax.stop_gradient(p)
        return jnp.where(_broadcast(t, p), p, jax.lax.stop_gradient(p))
    return jax.tree.map(one, params, trainable)


def select(trainable, new, old):
    """`new` where trainable, `old` where frozen, leaf by leaf (same structure as params)."""
    def one(t, n, o):
        if isinstance(t, (bool, np.bool_)):
            return n if t else o
        if n.ndim == 0 or n.shape[:t.ndim] != t.shape:  # e.g. factored Adafactor rows
            return n
        return jnp.where(_broadcast(t, n), n, o)
    return jax.tree.map(one, trainable, new, old)


def zero_frozen(updates, trainable):
    return select(trainable, updates, jax.tree.map(jnp.zeros_like, updates))


def keep_frozen_state(new_state, old_state, trainable):
    """Optimizer state with every params-shaped subtree (moments) restored where frozen."""
    treedef = jax.tree.structure(trainable)

    def params_like(x) -> bool:
        try:
            return jax.tree.structure(x) == treedef
        except Exception:  # noqa: BLE001 - exotic leaves are never params-shaped
            return False

    def one(n, o):
        return select(trainable, n, o) if params_like(n) else n

    return jax.tree.map(one, new_state, old_state, is_leaf=params_like)


# ----- bert2BERT two-stage training: sub-models of the bottom layers --------------------------

@dataclasses.dataclass(frozen=True)
class SubModel:
    """The bottom `num_layers` layers of each stack in `stacks`, training only the top
    `train_top` of them (bert2BERT stage i: num_layers = i * l_b, train_top = l_b)."""

    num_layers: int
    train_top: int
    stacks: tuple = ("encoder",)


def _is_stack_leaf(path: str, stacks: Sequence[str]) -> bool:
    return any(re.match(rf"^{s}/layers/", path) for s in stacks)


def _cut(x, n: int):
    if isinstance(x, (bool, np.bool_)):  # a trainable flag covers all layers
        return x
    if isinstance(x, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct((n,) + tuple(x.shape[1:]), x.dtype)
    return x[:n]


def slice_layers(tree, sub: SubModel):
    """The sub-model's tree (params, shapes or a trainable mask): layer leaves of
    `sub.stacks` cut to the bottom `num_layers`."""
    return jax.tree.map(lambda p, x: _cut(x, sub.num_layers) if _is_stack_leaf(p, sub.stacks) else x,
                        path_tree(tree), tree)


def sub_model_trainable(params, sub: SubModel):
    """Full-tree trainable mask: only layers [num_layers - train_top, num_layers) of the stacks."""
    def one(path, x):
        if not _is_stack_leaf(path, sub.stacks):
            return False
        if sub.num_layers > x.shape[0] or not 0 < sub.train_top <= sub.num_layers:
            raise UserError(f"sub-model of {sub.num_layers} layers training the top {sub.train_top} "
                            f"does not fit {path} with {x.shape[0]} layers.")
        mask = np.zeros(x.shape[0], bool)
        mask[sub.num_layers - sub.train_top:sub.num_layers] = True
        return mask
    return jax.tree.map(one, path_tree(params), params)


def sub_model_config(cfg, sub: SubModel):
    """The model config of the sub-model (fewer layers in the sliced stacks)."""
    changes = {f"num_{s}_layers": sub.num_layers for s in sub.stacks}
    return cfg.replace(**changes)
