"""Width growth of one parameter: function-preserving expansion (FPI) and AKI's selection.

Notation: a source axis of `n` units grows to `n'` units with a unit map `g` (unit_maps.py);
`c(j) = |{k : g(k) = g(j)}|` is the copy count of new unit j's source. Each mapped axis of a
parameter plays one of two roles:

- copy  (fan-out: the axis indexes the units the parameter *produces*):  W'[.., j, ..] = W[.., g(j), ..]
- split (fan-in: the axis indexes the units the parameter *consumes*):   W'[.., j, ..] = W[.., g(j), ..] / c(j)

A linear map consuming copied units then sums `c` copies of `x_i W_i / c`, i.e. `x W`, so every
linear part is exact for any map. The roles in this model (`layers` is never mapped here):

    token/position/type embeddings  [vocab|length|types, embed]       embed: copy
    query/key/value kernel          [embed, heads, kv]                embed: split, heads/kv: copy
    out kernel                      [heads, kv, embed]                heads, kv: split, embed: copy
    mlp wi / wi_0 / wi_1            [embed, mlp]                      embed: split, mlp: copy
    mlp wo                          [mlp, embed]                      mlp: split, embed: copy
    mlm_head transform              [embed, embed_out]                embed: split, embed_out: copy
    lm_head / mlm_head output       [embed, vocab]                    embed: split
    biases, norm scale/bias, relpos [.., heads|embed|mlp]             copy

One hidden map serves `embed` and `embed_out` (the whole residual stream); heads, head_dim
(`kv`) and `mlp` have their own maps, shared by all layers (the relative position bias is
shared by the layers of a stack, so its heads must map the same way in every layer).

Attention logits: q and k are copies per head, so head j's logits equal head g(j)'s. When
head_dim grows too, the query's `kv` axis is *split* (q'_u = q_g(u) / c(u), k' copied) so
q'.k' = q.k; BERT also scales logits by 1/sqrt(head_dim), so its query carries an extra
sqrt(head_dim'/head_dim). T5 has no logit scale.

Norms: with copy counts all equal (tile map, n' a multiple of n) the mean and variance (or
mean square) over the grown hidden axis equal the source's, so LayerNorm/RMSNorm outputs are
copies and the whole function is exact. With unequal counts the statistics become
count-weighted and only the norm layers perturb the function.

Tied output embedding: logits = h' E'^T with E' the *copied* input table would count every
hidden unit c times. `tied_output_fix` divides the norm that produces h' (mlm_head
transform_norm; the decoder's final norm, or its last layer's mlp_norm when post-norm) by c,
and for T5's tied decoder also multiplies by sqrt(d'/d) to undo the d^-1/2 rescale.

Gradients (for the optimizer moments): if the function is preserved, the gradient of a grown
entry is the source gradient copied and divided by the counts of its *copy* axes (a copied
unit's downstream consumers see it through 1/c). Equivalently, an entry with weight factor
w and multiplicity m (product of counts over its mapped axes) has gradient factor 1/(m w).
`mode="grad"` applies that; `mode="grad_sq"` its square (Adam's second moment).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from seqpt_jax.mappings.unit_maps import UnitMap

# Logical axis -> the unit map that grows it.
MAPPED = {"embed": "hidden", "embed_out": "hidden", "heads": "heads", "kv": "kv", "mlp": "mlp"}
MODES = ("weight", "grad", "grad_sq")


def roles(path: tuple, names: tuple) -> tuple:
    """Per axis of the parameter at `path` with logical `names`: "copy", "split" or None."""
    out = ["copy" if n in MAPPED else None for n in names]
    leaf, module = path[-1], path[-2]
    core = [i for i, n in enumerate(names) if n != "layers"]
    if leaf == "kernel":
        n_out = 2 if tuple(names[i] for i in core[-2:]) == ("heads", "kv") else 1
        for i in core[:-n_out]:
            if out[i]:
                out[i] = "split"
    if module == "query" and leaf in ("kernel", "bias"):
        out[names.index("kv")] = "split"
    return tuple(out)


def query_scale(path: tuple, src, dst) -> float:
    """BERT's 1/sqrt(head_dim) logit scale changes with head_dim; the query absorbs it."""
    if path[-2] == "query" and dst.family == "bert" and dst.head_dim != src.head_dim:
        return math.sqrt(dst.head_dim / src.head_dim)
    return 1.0


def _along(v: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = v.shape[0]
    return v.reshape(shape)


def _power(mode: str) -> int:
    return {"weight": 1, "grad": -1, "grad_sq": -2}[mode]


def expand(x, names: tuple, axis_roles: tuple, maps: dict, scalar: float = 1.0, mode: str = "weight"):
    """FPI-expand one array along its mapped axes (see the module docstring)."""
    for i, (name, role) in enumerate(zip(names, axis_roles)):
        if role is None:
            continue
        m: UnitMap = maps[MAPPED[name]]
        if m.is_identity:
            continue
        x = jnp.take(x, m.index, axis=i)
        divided = role == ("split" if mode == "weight" else "copy")
        if divided:
            f = (1.0 / m.copies.astype(np.float32)) ** abs(_power(mode))
            x = x * _along(f, i, x.ndim).astype(x.dtype)
    if scalar != 1.0:
        x = x * np.float32(scalar) ** _power(mode)
    return x


def fan_out(path: tuple, names: tuple, axis_roles: tuple) -> tuple:
    """Per axis: does it index the units the parameter *produces*? The copy axes, and also
    the query's `kv` axis: FPI splits it (so q'.k' = q.k) but it is the query's output, and
    AKI must take a new head dimension of q from the same layer as those of k and v."""
    query = path[-2] == "query" and path[-1] in ("kernel", "bias")
    return tuple(role == "copy" or (query and name == "kv") for name, role in zip(names, axis_roles))


def aki_select(x, names: tuple, fan_out_axes: tuple, maps: dict):
    """AKI on an FPI-expanded per-layer kernel or bias `[layers, ...]`: entries whose fan-out
    unit (`fan_out`) is new come from layer l+1's expansion; the top layer keeps its own (FPI)."""
    if not names or names[0] != "layers":
        return x
    mask = np.zeros(x.shape[1:], bool)
    for i, (name, out) in enumerate(zip(names, fan_out_axes)):
        if out and not maps[MAPPED[name]].is_identity:
            mask = mask | _along(maps[MAPPED[name]].is_new, i - 1, x.ndim - 1)
    if not mask.any():
        return x
    n = x.shape[0]
    upper = jnp.take(x, np.minimum(np.arange(n) + 1, n - 1), axis=0)
    return jnp.where(mask[None], upper, x)


def tied_output_targets(kind: str, cfg) -> list:
    """(path prefix, layer index or None) of the norm whose output feeds a tied projection."""
    if not cfg.tie_embeddings:
        return []
    if kind == "encoder_mlm":
        return [(("mlm_head", "transform_norm"), None)]
    if kind == "encoder_decoder":
        if cfg.norm_position == "pre":
            return [(("decoder", "final_norm"), None)]
        return [(("decoder", "layers", "mlp_norm"), -1)]
    return []


def tied_output_fix(flat: dict, kind: str, src, dst, hidden: UnitMap, mode: str = "weight") -> dict:
    """Divides the tied projection's input by the hidden copy counts (see module docstring)."""
    factor = 1.0 / hidden.copies.astype(np.float32)
    if kind == "encoder_decoder" and dst.family == "t5":
        factor = factor * np.float32(math.sqrt(dst.d_model / src.d_model))
    factor = factor ** _power(mode)
    out = dict(flat)
    for prefix, layer in tied_output_targets(kind, dst):
        for path, x in flat.items():
            if path[:len(prefix)] != prefix:
                continue
            out[path] = x * factor if layer is None else x.at[layer].multiply(factor)
    return out
