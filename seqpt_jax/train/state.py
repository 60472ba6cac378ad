"""The train state (step, params, optimizer state, RNG) and its sharded creation.

Optimizer-state leaves shaped like a parameter take that parameter's sharding (Adam moments
are laid out like the weights); everything else (counts, factored Adafactor rows) is
replicated.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from seqpt_jax.train import partitioning


@flax.struct.dataclass
class TrainState:
    step: jax.Array          # int32 scalar: optimizer steps taken
    params: Any
    opt_state: Any
    rng: jax.Array           # uint32[2] raw key; dropout uses fold_in(rng, step)


# (rng, abstract params with shardings) -> params. The init hook: fresh init, a param
# checkpoint, or a mapping (warm start, growth) all have this shape.
InitFn = Callable[[jax.Array, Any], Any]


def state_shardings(abstract_state: TrainState, param_shardings, mesh: Mesh) -> TrainState:
    """Shardings for every leaf of a (abstract) TrainState."""
    repl = partitioning.replicated(mesh)
    by_shape = {}
    for x, s in zip(jax.tree.leaves(abstract_state.params), jax.tree.leaves(param_shardings)):
        by_shape.setdefault((tuple(x.shape), x.dtype), s)
    opt = jax.tree.map(lambda x: by_shape.get((tuple(x.shape), x.dtype), repl) if x.ndim else repl,
                       abstract_state.opt_state)
    return TrainState(step=repl, params=param_shardings, opt_state=opt, rng=repl)


def initial_params(init_params: InitFn, abstract_params, param_shardings, seed: int):
    """The params a run of `seed` starts from (float32, sharded): `init_params` on the first half
    of the seed's key (the state's rng is the second)."""
    init_rng = jax.random.split(jax.random.PRNGKey(seed))[0]
    with_shardings = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                  abstract_params, param_shardings)
    params = init_params(init_rng, with_shardings)
    return jax.tree.map(lambda p, s: jax.device_put(jnp.asarray(p, jnp.float32), s), params, param_shardings)


def create(init_params: InitFn, optimizer: optax.GradientTransformation, abstract_params,
           param_shardings, mesh: Mesh, seed: int) -> TrainState:
    """A sharded TrainState: params from `init_params`, then `optimizer.init` under jit."""
    params = initial_params(init_params, abstract_params, param_shardings, seed)
    state_rng = jax.random.split(jax.random.PRNGKey(seed))[1]

    def build(params):
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=optimizer.init(params), rng=state_rng)

    abstract = jax.eval_shape(build, params)
    shardings = state_shardings(abstract, param_shardings, mesh)
    return jax.jit(build, out_shardings=shardings)(params)


def abstract_state(optimizer: optax.GradientTransformation, abstract_params, param_shardings,
                   mesh: Mesh) -> TrainState:
    """ShapeDtypeStructs (with shardings) of the TrainState, to restore a checkpoint into."""
    abstract = jax.eval_shape(
        lambda p: TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=optimizer.init(p),
                             rng=jax.random.PRNGKey(0)), abstract_params)
    shardings = state_shardings(abstract, param_shardings, mesh)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)


def fresh_init(model) -> InitFn:
    """The default init hook: the model's own initialisers, run sharded."""
    from seqpt_jax import models

    def init(rng, abstract_params):
        out = jax.tree.map(lambda x: x.sharding, abstract_params)
        batch = models.dummy_batch(model)
        fn = lambda key: flax.linen.meta.unbox(model.init(key, batch)["params"])  # noqa: E731
        return jax.jit(fn, out_shardings=out)(rng)

    return init


def checkpoint_model(path: str):
    """The model of the checkpoint at `path` (its kind and config as saved), to train it further."""
    from seqpt_jax import models, params_io
    kind, cfg = params_io.read_model(path)
    return models.build(kind, cfg)


def from_param_checkpoint(path: str) -> InitFn:
    """Init hook: the params of the model at `path` (`params_io.load`: a params checkpoint or a
    `seqpt train` MODEL_DIR); they must be the trained model's tree. `create` shards them."""
    def init(rng, abstract_params):
        del rng
        from seqpt_jax import params_io
        from seqpt_jax.mappings import transfer
        _, _, params = params_io.load(path)
        return transfer.take(abstract_params, params, exact=True, what=f"the checkpoint {path}")
    return init

