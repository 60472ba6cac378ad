"""Which parameters a step may change: freeze masks, stop-gradient, and sub-model views.

A *trainable* tree matches the params; each leaf is `True` (train), `False` (frozen) or a
numpy bool vector over the leaf's leading `layers` axis (train only those layers; used by
bert2BERT two-stage training). Frozen leaves go through `jax.lax.stop_gradient` in the
forward pass, so XLA prunes their whole backward pass (their weight gradients, and the
activation gradients below them when nothing underneath trains): frozen steps really cost
less. After the optimizer, frozen updates are zeroed (AdamW's decoupled decay would
otherwise still move them) and the optimizer moments of frozen entries are restored. An
optimizer *group* (`optimizers.make_optimizer(late=...)`) whose parameters are all frozen keeps
its whole state, step count included, so parameters that unfreeze later start their own Adam
(moments 0, count 0) at the unfreeze step.

`ENCODER_SIDE` names everything an encoder's output depends on (the encoder stack and the
embeddings feeding it): the set a warm start freezes, scales and counts.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from seqpt_jax.errors import UserError
from seqpt_jax.train.optimizers import path_tree, regex_mask


# Everything the MLM stage produced that the encoder's output depends on: the encoder stack
# (layers, relpos_bias, final_norm), the input embedding tables, and bert's input embedding_norm.
EMBEDDINGS = ("^token_embedder/", "^position_embedder/", "^token_type_embedder/", "^embedding_norm/")
ENCODER_SIDE = ("^encoder/",) + EMBEDDINGS


def encoder_side(shared_token_embedding_trainable: bool = False) -> tuple:
    """`ENCODER_SIDE`, or without the token embedding table: in a seq2seq model that table is
    shared with the decoder (and the tied output), so keeping it trainable lets the decoder
    adapt its input/output embedding, at the price of the encoder's output moving too."""
    if shared_token_embedding_trainable:
        return tuple(p for p in ENCODER_SIDE if p != "^token_embedder/")
    return ENCODER_SIDE


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


def _masked(x) -> bool:
    return isinstance(x, optax.MaskedNode)


def keep_frozen_state(new_state, old_state, trainable):
    """Optimizer state with every params-shaped subtree (moments) restored where frozen, and
    the whole state of a group (`optax.multi_transform`) none of whose params trains kept."""
    treedef = jax.tree.structure(trainable)

    def params_like(x) -> bool:
        try:
            return jax.tree.structure(x, is_leaf=_masked) == treedef
        except Exception:  # noqa: BLE001 - exotic leaves are never params-shaped
            return False

    def group_idle(inner) -> bool:
        """True when a group's params (the unmasked leaves of its params-shaped subtrees) are
        all statically frozen."""
        found = []
        jax.tree.leaves(inner, is_leaf=lambda x: params_like(x) and not found.append(x))
        if not found:
            return False
        flags = jax.tree.leaves(trainable)
        members = [t for t, x in zip(flags, jax.tree.leaves(found[0], is_leaf=_masked)) if not _masked(x)]
        return bool(members) and all(isinstance(t, (bool, np.bool_)) and not t for t in members)

    def one(n, o):
        if isinstance(n, optax.MultiTransformState):
            return n._replace(inner_states={
                k: (o.inner_states[k] if group_idle(v) else keep_frozen_state(v, o.inner_states[k], trainable))
                for k, v in n.inner_states.items()})
        if params_like(n):
            return jax.tree.map(lambda t, a, b: a if _masked(a) else select(t, a, b), trainable, n, o,
                                is_leaf=_masked)
        return n

    is_node = lambda x: params_like(x) or isinstance(x, optax.MultiTransformState)  # noqa: E731
    return jax.tree.map(one, new_state, old_state, is_leaf=is_node)


# ----- bert2BERT two-stage training: sub-models of the bottom layers --------------------------

@dataclasses.dataclass(frozen=True)
class SubModel:
    """The bottom `num_layers` layers of the encoder, training only the top `train_top` of them
    (bert2BERT sub-model i: num_layers = i * l_b, train_top = l_b). Its step runs the frozen
    bottom layers as their own forward-only scan (`TransformerConfig.encoder_scan_split`).
    `train_embeddings` / `train_head`: whether the embeddings (and relpos_bias) / the output head
    (and final_norm) also train."""

    num_layers: int
    train_top: int
    train_embeddings: bool = False
    train_head: bool = False

    @property
    def split(self) -> int:
        return self.num_layers - self.train_top


_STACK = re.compile(r"^encoder/layers/")
_INPUT_SIDE = re.compile("|".join(EMBEDDINGS) + r"|^encoder/relpos_bias/")


def _cut(x, lo: int, hi: int):
    if isinstance(x, (bool, np.bool_)):  # a trainable flag covers all layers
        return x
    if isinstance(x, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct((hi - lo,) + tuple(x.shape[1:]), x.dtype)
    return x[lo:hi]


def sub_model_view(tree, sub: SubModel):
    """The sub-model's tree (params, shapes or a trainable mask) for
    `sub_model_config(cfg, sub)`: encoder layers cut to the bottom `num_layers`, those below the
    trained top under `encoder/layers`, the trained ones under `encoder/layers_top`. Slicing's
    transpose pads gradients back to the full stack with zeros."""
    enc = dict(tree["encoder"])
    layers = enc.pop("layers")
    if sub.split:
        enc["layers"] = jax.tree.map(lambda x: _cut(x, 0, sub.split), layers)
        enc["layers_top"] = jax.tree.map(lambda x: _cut(x, sub.split, sub.num_layers), layers)
    else:
        enc["layers"] = jax.tree.map(lambda x: _cut(x, 0, sub.num_layers), layers)
    return {**tree, "encoder": enc}


def uniform(trainable):
    """A mask with every per-layer vector that is all True / all False turned into a bool."""
    def one(t):
        if isinstance(t, (bool, np.bool_)):
            return bool(t)
        t = np.asarray(t)
        return bool(t[0]) if t.size and (t == t.flat[0]).all() else t
    return jax.tree.map(one, trainable)


def sub_model_trainable(params, sub: SubModel):
    """Full-tree trainable mask: layers [num_layers - train_top, num_layers) of the encoder,
    plus the embeddings / head when `sub` says so."""
    def one(path, x):
        if not _STACK.match(path):
            if _INPUT_SIDE.search(path):
                return sub.train_embeddings
            return sub.train_head and not path.startswith("encoder/layers")
        if sub.num_layers > x.shape[0] or not 0 < sub.train_top <= sub.num_layers:
            raise UserError(f"sub-model of {sub.num_layers} layers training the top {sub.train_top} "
                            f"does not fit {path} with {x.shape[0]} layers.")
        mask = np.zeros(x.shape[0], bool)
        mask[sub.split:sub.num_layers] = True
        return mask
    return jax.tree.map(one, path_tree(params), params)


def sub_model_config(cfg, sub: SubModel):
    """The model config of the sub-model (fewer encoder layers, scanned in two parts)."""
    return cfg.replace(num_encoder_layers=sub.num_layers, encoder_scan_split=sub.split)


def two_stage_sub_models(num_layers: int, block: int, train_embeddings: bool = False,
                         train_head: bool = False) -> list[SubModel]:
    """bert2BERT's sub-models of a `num_layers` encoder: i = 1..num_layers / block, each the
    bottom i * block layers training its top `block`."""
    if block <= 0 or num_layers % block:
        raise UserError(f"two-stage block {block} must divide the encoder's {num_layers} layers; set "
                        f"BLOCK to a divisor of num_encoder_layers.")
    return [SubModel(i * block, block, train_embeddings, train_head) for i in range(1, num_layers // block + 1)]
