"""The chunked large-vocabulary cross-entropy (train.losses.chunked_cross_entropy, wired in by
`models.preset.loss_chunk`): the same loss sums and gradients as today's materialised float32
logits, for tied (BERT) and untied (T5) projections, with z-loss, the MLM output bias, chunk
sizes that divide the tokens or not, frozen operands, and whole models through the train
step's loss; no [tokens, vocab] array larger than one chunk in the step's jaxpr.

Tolerances: float32 sums and gradients to 1e-5 relative. (With bf16 activations the chunks'
logits are float32-accumulated, so they are slightly more accurate than the bf16 logits the
materialised path rounds to; the GPU check compares the two there.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqpt_jax import models
from seqpt_jax.models.heads import VocabProjection
from seqpt_jax.train import data, losses, step as step_lib
from seqpt_jax.train.jaxpr_flops import _jaxprs

N, D, V = 37, 16, 50


def _operands(tied, seed=0):
    rng = np.random.default_rng(seed)
    h = jnp.asarray(rng.normal(size=(N, D)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(V, D) if tied else (D, V)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=(V,)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, V, N), jnp.int32)
    weights = jnp.asarray(rng.random(N) > 0.3, jnp.float32)
    return h, kernel, bias, targets, weights


@pytest.mark.parametrize("tied,with_bias", [(False, False), (True, True), (True, False)])
@pytest.mark.parametrize("chunk", [8, 37, 64])  # a remainder chunk; one chunk; larger than the tokens
def test_chunked_loss_and_gradients_equal_materialised_logits(tied, with_bias, chunk):
    h, kernel, bias, targets, weights = _operands(tied)
    bias = bias if with_bias else None

    def sums(h, kernel, bias, chunk):
        s = losses.cross_entropy(VocabProjection(h, kernel, bias, tied, chunk), targets, weights, 1e-3)
        return s.loss, s

    argnums = (0, 1, 2) if with_bias else (0, 1)
    (ref_loss, ref), ref_g = jax.value_and_grad(sums, argnums, has_aux=True)(h, kernel, bias, 0)
    (got_loss, got), got_g = jax.value_and_grad(sums, argnums, has_aux=True)(h, kernel, bias, chunk)
    assert float(ref.z_loss) > 0 and float(ref.correct) >= 0
    for name, a, b in zip(losses.LossSums._fields, got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, err_msg=name)
    for name, a, b in zip(("hidden", "kernel", "bias"), got_g, ref_g):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)


def test_frozen_operands_get_no_gradient_and_only_the_loss_is_differentiable():
    h, kernel, bias, targets, weights = _operands(False)

    def loss(h, kernel, chunk, frozen_kernel):
        k = jax.lax.stop_gradient(kernel) if frozen_kernel else kernel
        return losses.cross_entropy(VocabProjection(h, k, None, False, chunk), targets, weights).loss

    ref = jax.grad(loss, (0, 1))(h, kernel, 0, True)
    got = jax.grad(loss, (0, 1))(h, kernel, 8, True)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=1e-6)
    assert not np.any(np.asarray(got[1]))  # a frozen kernel: zero gradient, as with stop_gradient
    with pytest.raises(NotImplementedError, match="differentiates `loss` only"):
        jax.grad(lambda h: losses.cross_entropy(VocabProjection(h, kernel, None, False, 8), targets,
                                                weights, 1e-3).z_loss)(h)


def _model(family, chunk, **kw):
    name = "bert-tiny" if family == "bert" else "t5-tiny"
    cfg = models.preset(name, vocab_size=101, d_model=32, num_heads=2, head_dim=16, d_ff=48, num_encoder_layers=2,
                        num_decoder_layers=2, dropout_rate=0.0, max_length=32, loss_chunk=chunk, **kw)
    return models.build("encoder_decoder" if family == "t5" else "encoder_mlm", cfg)


def _batch(family):
    objective = "seq2seq" if family == "t5" else "mlm"
    return next(data.synthetic("train", 4, 0, (0, 1), objective=objective, vocab_size=101, length=16,
                               target_length=8))


@pytest.mark.parametrize("family", ["bert", "t5"])
def test_models_train_step_loss_and_gradients_unchanged_by_loss_chunk(family):
    batch = _batch(family)
    out = {}
    for chunk in (0, 5):
        model = _model(family, chunk)
        params = models.init(model, jax.random.key(0), {k: v for k, v in batch.items() if k.endswith("input_tokens")})
        f = lambda p: (lambda s: (s.loss, s))(step_lib._loss_sums(model, p, batch, None, 1e-4, train=False))  # noqa: E731
        out[chunk] = jax.value_and_grad(f, has_aux=True)(params)
    (_, ref), ref_g = out[0]
    (_, got), got_g = out[5]
    for name, a, b in zip(losses.LossSums._fields, got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, err_msg=name)
    flat_ref = jax.tree_util.tree_leaves_with_path(ref_g)
    for (path, b), a in zip(flat_ref, jax.tree.leaves(got_g)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))


def _largest_vocab_array(jaxpr, vocab, kernel_shape):
    """Rows of the largest array with a trailing vocab axis anywhere in the jaxpr (sub-jaxprs
    included), the output kernel itself (and its gradient) left out."""
    if hasattr(jaxpr, "jaxpr"):
        jaxpr = jaxpr.jaxpr
    rows = 0
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            shape = getattr(v.aval, "shape", ())
            if len(shape) >= 2 and shape[-1] == vocab and tuple(shape) != kernel_shape:
                rows = max(rows, int(np.prod(shape[:-1])))
        for value in eqn.params.values():
            for sub in _jaxprs(value):
                rows = max(rows, _largest_vocab_array(sub, vocab, kernel_shape))
    return rows


def test_the_train_step_holds_no_logits_larger_than_a_chunk():
    family, chunk = "t5", 8
    batch = next(data.synthetic("train", 6, 0, (0, 1), objective="seq2seq", vocab_size=101, length=16,
                                target_length=8))  # 6 x 8 = 48 target tokens
    shapes = {}
    for c in (0, chunk):
        model = _model(family, c)
        params = models.param_shapes(model)
        grad = jax.grad(lambda p: step_lib._loss_sums(model, p, batch, None, 0.0, train=False).loss)
        shapes[c] = _largest_vocab_array(jax.make_jaxpr(grad)(params), 101, (32, 101))
    assert shapes[0] == 48  # today's path: [6, 8, vocab] logits (and their gradient)
    assert shapes[chunk] == chunk
