"""Attention through `jax.nn.dot_product_attention` (models.layers.attend): numerics against an
independent einsum reference, both families' patterns (T5: relative position bias, no scaling;
BERT: 1/sqrt(head_dim)), padding and packed segment masks, causal decoder masks, gradients
included; and the trace-time choice of implementation (cuDNN's fused kernel on a GPU only).

Tolerances: float32 operands agree with the float64 reference to 1e-5 (outputs and gradients);
bfloat16 operands (8 mantissa bits) to 3e-2 absolute on O(1) values. On a GPU, the one-shot
check (bench.gpu_check) compares cuDNN with the XLA path on whole models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqpt_jax import models
from seqpt_jax.errors import UserError
from seqpt_jax.models import layers
from seqpt_jax.models.transformer import attention_mask
from seqpt_jax.train import data, losses

B, T, H, K = 2, 8, 2, 16
TOL = {"float32": 1e-5, "bfloat16": 3e-2}


def _cfg(family, **kw):
    return models.preset("t5-tiny" if family == "t5" else "bert-tiny", num_heads=H, head_dim=K,
                         d_model=H * K, **kw)


def _segments(kind):
    if kind == "padding":  # two examples, trailing padding (segment 0)
        return np.array([[1] * 8, [1] * 5 + [0] * 3], np.int32)
    return np.array([[1, 1, 1, 2, 2, 2, 2, 0], [1, 1, 2, 2, 3, 3, 3, 3]], np.int32)  # packed


def _mask(kind, causal):
    seg = _segments(kind)
    mask = np.asarray(attention_mask(jnp.asarray(seg), jnp.asarray(seg)))
    if causal:
        mask = mask & np.tril(np.ones((T, T), bool))[None, None]
    return mask


def _reference(q, k, v, bias, mask, scale):
    """float64 softmax attention; a query with no visible key averages all values (as
    jax.nn.dot_product_attention's large-negative fill does): such rows carry no loss."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if bias is not None:
        logits = logits + np.asarray(bias, np.float64)
    logits = np.where(mask, logits, -1e30)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True)
    return np.einsum("bhqk,bkhd->bqhd", p, v)


def _operands(family, seed=0):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.normal(size=(B, T, H, K)).astype(np.float32) for _ in range(3))
    bias = rng.normal(size=(1, H, T, T)).astype(np.float32) if family == "t5" else None
    return q, k, v, bias


def _loss(cfg, mask, causal, dtype, weights):
    def f(q, k, v, bias):
        cast = [x.astype(dtype) for x in (q, k, v)]
        out = layers.attend(cfg, *cast, None if bias is None else bias.astype(dtype), jnp.asarray(mask), causal)
        return jnp.sum(out.astype(jnp.float32) * weights)
    return f


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("impl", ["auto", "xla"])
@pytest.mark.parametrize("family,kind,causal", [("t5", "padding", False), ("t5", "packed", False),
                                                ("t5", "packed", True), ("bert", "padding", False),
                                                ("bert", "packed", False)])
def test_attention_and_its_gradients_equal_the_reference(family, kind, causal, impl, dtype):
    cfg = _cfg(family, attention_impl=impl, dtype=dtype)
    q, k, v, bias = _operands(family)
    mask = _mask(kind, causal)
    scale = 1.0 if family == "t5" else K ** -0.5
    tol = TOL[dtype]
    got = layers.attend(cfg, *(jnp.asarray(x, cfg.compute_dtype) for x in (q, k, v)),
                        None if bias is None else jnp.asarray(bias), jnp.asarray(mask), causal)
    assert got.dtype == cfg.compute_dtype
    want = _reference(q, k, v, bias, mask, scale)
    np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=tol, rtol=tol)
    # Gradients of a weighted sum over the rows that see at least one key (the rows a loss reads).
    live = mask.any(-1)[:, 0, :, None, None]  # [B, T, 1, 1]
    weights = np.random.default_rng(1).normal(size=(B, T, H, K)).astype(np.float32) * live
    argnums = (0, 1, 2, 3) if bias is not None else (0, 1, 2)
    grads = jax.grad(_loss(cfg, mask, causal, cfg.compute_dtype, weights), argnums)(q, k, v, bias)

    def ref_loss(q, k, v, bias):  # the same reference in jnp float32, differentiated by jax
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * scale + (0.0 if bias is None else bias)
        p = jax.nn.softmax(jnp.where(mask, logits, -1e30), -1)
        return jnp.sum(jnp.einsum("bhqk,bkhd->bqhd", p, v) * weights)

    with jax.default_matmul_precision("highest"):
        ref = jax.grad(ref_loss, argnums)(q, k, v, bias)
    scale_g = max(float(np.abs(r).max()) for r in ref)
    for name, g, r in zip("qkvb", grads, ref):
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(r), atol=tol * scale_g, rtol=tol,
                                   err_msg=f"d{name}")


def test_auto_picks_cudnn_only_on_a_gpu_in_half_precision_where_the_pattern_compiles(monkeypatch):
    probed = []
    monkeypatch.setattr(layers, "_compiles", lambda *a: probed.append(a) or ok[0])
    ok = [True]
    q16 = jnp.zeros((B, T, H, K), jnp.bfloat16)
    q32 = q16.astype(jnp.float32)
    bias, mask = jnp.zeros((1, H, T, T), jnp.bfloat16), jnp.ones((B, 1, T, T), bool)
    pick = layers.attention_implementation
    t5 = _cfg("t5")
    assert pick(t5, q16, q16, bias, mask, backend="cpu") == "xla"
    assert pick(t5, q32, q32, bias, mask, backend="gpu") == "xla"  # cuDNN takes no float32
    assert pick(t5, q16, q16, bias, mask, decode=True, backend="gpu") == "xla"  # a growing cache
    assert probed == []  # none of those needed a probe
    assert pick(t5, q16, q16, bias, mask, causal=True, backend="gpu") == "cudnn"
    assert probed[-1][0] == "cudnn" and probed[-1][-1] is True  # the causal pattern was probed
    ok[0] = False
    assert pick(t5, q16, q16, bias, mask, backend="gpu") == "xla"  # refused: the XLA path
    for forced in ("xla", "cudnn"):
        assert pick(_cfg("bert", attention_impl=forced), q32, q32, None, mask, backend="cpu") == forced


def test_the_probe_compiles_inside_a_trace_and_refuses_cudnn_without_a_gpu():
    q = ((B, T, H, K), "bfloat16")
    bias, mask = ((1, H, T, T), "bfloat16"), ((B, 1, T, T), "bool")
    layers._compiles.cache_clear()
    seen = []

    def traced(x):  # the probe runs while the model is being traced, as in the train step
        seen.append(layers._compiles("xla", q, q, bias, mask, 1.0, False))
        seen.append(layers._compiles("cudnn", q, q, bias, mask, 1.0, False))
        return x
    jax.make_jaxpr(traced)(1.0)
    assert seen == [True, jax.default_backend() == "gpu"]


def test_forcing_cudnn_off_a_gpu_is_a_user_error():
    if jax.default_backend() == "gpu":
        pytest.skip("this machine has a GPU")
    cfg = _cfg("bert", attention_impl="cudnn", dtype="bfloat16")
    q = jnp.zeros((B, T, H, K), jnp.bfloat16)
    with pytest.raises(UserError, match="attention_impl='cudnn' needs an NVIDIA GPU"):
        layers.attend(cfg, q, q, q, None, None)
    with pytest.raises(UserError, match="attention_impl"):
        models.preset("bert-tiny", attention_impl="flash")


@pytest.mark.parametrize("family", ["t5", "bert"])
def test_auto_leaves_the_cpu_model_bit_for_bit(family):
    """'auto' on this backend is the XLA path: loss and gradients of a packed seq2seq / MLM model
    equal 'xla' exactly, so CPU results and the FLOPs ledger are unchanged."""
    objective = "seq2seq" if family == "t5" else "mlm"
    batch = next(data.synthetic("train", 4, 0, (0, 1), objective=objective, vocab_size=101, length=16,
                                target_length=8))
    kind = "encoder_decoder" if family == "t5" else "encoder_mlm"
    out = {}
    for impl in ("auto", "xla"):
        cfg = _cfg(family, vocab_size=101, d_ff=48, num_encoder_layers=2, num_decoder_layers=2,
                   dropout_rate=0.0, attention_impl=impl)
        model = models.build(kind, cfg)
        params = models.init(model, jax.random.key(0), {k: v for k, v in batch.items() if k.endswith("input_tokens")})
        loss = lambda p: losses.loss_for(batch)(model.apply({"params": p}, batch), batch).loss  # noqa: E731
        out[impl] = jax.value_and_grad(loss)(params)
    for a, b in zip(jax.tree.leaves(out["auto"]), jax.tree.leaves(out["xla"])):
        np.testing.assert_array_equal(a, b)
