"""The jitted train and eval steps.

One train step = forward + backward over `grad_accum` micro-batches (a `lax.scan` adding loss
*sums* and gradient sums, normalised once by the total token weight, so k micro-batches equal
one batch k times larger), then the optimizer. Frozen params are stop-gradient in the forward
pass; a different trainable mask is a different compiled step (frozen vs unfrozen, and one
per bert2BERT sub-model).
The state is donated: its buffers are reused for the new state.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, PartitionSpec

from seqpt_jax.train import freezing, losses, partitioning
from seqpt_jax.train.state import TrainState


def _loss_sums(model, params, batch, rng, z_loss, train: bool, encoder_mlm_weight: float = 0.0) -> losses.LossSums:
    kwargs = {"enable_dropout": True, "rngs": {"dropout": rng}} if train else {}
    if encoder_mlm_weight:  # seq2seq denoising + encoder MLM (seq2seq_masked_encoder.gin)
        logits, mlm_logits = model.apply({"params": params}, batch, method="forward_with_encoder_mlm", **kwargs)
        return losses.seq2seq_with_encoder_mlm(logits, mlm_logits, batch, encoder_mlm_weight, z_loss)
    logits = model.apply({"params": params}, batch, **kwargs)
    return losses.loss_for(batch)(logits, batch, z_loss)


def _split_micro(batch: dict, k: int, mesh: Mesh) -> dict:
    """[B, ...] -> [k, B/k, ...]; micro-batch i takes rows i, i+k, ... so it spans all devices."""
    def one(x):
        x = x.reshape((x.shape[0] // k, k) + x.shape[1:]).swapaxes(0, 1)
        spec = PartitionSpec(None, partitioning.BATCH, *([None] * (x.ndim - 2)))
        return jax.lax.with_sharding_constraint(x, jax.sharding.NamedSharding(mesh, spec))
    return jax.tree.map(one, batch)


def apply_gradients(optimizer: optax.GradientTransformation, params, opt_state, grads, trainable):
    """(params, opt_state) after one optimizer update with `grads`; frozen params keep their
    values, frozen moments are restored and a group with nothing trainable keeps its state."""
    updates, new_state = optimizer.update(grads, opt_state, params)
    if not (freezing.is_static(trainable) and all(jax.tree.leaves(trainable))):
        updates = freezing.zero_frozen(updates, trainable)
        new_state = freezing.keep_frozen_state(new_state, opt_state, trainable)
    return optax.apply_updates(params, updates), new_state


def make_train_step(model: nn.Module, optimizer: optax.GradientTransformation, schedule,
                    trainable, mesh: Mesh, rules: list, *, grad_accum: int = 1, z_loss: float = 0.0,
                    sub_model: freezing.SubModel | None = None, encoder_mlm_weight: float = 0.0) -> Callable:
    """`step(state, batch) -> (state, metrics)`, jitted with the state donated.

    `trainable`: see `freezing`. `sub_model`: train a bottom-layers sub-model (the `model`
    passed must then be built with `freezing.sub_model_config`); the params are viewed as the
    sub-model's (`freezing.sub_model_view`), whose frozen bottom scan gets no backward pass.
    `encoder_mlm_weight` > 0: add the encoder MLM loss (`losses.seq2seq_with_encoder_mlm`; the
    model needs `encoder_mlm_head`).
    """
    step_fn = train_step_fn(model, optimizer, schedule, trainable, mesh, grad_accum=grad_accum,
                            z_loss=z_loss, sub_model=sub_model, encoder_mlm_weight=encoder_mlm_weight)
    jitted = jax.jit(step_fn, donate_argnums=0)

    def run(state, batch):
        with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
            return jitted(state, batch)

    def trace(state, batch):
        """The step's jaxpr (state and batch may be abstract), e.g. for train.jaxpr_flops."""
        with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
            return jax.make_jaxpr(step_fn)(state, batch)

    run.jitted = jitted
    run.trace = trace
    return run


def train_step_fn(model: nn.Module, optimizer: optax.GradientTransformation, schedule, trainable,
                  mesh: Mesh, *, grad_accum: int = 1, z_loss: float = 0.0,
                  sub_model: freezing.SubModel | None = None, encoder_mlm_weight: float = 0.0) -> Callable:
    """The train step as a plain function `(state, batch) -> (state, metrics)` (not jitted)."""
    if sub_model is not None:
        view_trainable = freezing.uniform(freezing.sub_model_view(trainable, sub_model))

    def grads_and_sums(params, batch, rng):
        def f(p, mb, key):
            if sub_model is not None:
                p = freezing.stop_frozen(freezing.sub_model_view(p, sub_model), view_trainable)
            else:
                p = freezing.stop_frozen(p, trainable)
            sums = _loss_sums(model, p, mb, key, z_loss, train=True, encoder_mlm_weight=encoder_mlm_weight)
            return sums.loss, sums

        grad_fn = jax.grad(f, has_aux=True)
        if grad_accum == 1:
            return grad_fn(params, batch, rng)
        micro = _split_micro(batch, grad_accum, mesh)

        def body(carry, i_mb):
            g_acc, s_acc = carry
            i, mb = i_mb
            g, s = grad_fn(params, mb, jax.random.fold_in(rng, i))
            return (jax.tree.map(jnp.add, g_acc, g), losses.add(s_acc, s)), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        zero_sums = losses.LossSums(*(jnp.zeros((), jnp.float32) for _ in losses.LossSums._fields))
        (g, s), _ = jax.lax.scan(body, (zeros, zero_sums), (jnp.arange(grad_accum), micro))
        return g, s

    def step(state: TrainState, batch: dict):
        rng = jax.random.fold_in(state.rng, state.step)
        grads, sums = grads_and_sums(state.params, batch, rng)
        denom = jnp.maximum(sums.weight, 1.0)
        grads = jax.tree.map(lambda g: g / denom, grads)
        params, opt_state = apply_gradients(optimizer, state.params, state.opt_state, grads, trainable)
        metrics = {"loss": sums.loss / denom, "z_loss": sums.z_loss / denom,
                   "accuracy": sums.correct / denom, "tokens": sums.weight,
                   "grad_norm": optax.tree.norm(grads), "learning_rate": schedule(state.step)}
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return step


def make_eval_step(model: nn.Module, mesh: Mesh, rules: list, z_loss: float = 0.0,
                   encoder_mlm_weight: float = 0.0) -> Callable:
    """`eval_step(params, batch) -> LossSums` (sums, so batches add up exactly)."""
    jitted = jax.jit(lambda params, batch: _loss_sums(model, params, batch, None, z_loss, train=False,
                                                      encoder_mlm_weight=encoder_mlm_weight))

    def run(params, batch):
        with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
            return jitted(params, batch)

    return run
