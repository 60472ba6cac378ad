"""Sharded loss and gradients equal the single-device values; logical axes cover every param."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqpt_jax import models
from seqpt_jax.errors import UserError
from seqpt_jax.train import losses
from seqpt_jax.train import partitioning as P

# float32 sums over differently split reductions: a few ulps of the largest value.
RTOL = 1e-5


def _bert():
    return models.EncoderMLM(models.preset("bert-tiny", vocab_size=101, dropout_rate=0.0))


def _t5(heads=3):  # 3 heads: uneven on model=2, exercises the replication fallback
    cfg = models.preset("t5-tiny", vocab_size=101, num_heads=heads, d_model=64, d_ff=96,
                        head_dim=16)
    return models.EncoderDecoder(cfg)


def _batch(model, n=8, length=8):
    rng = np.random.default_rng(0)
    tok = rng.integers(2, 101, (n, length)).astype(np.int32)
    tok[:, -2:] = 0  # some padding
    batch = {"encoder_input_tokens": tok}
    if isinstance(model, models.EncoderDecoder):
        tgt = rng.integers(2, 101, (n, length)).astype(np.int32)
        batch["decoder_target_tokens"] = tgt
        batch["decoder_input_tokens"] = np.concatenate([np.zeros((n, 1), np.int32), tgt[:, :-1]], 1)
        batch["decoder_loss_weights"] = (rng.random((n, length)) > 0.2).astype(np.float32)
    else:
        batch["mlm_targets"] = rng.integers(2, 101, (n, length)).astype(np.int32)
        batch["mlm_weights"] = (rng.random((n, length)) < 0.3).astype(np.float32)
    return batch


def _loss_fn(model):
    def f(params, batch):
        sums = losses.loss_for(batch)(model.apply({"params": params}, batch), batch, z_loss=1e-4)
        return sums.loss / sums.weight
    return jax.value_and_grad(f)


def _sharded(model, batch, rules_name, shape):
    mesh = P.make_mesh(shape)
    table = P.rules(rules_name)
    params = P.init_params(model, jax.random.key(0), table, mesh)
    batch = jax.device_put(batch, P.batch_sharding(mesh))
    with jax.set_mesh(mesh), nn.logical_axis_rules(table):
        loss, grads = jax.jit(_loss_fn(model))(params, batch)
    return params, loss, grads


def _assert_close(a, b):
    """Elementwise rtol, with an atol of rtol x the tree's largest value for entries that are
    zero in exact arithmetic (e.g. the key bias gradient) and come out as 1e-12 noise."""
    scale = max(float(np.abs(np.asarray(y)).max()) for y in jax.tree.leaves(b))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=RTOL, atol=RTOL * scale)


@functools.lru_cache(maxsize=None)
def _reference(make):
    model = make()
    batch = _batch(model)
    params = models.init(model, jax.random.key(0))
    return model, batch, params, *jax.jit(_loss_fn(model))(params, batch)


@pytest.mark.parametrize("make", [_bert, _t5], ids=["bert", "t5"])
@pytest.mark.parametrize("rules_name,shape", [
    ("dp", (8, 1, 1)), ("fsdp", (2, 4, 1)), ("fsdp_tp", (2, 2, 2))])
def test_sharded_loss_and_grads_match_single_device(make, rules_name, shape):
    model, batch, ref_params, ref_loss, ref_grads = _reference(make)
    params, loss, grads = _sharded(model, batch, rules_name, shape)
    _assert_close(params, ref_params)  # sharded init draws the same numbers
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=RTOL)
    _assert_close(grads, ref_grads)
    if rules_name != "dp":  # something really is split
        specs = [g.sharding.spec for g in jax.tree.leaves(params)]
        assert any(any(a is not None for a in s) for s in specs)


def test_uneven_heads_fall_back_to_replication():
    model = _t5(heads=3)
    mesh = P.make_mesh((2, 2, 2))
    specs = P.mesh_specs(models.logical_axes(model), models.param_shapes(model), P.rules("fsdp_tp"), mesh)
    q = specs["encoder"]["layers"]["attention"]["query"]["kernel"]  # [layers, embed, heads, kv]
    assert q == jax.sharding.PartitionSpec(None, "fsdp", None, None)
    wi = specs["encoder"]["layers"]["mlp"]["wi_0"]["kernel"]  # d_ff=96 divides: stays split
    assert wi == jax.sharding.PartitionSpec(None, "fsdp", "model")
    lines = P.describe(models.logical_axes(model), models.param_shapes(model), P.rules("fsdp_tp"), mesh)
    assert any("query" in line and "replicated" in line for line in lines)


@pytest.mark.parametrize("build", [
    lambda: _bert(), lambda: _t5(), lambda: models.Encoder(models.preset("t5-tiny", vocab_size=64)),
    lambda: models.SequenceClassifier(models.preset("bert-tiny", vocab_size=64), 3),
    lambda: models.TokenClassifier(models.preset("t5-tiny", vocab_size=64), 5)])
def test_every_param_has_logical_axes_with_rules(build):
    model = build()
    logical = models.logical_axes(model)
    shapes = models.param_shapes(model)
    flat_l = jax.tree.leaves(logical, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    flat_s = jax.tree.leaves(shapes)
    assert len(flat_l) == len(flat_s) > 0
    for spec, x in zip(flat_l, flat_s):
        assert isinstance(spec, jax.sharding.PartitionSpec)
        assert len(spec) == x.ndim, (spec, x.shape)
        assert all(name in P.LOGICAL_NAMES for name in spec), spec
    for table in P.RULES:
        covered = {name for name, _ in P.rules(table)}
        assert set(P.LOGICAL_NAMES) <= covered, (table, set(P.LOGICAL_NAMES) - covered)


def test_mesh_shape_errors():
    assert P.make_mesh((-1, 2, 1)).shape == {"data": 4, "fsdp": 2, "model": 1}
    with pytest.raises(UserError, match="mesh shape"):
        P.make_mesh((3, -1, 1))
    with pytest.raises(UserError, match="needs 4 devices"):
        P.make_mesh((2, 2, 1))
    with pytest.raises(UserError, match="Unknown partitioning rules"):
        P.rules("zero3")


def test_losses_sum_and_z_loss():
    logits = jnp.array([[[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]]])
    targets = jnp.array([[0, 2]])
    weights = jnp.array([[1.0, 0.0]])
    s = losses.cross_entropy(logits, targets, weights, z_loss=0.1)
    lz = jax.nn.logsumexp(logits[0, 0])
    np.testing.assert_allclose(float(s.loss), float(lz - 2.0 + 0.1 * lz ** 2), rtol=1e-6)
    assert float(s.weight) == 1.0 and float(s.correct) == 1.0
