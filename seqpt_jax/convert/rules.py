"""Declarative key-mapping tables between Hugging Face state dicts and our parameter trees.

A family module lists `Rule`s: our parameter path, the HF key (with `{i}` standing for the
layer index inside `encoder/layers` or `decoder/layers`), and the `Format` that reshapes one
into the other. `import_state` and `export_params` run a table in either direction; per-layer
HF tensors are stacked on (or split off) our leading scanned `layers` axis.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from seqpt_jax.errors import UserError
from seqpt_jax.models import TransformerConfig

Array = np.ndarray


@dataclasses.dataclass(frozen=True)
class Format:
    """How one HF tensor becomes one of ours (`to_ours`) and back (`to_hf`)."""

    to_ours: Callable[[Array, TransformerConfig], Array]
    to_hf: Callable[[Array, TransformerConfig], Array]


COPY = Format(lambda x, c: x, lambda x, c: x)
# torch.nn.Linear stores [out, in]; our kernels are [in, out].
LINEAR = Format(lambda w, c: w.T, lambda w, c: w.T)
# Query/key/value: [heads*kv, embed] <-> [embed, heads, kv].
QKV = Format(lambda w, c: w.T.reshape(w.shape[1], c.num_heads, c.head_dim),
             lambda w, c: w.reshape(w.shape[0], -1).T)
QKV_BIAS = Format(lambda b, c: b.reshape(c.num_heads, c.head_dim), lambda b, c: b.reshape(-1))
# Attention output: [embed, heads*kv] <-> [heads, kv, embed].
OUT = Format(lambda w, c: w.T.reshape(c.num_heads, c.head_dim, w.shape[0]),
             lambda w, c: w.reshape(-1, w.shape[-1]).T)


@dataclasses.dataclass(frozen=True)
class Rule:
    ours: str  # "/"-separated path in our params tree
    hf: str  # HF state-dict key; "{i}" = layer index for per-layer parameters
    fmt: Format = COPY


def _num_layers(rule: Rule, cfg: TransformerConfig) -> int | None:
    if "{i}" not in rule.hf:
        return None
    if rule.ours.startswith("encoder/layers/"):
        return cfg.num_encoder_layers
    if rule.ours.startswith("decoder/layers/"):
        return cfg.num_decoder_layers
    raise ValueError(f"rule {rule} has a layer index outside encoder/layers or decoder/layers")


def _set(tree: dict, path: str, value) -> None:
    *parents, leaf = path.split("/")
    for name in parents:
        tree = tree.setdefault(name, {})
    tree[leaf] = value


def _get(tree: dict, path: str):
    for name in path.split("/"):
        tree = tree[name]
    return tree


def _take(state: dict, key: str, where: str) -> Array:
    if key not in state:
        raise UserError(f"{where} has no tensor {key!r}; the weights do not match config.json "
                        f"(re-export the checkpoint with transformers' save_pretrained).")
    return np.asarray(state[key], np.float32)


def import_state(rules: list[Rule], state: dict, cfg: TransformerConfig,
                 where: str = "the checkpoint") -> tuple[dict, set]:
    """(our params tree, the HF keys it used) from an HF state dict of numpy arrays."""
    params, used = {}, set()
    for rule in rules:
        n = _num_layers(rule, cfg)
        keys = [rule.hf] if n is None else [rule.hf.format(i=i) for i in range(n)]
        values = [rule.fmt.to_ours(_take(state, k, where), cfg) for k in keys]
        _set(params, rule.ours, values[0] if n is None else np.stack(values))
        used.update(keys)
    return params, used


def export_params(rules: list[Rule], params: dict, cfg: TransformerConfig) -> dict:
    """The HF state dict (float32 numpy, contiguous) of our params tree."""
    state = {}
    for rule in rules:
        value = np.asarray(_get(params, rule.ours), np.float32)
        n = _num_layers(rule, cfg)
        if n is None:
            state[rule.hf] = rule.fmt.to_hf(value, cfg)
        else:
            for i in range(n):
                state[rule.hf.format(i=i)] = rule.fmt.to_hf(value[i], cfg)
    return {k: np.ascontiguousarray(v) for k, v in state.items()}
