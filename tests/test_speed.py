"""Step-speed changes that must not change results: the 2-D dense contraction, unrolled layer
scans, and the MLM head on masked positions only (and the FLOPs ledger that counts it)."""

import jax
import numpy as np
import flax.linen as nn
import optax
import pytest

from seqpt_jax import models
from seqpt_jax.data import mlm_positions
from seqpt_jax.errors import UserError
from seqpt_jax.models import heads, layers
from seqpt_jax.train import data, freezing, losses, perf


def _bert(**kw):
    return models.EncoderMLM(models.preset("bert-tiny", vocab_size=101, dropout_rate=0.0, d_ff=64,
                                           num_encoder_layers=2, **kw))


def _t5(**kw):
    return models.EncoderDecoder(models.preset("t5-tiny", vocab_size=101, d_model=32, d_ff=48, num_heads=2,
                                               head_dim=16, num_encoder_layers=2, num_decoder_layers=2, **kw))


def _dense_batch(n=4, length=16):
    src = data.synthetic("train", n, 0, (0, 1), length=length)
    b = next(src)
    targets = b["encoder_input_tokens"].copy()  # aligned targets, rebuilt from the positions
    weights = np.zeros(targets.shape, np.float32)
    np.put_along_axis(targets, b["mlm_positions"], b["mlm_targets"], 1)
    np.put_along_axis(weights, b["mlm_positions"], b["mlm_weights"], 1)
    return {"encoder_input_tokens": b["encoder_input_tokens"], "mlm_targets": targets,
            "mlm_weights": weights}, b


class _ReferenceDense(layers.DenseGeneral):
    """DenseGeneral as it was: one dot_general over [batch, length, ...] (the reference path)."""

    @nn.compact
    def __call__(self, x):
        return _reference_dense(self, x)


def _reference_dense(self, x):
    cfg = self.cfg
    fan_in = self.init_fan_in or int(np.prod(self.in_shape))
    kernel = layers._param(self, "kernel", layers._init(cfg, fan_in), self.in_shape + self.out_shape, self.axes)
    n_in = len(self.in_shape)
    contract = (tuple(range(x.ndim - n_in, x.ndim)), tuple(range(n_in)))
    y = jax.lax.dot_general(x.astype(cfg.compute_dtype), kernel.astype(cfg.compute_dtype), (contract, ((), ())))
    if cfg.use_bias:
        y = y + layers._param(self, "bias", jax.nn.initializers.zeros, self.out_shape,
                              self.axes[n_in:]).astype(cfg.compute_dtype)
    return y


def _five_losses(model, batch):
    params = models.init(model, jax.random.key(0), {k: v for k, v in batch.items() if k.endswith("input_tokens")})
    opt = optax.adamw(1e-2)

    @jax.jit
    def step(p, s):
        loss, g = jax.value_and_grad(lambda q: (lambda t: t.loss / t.weight)(
            losses.loss_for(batch)(model.apply({"params": q}, batch), batch)))(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    p, s, out = params, opt.init(params), []
    for _ in range(5):
        p, s, loss = step(p, s)
        out.append(float(loss))
    return np.array(out)


@pytest.mark.parametrize("family", ["bert", "t5"])
def test_first_five_losses_unchanged_by_flat_dots_and_unrolled_scans(family, monkeypatch):
    if family == "bert":
        build, batch = _bert, _dense_batch()[1]
    else:
        build = _t5
        batch = next(data.synthetic("train", 4, 0, (0, 1), objective="seq2seq", length=16, target_length=8))
    fast = {unroll: _five_losses(build(scan_unroll=unroll), batch) for unroll in (1, 0)}
    with monkeypatch.context() as m:
        m.setattr(layers, "DenseGeneral", _ReferenceDense)
        m.setattr(heads, "DenseGeneral", _ReferenceDense)
        reference = _five_losses(build(), batch)
    assert reference[-1] < reference[0]  # it trains
    for unroll, got in fast.items():
        np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5, err_msg=f"scan_unroll={unroll}")


def test_masked_only_mlm_loss_and_grads_equal_all_positions():
    model = _bert()
    dense, compact = _dense_batch()
    assert compact["mlm_positions"].shape[1] < dense["mlm_targets"].shape[1]
    params = models.init(model, jax.random.key(1), {"encoder_input_tokens": dense["encoder_input_tokens"]})

    def loss(p, b):
        logits = model.apply({"params": p}, b)
        return losses.mlm_loss(logits, b, z_loss=1e-4), logits.shape

    (full, full_shape), (masked, masked_shape) = loss(params, dense), loss(params, compact)
    assert full_shape[1] == 16 and masked_shape[1] == compact["mlm_positions"].shape[1]
    for a, b in zip(full, masked):
        np.testing.assert_allclose(float(a), float(b), rtol=1e-5)
    grads = [jax.grad(lambda p, b=b: loss(p, b)[0].loss)(params) for b in (dense, compact)]
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_compact_keeps_selected_positions_in_order_and_counts_overflow():
    targets = np.arange(20, dtype=np.int32).reshape(2, 10)
    weights = np.zeros((2, 10), np.float32)
    weights[0, [1, 4, 7]] = 1
    weights[1, [0, 2, 3, 5, 9]] = 1
    out = mlm_positions.compact(targets, weights, 4)
    assert out["mlm_positions"].tolist() == [[1, 4, 7, 0], [0, 2, 3, 5]]
    assert out["mlm_targets"].tolist() == [[1, 4, 7, 0], [10, 12, 13, 15]]
    assert out["mlm_weights"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert out["mlm_dropped"].tolist() == [0, 1]
    assert mlm_positions.max_predictions(0.15, 128) == 20


def test_ledger_counts_the_mlm_head_on_gathered_positions_only():
    model = _bert()
    shapes = models.param_shapes(model)
    trainable = freezing.all_trainable(shapes)
    full = perf.train_flops("encoder_mlm", model.cfg, shapes, trainable, 8, 128)["total"]
    gathered = perf.train_flops("encoder_mlm", model.cfg, shapes, trainable, 8, 128, head_positions=20)["total"]
    cfg = model.cfg
    head_per_position = 6 * 2 * (cfg.d_model * cfg.d_model + cfg.d_model * cfg.vocab_size) / 2
    assert full - gathered == pytest.approx(head_per_position * 8 * (128 - 20))


def test_scan_unroll_must_not_be_negative():
    with pytest.raises(UserError, match="scan_unroll"):
        models.preset("bert-tiny", scan_unroll=-1)


@pytest.mark.parametrize("name", ["t5", "bert"])
def test_vs_hf_builds_the_same_model_in_transformers(name):
    pytest.importorskip("transformers")
    from seqpt_jax.bench import vs_hf
    spec = vs_hf.CONFIGS[name]
    ours = models.count_params(models.param_shapes(models.build(spec["kind"], models.preset(spec["preset"], **spec["dims"]))))
    hf = vs_hf.hf_model(spec)
    assert ours == sum(p.numel() for p in hf.parameters())
    if name == "t5":
        assert hf.lm_head.weight is not hf.shared.weight  # T5 v1.1: untied output projection
        assert hf.encoder.embed_tokens.weight is hf.decoder.embed_tokens.weight is hf.shared.weight


def test_matmul_peak_reports_jax_and_torch():
    pytest.importorskip("torch")
    libs = perf.matmul_throughput(n=128, repeats=2)
    assert set(libs) == {"jax", "torch"} and min(libs.values()) > 0


def test_bench_vs_hf_rejects_what_it_cannot_time():
    from seqpt_jax.commands import bench
    with pytest.raises(UserError, match="seqpt bench train --vs hf"):
        bench.main(["freeze", "--vs", "hf"])
    with pytest.raises(UserError, match="--rounds 2"):
        bench.main(["train", "--vs", "hf", "--rounds", "2"])
