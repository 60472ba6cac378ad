"""Seq2seq denoising + encoder MLM (runs/seq2seq_masked_encoder.gin): the encoder MLM head of an
EncoderDecoder, its loss, its FLOPs, and extraction keeping it."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqpt_jax import mappings, models
from seqpt_jax.mappings import checks
from seqpt_jax.train import freezing, perf
from seqpt_jax.train.step import _loss_sums

VOCAB = 101
ENC_LEN, DEC_LEN = 12, 5  # different, so a head charged on the wrong tokens shows


def _cfg(family="t5", **kw):
    return models.preset(f"{family}-tiny", vocab_size=VOCAB, d_model=32, num_heads=2, head_dim=16, d_ff=64,
                         dropout_rate=0.0, max_length=16, **kw)


def _batch(seed=0):
    r = np.random.default_rng(seed)
    targets = r.integers(3, VOCAB, (2, ENC_LEN)).astype(np.int32)
    weights = (r.random((2, ENC_LEN)) < 0.3).astype(np.float32)
    weights[:, 0] = 1.0
    dec = r.integers(3, VOCAB, (2, DEC_LEN)).astype(np.int32)
    return {"encoder_input_tokens": np.where(weights > 0, 4, targets).astype(np.int32),
            "mlm_targets": targets, "mlm_weights": weights,
            "decoder_input_tokens": np.concatenate([np.zeros((2, 1), np.int32), dec[:, :-1]], 1),
            "decoder_target_tokens": dec, "decoder_loss_weights": np.ones((2, DEC_LEN), np.float32)}


@functools.lru_cache(maxsize=None)
def _params(family="t5"):
    model = models.EncoderDecoder(_cfg(family), encoder_mlm_head=True)
    return models.init(model, jax.random.key(0), _batch())


def _loss(params, weight, family="t5", head=True):
    model = models.EncoderDecoder(_cfg(family), encoder_mlm_head=head)
    return _loss_sums(model, params, _batch(), None, 1e-4, train=False, encoder_mlm_weight=weight)


def test_the_head_is_an_mlm_head_beside_the_encoder_and_absent_by_default():
    tree = _params()
    want = models.param_shapes(models.EncoderMLM(_cfg()))["mlm_head"]
    assert jax.tree.map(np.shape, tree["mlm_head"]) == jax.tree.map(np.shape, want)
    assert "mlm_head" not in models.param_shapes(models.EncoderDecoder(_cfg()))


@functools.lru_cache(maxsize=None)
def _sums_and_grads(family):
    """One jitted computation (eager op-by-op is slow here): the loss sums of the plain
    seq2seq step and of weights 0, 1, 3, and the gradients at weights 1 and 0."""
    params = _params(family)
    plain = {k: v for k, v in params.items() if k != "mlm_head"}

    def run(params, plain):
        def f(p, w):
            return _loss(p, w, family).loss
        sums = [_loss(plain, 0.0, family, head=False)] + [_loss(params, w, family) for w in (0.0, 1.0, 3.0)]
        return sums, jax.grad(f)(params, 1.0), jax.grad(f)(params, 0.0)

    return jax.jit(run)(params, plain)


@pytest.mark.parametrize("family", ["t5", "bert"])
def test_encoder_mlm_weight_adds_its_loss_and_trains_the_head(family):
    (today, off, one, three), grads, grads_off = _sums_and_grads(family)
    for a, b in zip(off, today):  # weight 0: bitwise the plain seq2seq step's loss
        np.testing.assert_array_equal(a, b)
    assert float(one.loss) > float(off.loss)
    # Linear in the weight: the encoder MLM loss sum, added on top of the seq2seq sums.
    mlm = float(one.loss) - float(off.loss)
    np.testing.assert_allclose(float(three.loss) - float(off.loss), 3 * mlm, rtol=1e-5)
    assert float(one.weight) == float(off.weight) == 2 * DEC_LEN  # normalised by decoder tokens
    grads, grads_off = checks.flat(grads), checks.flat(grads_off)
    head = [p for p in grads if p[0] == "mlm_head"]
    assert len(head) >= 3 and all(float(jnp.abs(grads[p]).max()) > 0 for p in head), head
    assert all(float(jnp.abs(grads_off[p]).max()) == 0 for p in head)
    # The encoder learns from both losses.
    enc = ("encoder", "layers", "mlp", "wo", "kernel")
    assert not np.allclose(grads[enc], grads_off[enc])


def test_a_batch_without_mlm_targets_is_a_user_error():
    from seqpt_jax.errors import UserError
    batch = {k: v for k, v in _batch().items() if not k.startswith("mlm_")}
    model = models.EncoderDecoder(_cfg(), encoder_mlm_head=True)
    with pytest.raises(UserError, match="span_corruption_masked"):
        jax.eval_shape(lambda p: _loss_sums(model, p, batch, None, 0.0, train=False, encoder_mlm_weight=1.0),
                       _params())


@pytest.mark.parametrize("family", ["t5", "bert"])  # t5-tiny: untied output; bert: tied to the embedding
def test_flops_ledger_counts_the_head_on_encoder_tokens(family):
    cfg = _cfg(family)
    with_head = models.param_shapes(models.EncoderDecoder(cfg, encoder_mlm_head=True))
    without = models.param_shapes(models.EncoderDecoder(cfg))
    b = 4

    def total(shapes):
        return perf.train_flops("encoder_decoder", cfg, shapes, freezing.all_trainable(shapes), b, ENC_LEN,
                                DEC_LEN)["total"]

    # transform [d, d] and the vocabulary projection [d, V] (own kernel or the tied table), on
    # every encoder position; trained: forward + 2 x forward.
    forward = 2 * (cfg.d_model * cfg.d_model + cfg.d_model * cfg.vocab_size) * b * ENC_LEN
    assert cfg.tie_embeddings == (family == "bert")
    np.testing.assert_allclose(total(with_head) - total(without), 3 * forward, rtol=1e-12)


def test_extraction_keeps_the_trained_encoder_mlm_head():
    cfg = _cfg()
    params = _params()
    enc = mappings.seq2seq_to_encoder(params, cfg, kind="encoder_mlm", rng=jax.random.key(5))
    for path, x in checks.flat(params["mlm_head"]).items():
        np.testing.assert_array_equal(checks.flat(enc["mlm_head"])[path], x)
    batch = _batch()
    _, s2s_mlm = models.EncoderDecoder(cfg, encoder_mlm_head=True).apply(
        {"params": params}, batch, method="forward_with_encoder_mlm")
    got = models.EncoderMLM(cfg).apply({"params": enc}, {"encoder_input_tokens": batch["encoder_input_tokens"]})
    np.testing.assert_allclose(got, s2s_mlm, atol=1e-5, rtol=0)
    plain = mappings.seq2seq_to_encoder({k: v for k, v in params.items() if k != "mlm_head"}, cfg,
                                        kind="encoder_mlm", rng=jax.random.key(5))
    assert not np.array_equal(plain["mlm_head"]["transform"]["kernel"], params["mlm_head"]["transform"]["kernel"])


class _MaskedSeq2seq:
    """Synthetic seq2seq batches plus encoder MLM features (as span_corruption_masked gives)."""

    def __init__(self, *args, **kw):
        from seqpt_jax.train import data
        self.inner = data.synthetic(*args, objective="seq2seq", length=ENC_LEN, target_length=DEC_LEN, **kw)

    def __next__(self):
        b = next(self.inner)
        rng = np.random.default_rng(self.inner.k)
        b["mlm_targets"] = b["encoder_input_tokens"].copy()
        b["mlm_weights"] = ((rng.random(b["mlm_targets"].shape) < 0.3) & (b["mlm_targets"] != 0)).astype(np.float32)
        b["encoder_input_tokens"] = np.where(b["mlm_weights"] > 0, 4, b["mlm_targets"]).astype(np.int32)
        return b

    def state(self):
        return self.inner.state()

    def restore(self, s):
        self.inner.restore(s)


def test_train_loop_runs_the_variant_end_to_end_and_extract_keeps_its_head(tmp_path):
    from seqpt_jax.params_io import load
    from seqpt_jax.train import loop
    from seqpt_jax.train.optimizers import OptimizerConfig
    cfg = _cfg()
    summary = loop.train(str(tmp_path), models.EncoderDecoder(cfg), _MaskedSeq2seq, steps=2, batch_size=8,
                         save_every=2, log_every=1000, progress=False, encoder_mlm_weight=1.0,
                         optimizer=OptimizerConfig(learning_rate=1e-2, warmup_steps=0, decay="constant"))
    params = load(str(tmp_path))[2]
    assert "mlm_head" in params and np.isfinite(summary["last_loss"])
    shapes = models.param_shapes(models.EncoderDecoder(cfg, encoder_mlm_head=True))
    per_step = perf.train_flops("encoder_decoder", cfg, shapes, freezing.all_trainable(shapes), 8, ENC_LEN,
                                DEC_LEN)["total"]
    np.testing.assert_allclose(summary["train_flops"], 2 * per_step, rtol=1e-9)
    from seqpt_jax.mappings import init_hooks
    enc = init_hooks.extracted_from(str(tmp_path))(
        jax.random.key(1), models.param_shapes(models.EncoderMLM(cfg)))
    for path, x in checks.flat(params["mlm_head"]).items():
        np.testing.assert_array_equal(np.asarray(checks.flat(enc["mlm_head"])[path]), x)


def test_masked_encoder_batches_carry_the_encoder_mlm_features():
    """span_corruption_masked -> feeding: mlm_targets/mlm_weights at the masked positions of the
    encoder input (compacted like an MLM batch's: the encoder MLM head runs on those only)."""
    from seqpt_jax.data import feeding, sources
    from seqpt_jax.data import vocab as V
    info = V.synthetic_token_info(1000)
    rng = np.random.default_rng(0)
    lo, hi = info.random_range
    store = sources.TokenStore.from_token_lists([rng.integers(lo, hi, 60) for _ in range(20)])
    spec = feeding.TaskSpec("m", feeding.ENCDEC, lambda split, n, pack: sources.Windows(store, n, pack), info,
                            "span_corruption_masked")
    b = next(feeding.make_pipeline([(spec, 1.0)], "train", 4, {"inputs": 32, "targets": 16}, seed=0, shard=(0, 1)))
    w = b["mlm_weights"] > 0
    assert b["mlm_targets"].shape == b["mlm_positions"].shape == (4, 5) and w.sum() >= 4   # ceil(.15 * 32)
    at = np.take_along_axis(b["encoder_input_tokens"], b["mlm_positions"], 1)
    assert (at[w] == info.mask_id).mean() > 0.5
    assert "decoder_target_tokens" in b


def test_the_encoder_mlm_head_gathers_the_masked_positions_as_encoder_mlm_does():
    """With `mlm_positions` (the corpus feed's compacted MLM features) the head runs on those
    positions only, [B, P, vocab], the same logits as the all-positions head there; the loss
    is unchanged."""
    from seqpt_jax.data import mlm_positions
    params, batch = _params(), _batch()
    model = models.EncoderDecoder(_cfg(), encoder_mlm_head=True)
    _, full = model.apply({"params": params}, batch, method="forward_with_encoder_mlm")
    p = int(batch["mlm_weights"].sum(1).max())                       # room for every masked position
    compact = {**batch, **mlm_positions.compact(batch["mlm_targets"], batch["mlm_weights"], p)}
    _, gathered = model.apply({"params": params}, compact, method="forward_with_encoder_mlm")
    assert gathered.shape == (2, p, full.shape[-1]) and p < ENC_LEN
    want = np.take_along_axis(np.asarray(full), compact["mlm_positions"][..., None], 1)
    np.testing.assert_allclose(gathered, want, rtol=1e-5, atol=1e-5)
    a = _loss_sums(model, params, batch, None, 0.0, train=False, encoder_mlm_weight=1.0)
    b = _loss_sums(model, params, compact, None, 0.0, train=False, encoder_mlm_weight=1.0)
    np.testing.assert_allclose(float(a.loss), float(b.loss), rtol=1e-5)
