"""Growing optimizer state with the same unit maps, so a grown run continues its optimizer.

Adam's moments are running averages of gradients (mu) and squared gradients (nu). When the
grown model computes the source's function, the gradient of each grown entry is the source
gradient copied and divided by the copy counts of the entry's fan-out axes (width.py,
`mode="grad"`). Since those maps are linear and elementwise-scaling:

    mu' = G(mu)          nu' = G2(nu) = gather(nu) / (counts of fan-out axes)^2

are exactly the moments the grown model would hold had it followed the FPI image of the
source's trajectory (exact with a tile map; with a random map, exact up to the norm
perturbation). AKI's new units take the moments of layer l+1, as their weights do; depth
growth copies layers' moments with the layers. DirectCopy keeps the source moments in the
top-left block and zeros elsewhere; "random" starts from zeros.

Preserved: Adam's step count (`count`, which drives bias correction) and every other
non-parameter leaf (the learning-rate schedule's step), so the schedule continues where it
was. Not preserved: Adam's update is scale-invariant per entry, so the first update of a
split (fan-in) entry equals its source's update rather than 1/c of it; training leaves the
exact FPI subspace from the first step on, which is intended (that symmetry is what AKI
breaks anyway).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from seqpt_jax import models
from seqpt_jax.errors import UserError
from seqpt_jax.mappings import checks
from seqpt_jax.mappings.depth import grow_depth
from seqpt_jax.mappings.grow import DEPTHS, METHODS, GrowthPlan, embed_top_left, growth_plan, map_flat

# State types whose fields are parameter-shaped trees, and each field's mode.
_MOMENTS = {optax.ScaleByAdamState: {"mu": "grad", "nu": "grad_sq"},
            optax.TraceState: {"trace": "grad"}}


def _is_param_tree(x) -> bool:
    return isinstance(x, dict) and "encoder" in x


def _map_tree(tree, plan: GrowthPlan, method: str, mode: str):
    """One parameter-shaped tree (leaves may be optax.MaskedNode for frozen parts)."""
    flat = checks.flat(tree)
    arrays = {p: x for p, x in flat.items() if checks.is_array(x)}
    shapes = checks.flat(models.param_shapes(models.build(plan.kind, plan.dst)))
    if method == "random":
        mapped = {p: jnp.zeros(shapes[p].shape, x.dtype) for p, x in arrays.items()}
    elif method == "direct_copy":
        base = {p: jnp.zeros(shapes[p].shape, x.dtype) for p, x in arrays.items()}
        mapped = embed_top_left(grow_depth(arrays, plan.layers), base)
    else:
        mapped = map_flat(arrays, plan, method, mode)
    return checks.unflat({p: mapped.get(p, x) for p, x in flat.items()})


def _map_state(state, plan: GrowthPlan, method: str):
    def visit(node):
        for cls, fields in _MOMENTS.items():
            if isinstance(node, cls):
                return node._replace(**{f: _map_tree(getattr(node, f), plan, method, m)
                                        for f, m in fields.items()})
        if _is_param_tree(node):
            raise UserError("optimizer state holds a parameter-shaped tree of an unsupported type; "
                            "grow_optimizer_state maps optax Adam/AdamW (ScaleByAdamState) and "
                            "momentum (TraceState) states — start the optimizer afresh otherwise.")
        return node
    return jax.tree.map(visit, state, is_leaf=lambda n: isinstance(n, tuple(_MOMENTS)) or _is_param_tree(n))


def grow_optimizer_state(opt_state, src_cfg, dst_cfg, *, method: str = "fpi", rng=None,
                         unit_map: str = "random", depth: str = "stack", kind: str | None = None,
                         out_shardings=None):
    """`opt_state` of the source mapped onto the target grown by `grow` with the same
    arguments (same `rng` -> same unit maps). `kind` defaults to the moments' tree's kind."""
    if method not in METHODS:
        raise UserError(f"method={method!r} is unknown; use one of {', '.join(METHODS)}.")
    if kind is None:
        trees = [n for n in jax.tree.leaves(opt_state, is_leaf=_is_param_tree) if _is_param_tree(n)]
        if not trees:
            raise UserError("optimizer state holds no parameter-shaped tree (no Adam moments) to grow.")
        kind = checks.model_kind(trees[0])
    checks.check_growth(src_cfg, dst_cfg, kind)
    depth = method if method in DEPTHS else depth
    plan = growth_plan(kind, src_cfg, dst_cfg, rng=rng, unit_map_kind=unit_map, depth=depth)
    fn = jax.jit(functools.partial(_map_state, plan=plan, method=method), out_shardings=out_shardings)
    return fn(opt_state)
