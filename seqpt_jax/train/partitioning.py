"""Device mesh and logical-axis rules: how parameters and activations are laid out.

The mesh always has the three axes `(data, fsdp, model)`; a rule table maps the models'
logical axis names onto them. Tables are plain data chosen by name:

- `dp`      parameters replicated; the batch split over data x fsdp.
- `fsdp`    as dp, and every parameter's `embed` axis (else its `vocab`/`mlp` axis) split over
            fsdp (ZeRO-3 style: gathered per layer inside the step).
- `fsdp_tp` fsdp, plus heads / mlp / vocab split over `model` (Megatron-style tensor parallel).

Uneven dimensions: a parameter dimension that does not divide by the mesh axes it is mapped to
(heads=3 on model=2, an odd vocabulary on fsdp=8) is *replicated along that dimension* rather
than refused, and the fallback is reported once by `describe`. This keeps every preset
runnable on every mesh; the cost is memory, never correctness. Activations need no fallback:
XLA pads uneven activation shardings inside the step.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from seqpt_jax.errors import UserError

MESH_AXES = ("data", "fsdp", "model")
BATCH = ("data", "fsdp")

# Logical names used by the models (params and activation constraints).
LOGICAL_NAMES = ("batch", "vocab", "embed", "embed_out", "heads", "kv", "mlp", "layers",
                 "relpos_buckets", "length", "token_types", "classes")

# Order matters: flax assigns a mesh axis to the first rule that claims it, so `batch` comes
# first and an activation's `embed` then finds fsdp taken and stays unsharded.
_REPLICATED = [("kv", None), ("layers", None), ("relpos_buckets", None), ("length", None),
               ("token_types", None), ("classes", None), ("embed_out", None)]
RULES = {
    "dp": [("batch", BATCH), ("embed", None), ("vocab", None), ("heads", None), ("mlp", None)]
          + _REPLICATED,
    "fsdp": [("batch", BATCH), ("embed", "fsdp"), ("vocab", "fsdp"), ("mlp", "fsdp"),
             ("heads", None)] + _REPLICATED,
    "fsdp_tp": [("batch", BATCH), ("heads", "model"), ("mlp", "model"), ("vocab", "model"),
                ("embed", "fsdp"), ("vocab", "fsdp"), ("mlp", "fsdp")] + _REPLICATED,
}


def rules(name: str) -> list:
    """The logical-axis rule table called `name` (dp | fsdp | fsdp_tp)."""
    if name not in RULES:
        raise UserError(f"Unknown partitioning rules {name!r}; use one of {', '.join(RULES)}.")
    return list(RULES[name])


def make_mesh(shape: Sequence[int] = (-1, 1, 1), devices: Sequence | None = None) -> Mesh:
    """A `(data, fsdp, model)` mesh over `devices` (default: all); one -1 takes the rest."""
    devices = list(jax.devices() if devices is None else devices)
    shape = [int(s) for s in shape]
    if len(shape) != 3:
        raise UserError(f"mesh shape {tuple(shape)} must have 3 entries (data, fsdp, model).")
    if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise UserError(f"mesh shape {tuple(shape)}: use positive sizes and at most one -1.")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if len(devices) % known:
            raise UserError(f"mesh shape {tuple(shape)} does not divide {len(devices)} devices; "
                            f"choose sizes whose product divides the device count.")
        shape[shape.index(-1)] = len(devices) // known
    if math.prod(shape) != len(devices):
        raise UserError(f"mesh shape {tuple(shape)} needs {math.prod(shape)} devices but "
                        f"{len(devices)} are present; set one entry to -1 to use them all.")
    try:  # Lays devices out along the physical topology on TPU; plain order elsewhere.
        grid = mesh_utils.create_device_mesh(shape, devices)
    except Exception:  # noqa: BLE001 - CPU / odd device sets have no topology to follow.
        grid = np.asarray(devices, dtype=object).reshape(shape)
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def _axis_size(mesh: Mesh, assignment) -> int:
    if assignment is None:
        return 1
    names = (assignment,) if isinstance(assignment, str) else assignment
    return math.prod(mesh.shape[n] for n in names)


def fit_spec(spec: PartitionSpec, shape: tuple, mesh: Mesh) -> PartitionSpec:
    """`spec` with every dimension that does not divide by its mesh axes left replicated."""
    fitted = [a if dim % _axis_size(mesh, a) == 0 else None
              for a, dim in zip(tuple(spec) + (None,) * (len(shape) - len(spec)), shape)]
    return PartitionSpec(*fitted)


def mesh_specs(logical, shapes, rule_table: list, mesh: Mesh):
    """Mesh `PartitionSpec`s for a tree of logical specs and matching shapes (uneven -> replicated)."""
    mesh_tree = nn.logical_to_mesh(logical, rule_table)
    return jax.tree.map(lambda spec, x: fit_spec(spec, tuple(x.shape), mesh), mesh_tree, shapes,
                        is_leaf=lambda x: isinstance(x, PartitionSpec))


def shardings(logical, shapes, rule_table: list, mesh: Mesh):
    """`NamedSharding`s for a tree of logical specs and matching shapes."""
    return jax.tree.map(lambda spec: NamedSharding(mesh, spec),
                        mesh_specs(logical, shapes, rule_table, mesh),
                        is_leaf=lambda x: isinstance(x, PartitionSpec))


def describe(logical, shapes, rule_table: list, mesh: Mesh) -> list[str]:
    """One line per parameter dimension that fell back to replication (empty when none)."""
    wanted = nn.logical_to_mesh(logical, rule_table)
    lines = []
    flat_w = jax.tree_util.tree_flatten_with_path(wanted, is_leaf=lambda x: isinstance(x, PartitionSpec))[0]
    flat_s = jax.tree.leaves(shapes)
    for (path, spec), x in zip(flat_w, flat_s):
        got = fit_spec(spec, tuple(x.shape), mesh)
        for dim, (a, b) in enumerate(zip(tuple(spec), tuple(got))):
            if a != b:
                lines.append(f"{jax.tree_util.keystr(path)} dim {dim} (size {x.shape[dim]}) does not "
                             f"divide mesh axes {a}; replicated")
    return lines


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Examples split over data x fsdp, everything else replicated."""
    return NamedSharding(mesh, PartitionSpec(BATCH, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def sharded_init(init_fn, logical, rule_table: list, mesh: Mesh, *args):
    """Runs `init_fn(*args)` straight into its shardings: nothing is materialised whole.

    `logical` is the tree of logical `PartitionSpec`s of the result (e.g. `models.logical_axes`).
    """
    abstract = jax.eval_shape(init_fn, *args)
    out = shardings(logical, abstract, rule_table, mesh)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rule_table):
        return jax.jit(init_fn, out_shardings=out)(*args)


def init_params(model: nn.Module, rng: jax.Array, rule_table: list, mesh: Mesh, batch=None):
    """A model's float32 params, initialised sharded on `mesh` under `rule_table`."""
    from seqpt_jax import models
    batch = models.dummy_batch(model) if batch is None else batch
    init = lambda key: nn.meta.unbox(model.init(key, batch)["params"])  # noqa: E731
    return sharded_init(init, models.logical_axes(model, batch), rule_table, mesh, rng)
