"""The jitted train and eval steps.

One train step = forward + backward over `grad_accum` micro-batches (a `lax.scan` adding loss
*sums* and gradient sums, normalised once by the total token weight, so k micro-batches equal
one batch k times larger), then the optimizer. Frozen params are stop-gradient in the forward
pass; a different trainable mask is a different compiled step (frozen vs unfrozen, and one
per bert2BERT sub-model). A distillation phase (`train.distill`) is one more compiled step: it
also takes the teacher's params, an input that is neither differentiated nor in the optimizer
state, runs the teacher's forward pass on each micro-batch and adds the KD term.
The state is donated: its buffers are reused for the new state.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, PartitionSpec

from seqpt_jax import models
from seqpt_jax.train import distill as distill_lib, freezing, losses, partitioning
from seqpt_jax.train.state import TrainState


def _loss_sums(model, params, batch, rng, z_loss, train: bool, encoder_mlm_weight: float = 0.0) -> losses.LossSums:
    kwargs = {"enable_dropout": True, "rngs": {"dropout": rng}} if train else {}
    if isinstance(model, (models.EncoderMLM, models.EncoderDecoder)) and model.cfg.loss_chunk:
        kwargs["project"] = False  # the loss projects `loss_chunk` tokens at a time (losses.cross_entropy)
    if encoder_mlm_weight:  # seq2seq denoising + encoder MLM (seq2seq_masked_encoder.gin)
        logits, mlm_logits = model.apply({"params": params}, batch, method="forward_with_encoder_mlm", **kwargs)
        return losses.seq2seq_with_encoder_mlm(logits, mlm_logits, batch, encoder_mlm_weight, z_loss)
    logits = model.apply({"params": params}, batch, **kwargs)
    return losses.loss_for(batch)(logits, batch, z_loss)


def _distilled_sums(model, params, batch, rng, z_loss, teacher_logits, weight, spec: distill_lib.Distill):
    """(LossSums whose loss is (1-w) CE + w KD + z-loss, the KD sum); see `train.distill`."""
    logits = model.apply({"params": params}, batch, enable_dropout=True, rngs={"dropout": rng})
    sums = losses.loss_for(batch)(logits, batch, z_loss)
    kd = distill_lib.soft_cross_entropy(logits, teacher_logits, distill_lib.loss_weights(batch), spec.temperature)
    loss = (1.0 - weight) * (sums.loss - sums.z_loss) + weight * kd + sums.z_loss
    return sums._replace(loss=loss), kd


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
                    sub_model: freezing.SubModel | None = None, encoder_mlm_weight: float = 0.0,
                    teacher: tuple | None = None) -> Callable:
    """`step(state, batch) -> (state, metrics)`, jitted with the state donated.

    `trainable`: see `freezing`. `sub_model`: train a bottom-layers sub-model (the `model`
    passed must then be built with `freezing.sub_model_config`); the params are viewed as the
    sub-model's (`freezing.sub_model_view`), whose frozen bottom scan gets no backward pass.
    `encoder_mlm_weight` > 0: add the encoder MLM loss (`losses.seq2seq_with_encoder_mlm`; the
    model needs `encoder_mlm_head`).
    `teacher`: (teacher model, its params, `distill.Distill`) for a distillation phase: the
    params (arrays, or ShapeDtypeStructs for `trace`) are passed to every call, never updated.
    """
    teacher_model, teacher_params, spec = teacher if teacher is not None else (None, None, None)
    step_fn = train_step_fn(model, optimizer, schedule, trainable, mesh, grad_accum=grad_accum,
                            z_loss=z_loss, sub_model=sub_model, encoder_mlm_weight=encoder_mlm_weight,
                            teacher_model=teacher_model, distill=spec)
    jitted = jax.jit(step_fn, donate_argnums=0)
    extra = () if teacher is None else (teacher_params,)

    def run(state, batch):
        with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
            return jitted(state, batch, *extra)

    def trace(state, batch):
        """The step's jaxpr (state and batch may be abstract), e.g. for train.jaxpr_flops."""
        with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
            return jax.make_jaxpr(step_fn)(state, batch, *extra)

    run.jitted = jitted
    run.trace = trace
    return run


def train_step_fn(model: nn.Module, optimizer: optax.GradientTransformation, schedule, trainable,
                  mesh: Mesh, *, grad_accum: int = 1, z_loss: float = 0.0,
                  sub_model: freezing.SubModel | None = None, encoder_mlm_weight: float = 0.0,
                  teacher_model: nn.Module | None = None, distill: distill_lib.Distill | None = None) -> Callable:
    """The train step as a plain function `(state, batch) -> (state, metrics)` (not jitted);
    with `teacher_model` and `distill`, `(state, batch, teacher_params) -> (state, metrics)`."""
    if sub_model is not None:
        view_trainable = freezing.uniform(freezing.sub_model_view(trainable, sub_model))
    distilling = teacher_model is not None

    def grads_and_sums(params, batch, rng, teacher_params=None, weight=None):
        def f(p, mb, key, teacher_logits):
            if sub_model is not None:
                p = freezing.stop_frozen(freezing.sub_model_view(p, sub_model), view_trainable)
            else:
                p = freezing.stop_frozen(p, trainable)
            if distilling:
                sums, kd = _distilled_sums(model, p, mb, key, z_loss, teacher_logits, weight, distill)
                return sums.loss, (sums, kd)
            sums = _loss_sums(model, p, mb, key, z_loss, train=True, encoder_mlm_weight=encoder_mlm_weight)
            return sums.loss, sums

        grad_fn = jax.grad(f, has_aux=True)

        def one(mb, key):
            # The teacher's forward pass (no dropout) is outside the differentiated function:
            # its params get no gradient and its activations no backward pass.
            teacher_logits = teacher_model.apply({"params": teacher_params}, mb) if distilling else None
            return grad_fn(params, mb, key, teacher_logits)

        if grad_accum == 1:
            return one(batch, rng)
        micro = _split_micro(batch, grad_accum, mesh)

        def body(carry, i_mb):
            g_acc, s_acc = carry
            i, mb = i_mb
            g, s = one(mb, jax.random.fold_in(rng, i))
            return (jax.tree.map(jnp.add, g_acc, g), jax.tree.map(jnp.add, s_acc, s)), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        zero_sums = losses.LossSums(*(jnp.zeros((), jnp.float32) for _ in losses.LossSums._fields))
        zero_aux = (zero_sums, jnp.zeros((), jnp.float32)) if distilling else zero_sums
        (g, s), _ = jax.lax.scan(body, (zeros, zero_aux), (jnp.arange(grad_accum), micro))
        return g, s

    def step(state: TrainState, batch: dict, teacher_params=None):
        rng = jax.random.fold_in(state.rng, state.step)
        weight = distill_lib.weight_at(state.step, distill.weight, distill.steps, distill.schedule) \
            if distilling else None
        grads, aux = grads_and_sums(state.params, batch, rng, teacher_params, weight)
        sums = aux[0] if distilling else aux
        denom = jnp.maximum(sums.weight, 1.0)
        grads = jax.tree.map(lambda g: g / denom, grads)
        params, opt_state = apply_gradients(optimizer, state.params, state.opt_state, grads, trainable)
        metrics = {"loss": sums.loss / denom, "z_loss": sums.z_loss / denom,
                   "accuracy": sums.correct / denom, "tokens": sums.weight,
                   "grad_norm": optax.tree.norm(grads), "learning_rate": schedule(state.step)}
        if distilling:
            metrics.update(kd_loss=aux[1] / denom, distill_weight=weight)
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
