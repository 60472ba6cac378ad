"""`grow`: a small trained model becomes the initialisation of a larger one (bert2BERT).

    big = grow(params, src_cfg, dst_cfg, method="aki", rng=key, unit_map="random")

Methods (width first, then depth when the target has more layers, as bert2BERT does):

- "fpi":          function-preserving width expansion (width.py), then `depth` growth.
- "aki":          FPI, with the new fan-out units of layer l taken from layer l+1 (the top
                  layer keeps its own), breaking FPI's symmetry; then `depth` growth.
- "direct_copy":  the source (depth-grown) in the top-left block of a random target init.
- "stack" / "interpolate": depth only (StackBERT / layer repetition); widths must match.
- "random":       a fresh random init of the target (the from-scratch baseline).

`noise` (fpi / aki): Net2Net's symmetry breaking. Every kernel and embedding is multiplied by (1 + noise * N(0, 1)),
elementwise, after the expansion. Without it, a copied unit and its original get the same
gradient at dropout 0 and stay exact copies forever (the grown model is the source, trained longer).

Unit maps and layer maps are numpy arrays drawn from `rng` outside `jit` (`growth_plan`
returns them, so tests and notebooks can read back which unit copied which). The array work
runs under `jax.jit(out_shardings=...)`, so a large target is built directly sharded
(`grow_sharded`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax

from seqpt_jax import models
from seqpt_jax.errors import UserError
from seqpt_jax.mappings import checks
from seqpt_jax.mappings.depth import grow_depth
from seqpt_jax.mappings.unit_maps import UnitMap, depth_map, numpy_rng, unit_map
from seqpt_jax.mappings.width import aki_select, expand, fan_out, query_scale, roles, tied_output_fix
from seqpt_jax.models import TransformerConfig

METHODS = ("fpi", "aki", "direct_copy", "stack", "interpolate", "random")
DEPTHS = ("stack", "interpolate")


@dataclasses.dataclass(frozen=True)
class GrowthPlan:
    """Everything static about a growth: configs, unit maps, layer maps, axis names."""

    kind: str
    src: TransformerConfig
    dst: TransformerConfig
    maps: dict  # "hidden" | "heads" | "kv" | "mlp" -> UnitMap
    layers: dict  # "encoder" | "decoder" -> source layer of each target layer
    names: dict  # flat param path -> logical axis names


def _keys(rng):
    rng = jax.random.key(0) if rng is None else rng
    return jax.random.split(rng)  # (maps, init)


def growth_plan(kind: str, src_cfg: TransformerConfig, dst_cfg: TransformerConfig, *, rng=None,
                unit_map_kind: str = "random", depth: str = "stack") -> GrowthPlan:
    """The plan `grow` follows for the same arguments (same `rng` -> same maps)."""
    if depth not in DEPTHS:
        raise UserError(f"depth={depth!r} is unknown; use one of {DEPTHS}.")
    gen = numpy_rng(_keys(rng)[0])
    maps = {name: unit_map(getattr(src_cfg, field), getattr(dst_cfg, field), unit_map_kind, gen)
            for name, field in (("hidden", "d_model"), ("heads", "num_heads"), ("kv", "head_dim"),
                                ("mlp", "d_ff"))}
    layers = {"encoder": depth_map(src_cfg.num_encoder_layers, dst_cfg.num_encoder_layers, depth)}
    if kind == "encoder_decoder":
        layers["decoder"] = depth_map(src_cfg.num_decoder_layers, dst_cfg.num_decoder_layers, depth)
    names = {p: tuple(spec) for p, spec in checks.flat(models.logical_axes(models.build(kind, dst_cfg))).items()}
    return GrowthPlan(kind, src_cfg, dst_cfg, maps, layers, names)


def _validate(params, src_cfg, dst_cfg, method: str) -> str:
    if method not in METHODS:
        raise UserError(f"method={method!r} is unknown; use one of {', '.join(METHODS)}.")
    kind = checks.model_kind(params)
    checks.check_params(params, src_cfg, kind)
    checks.check_growth(src_cfg, dst_cfg, kind)
    if method in DEPTHS:
        checks.check_same(src_cfg, dst_cfg, checks.WIDTH,
                          f"method {method!r} grows depth only (use 'fpi' or 'aki' with depth={method!r} for width)")
    return kind


def map_flat(flat: dict, plan: GrowthPlan, method: str, mode: str = "weight") -> dict:
    """FPI/AKI width expansion, then depth, then the tied-output fix, on a flat tree.

    `mode` "weight" maps parameters; "grad" / "grad_sq" map gradients and Adam's moments.
    """
    out = {}
    for path, x in flat.items():
        names = plan.names[path]
        axis_roles = roles(path, names)
        y = expand(x, names, axis_roles, plan.maps, query_scale(path, plan.src, plan.dst), mode)
        if method == "aki" and path[-1] in ("kernel", "bias"):
            y = aki_select(y, names, fan_out(path, names, axis_roles), plan.maps)
        out[path] = y
    out = grow_depth(out, plan.layers)
    return tied_output_fix(out, plan.kind, plan.src, plan.dst, plan.maps["hidden"], mode)


def embed_top_left(flat: dict, base: dict) -> dict:
    """DirectCopy: every source array written into the leading block of the target's array."""
    return {p: base[p].at[tuple(slice(0, s) for s in x.shape)].set(x) for p, x in flat.items()}


def break_symmetry(flat: dict, key, noise: float) -> dict:
    """Every kernel and embedding times (1 + noise * N(0, 1)), elementwise: copies of one unit stop being equal."""
    keys = dict(zip(sorted(flat), jax.random.split(key, len(flat))))
    return {p: x * (1 + noise * jax.random.normal(keys[p], x.shape, x.dtype)) if p[-1] in ("kernel", "embedding") else x
            for p, x in flat.items()}


def _grow(params, init_key, *, plan: GrowthPlan, method: str, noise: float = 0.0):
    model = models.build(plan.kind, plan.dst)
    if method == "random":
        return models.init(model, init_key)
    flat = checks.flat(params)
    if method == "direct_copy":
        base = checks.flat(models.init(model, init_key))
        return checks.unflat(embed_top_left(grow_depth(flat, plan.layers), base))
    out = map_flat(flat, plan, method)
    return checks.unflat(break_symmetry(out, jax.random.fold_in(init_key, 1), noise) if noise else out)


def grow(params, src_cfg: TransformerConfig, dst_cfg: TransformerConfig, *, method: str = "fpi",
         rng=None, unit_map: str = "random", depth: str = "stack", out_shardings=None, noise: float = 0.0) -> dict:
    """The target's params grown from `params` (see the module docstring for the methods).

    `out_shardings`: a pytree of shardings for the result (see `grow_sharded`).
    `noise`: Net2Net symmetry-breaking noise for fpi / aki (the module docstring).
    """
    kind = _validate(params, src_cfg, dst_cfg, method)
    if noise and method not in ("fpi", "aki"):
        raise UserError(f"noise={noise} applies to the width methods fpi and aki, not {method!r}; drop it.")
    depth = method if method in DEPTHS else depth
    plan = growth_plan(kind, src_cfg, dst_cfg, rng=rng, unit_map_kind=unit_map, depth=depth)
    fn = jax.jit(functools.partial(_grow, plan=plan, method=method, noise=float(noise)), out_shardings=out_shardings)
    return fn(params, _keys(rng)[1])


def target_shardings(kind: str, cfg: TransformerConfig, mesh, rules):
    """NamedShardings of a model's params on `mesh` under a logical rule table (or its name)."""
    from seqpt_jax.train import partitioning
    table = partitioning.rules(rules) if isinstance(rules, str) else list(rules)
    model = models.build(kind, cfg)
    return partitioning.shardings(models.logical_axes(model), models.param_shapes(model), table, mesh)


def grow_sharded(params, src_cfg: TransformerConfig, dst_cfg: TransformerConfig, mesh, rules, **kwargs):
    """`grow` with the target built directly into its shardings on `mesh`."""
    kind = checks.model_kind(params)
    return grow(params, src_cfg, dst_cfg, out_shardings=target_shardings(kind, dst_cfg, mesh, rules), **kwargs)


__all__ = ["METHODS", "DEPTHS", "GrowthPlan", "UnitMap", "growth_plan", "grow", "grow_sharded",
           "target_shardings", "map_flat", "embed_top_left"]
