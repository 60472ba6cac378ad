"""Matrix-multiply FLOPs of a traced function, read from its jaxpr: what the step really runs.

XLA's `cost_analysis` counts a while loop's body once, so it cannot see scanned layers; the
jaxpr can. Every `dot_general` costs 2 * prod(batch dims) * prod(contracting dims) *
prod(free dims of both operands); sub-jaxprs (pjit, custom_jvp/vjp, remat, scan, cond) are
walked, a scan body counting `length` times and a cond its costliest branch. cuDNN's fused
attention (`jax.nn.dot_product_attention(implementation='cudnn')`, a custom call) counts as the
matmuls it stands for: forward the scores and the weighted sum, backward dQ, dK, dP and dV (its
recomputed scores left out, as a rematerialisation would be). Elementwise ops, reductions and
gathers are left out, as in the ledger (train.perf).
"""

from __future__ import annotations

import math
from typing import Any

import jax
from jax.extend import core as jex_core


def dot_general_flops(eqn) -> float:
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
    batch = math.prod(lhs[i] for i in lb)
    contract = math.prod(lhs[i] for i in lc)
    lhs_free = math.prod(d for i, d in enumerate(lhs) if i not in lc and i not in lb)
    rhs_free = math.prod(d for i, d in enumerate(rhs) if i not in rc and i not in rb)
    return 2.0 * batch * contract * lhs_free * rhs_free


# cuDNN fused-attention primitives -> how many [B, N, T, S, H] matmuls each stands for.
FUSED_ATTENTION = {"dot_product_attention_fwd_wrapper": 2, "dot_product_attention_bwd_wrapper": 4}


def fused_attention_flops(eqn) -> float:
    """Query [B, T, N, H] and key [B, S, K, H] (BTNH, jax's layout): 2 * B * N * T * S * H per matmul."""
    (b, t, n, h), s = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape[1]
    return FUSED_ATTENTION[eqn.primitive.name] * 2.0 * b * n * t * s * h


def _jaxprs(value: Any) -> list:
    if isinstance(value, jex_core.ClosedJaxpr):
        return [value.jaxpr]
    if isinstance(value, jex_core.Jaxpr):
        return [value]
    if isinstance(value, (tuple, list)):
        return [j for v in value for j in _jaxprs(v)]
    return []


def jaxpr_flops(jaxpr) -> float:
    """dot_general FLOPs of a (Closed)Jaxpr, sub-jaxprs included (see the module docstring)."""
    if isinstance(jaxpr, jex_core.ClosedJaxpr):
        jaxpr = jaxpr.jaxpr
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += dot_general_flops(eqn)
            continue
        if name in FUSED_ATTENTION:
            total += fused_attention_flops(eqn)
            continue
        if name == "cond":
            total += max((jaxpr_flops(b) for b in _jaxprs(eqn.params["branches"])), default=0.0)
            continue
        if name == "while":
            raise ValueError("a while loop's trip count is unknown to the jaxpr; use lax.scan")
        times = eqn.params["length"] if name == "scan" else 1
        for value in eqn.params.values():
            for sub in _jaxprs(value):
                total += times * jaxpr_flops(sub)
    return total


def traced_flops(fn, *args) -> float:
    """dot_general FLOPs of `fn(*args)` (args may be `jax.ShapeDtypeStruct`s)."""
    return jaxpr_flops(jax.make_jaxpr(fn)(*args))
