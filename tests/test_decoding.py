"""Decoding: the cache changes nothing but speed; beam size 1 is greedy; beam scores are real."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqpt_jax import models
from seqpt_jax.evaluate import decoding

FAMILIES = ["t5-tiny", "bert-tiny"]
SMALL = dict(vocab_size=37, num_encoder_layers=2, num_decoder_layers=2, d_model=32, num_heads=2,
             head_dim=16, d_ff=64, max_length=32, dropout_rate=0.0)


@functools.lru_cache(maxsize=None)
def _setup(name):
    cfg = models.preset(name, **SMALL)
    model = models.EncoderDecoder(cfg)
    rng = np.random.RandomState(0)
    enc = jnp.asarray(rng.randint(2, 37, (3, 7)), jnp.int32).at[1, 4:].set(0)
    dec = jnp.asarray(rng.randint(2, 37, (3, 6)), jnp.int32).at[:, 0].set(0)
    params = models.init(model, jax.random.key(1), {"encoder_input_tokens": enc,
                                                     "decoder_input_tokens": dec})
    if cfg.family == "bert":  # sharpen the near-uniform N(0, 0.02) init so argmax paths vary
        params = jax.tree.map(lambda x: x * 20 if x.ndim >= 2 else x, params)
    return model, params, {"encoder_input_tokens": enc}, dec


# Logits of the model code before the decode path existed (commit 08b45a6, same seeds and
# shapes): the additive cache changes must leave `model.apply({"params": p}, batch)` alone.
GOLDEN = {  # (sum of all logits, logits[1, 2, :3])
    "t5-tiny": (2.3345203399658203, [0.7793949246406555, 1.6394199132919312, -0.033493004739284515]),
    "bert-tiny": (5228.470703125, [29.582826614379883, -35.61849594116211, 41.61194610595703]),
}


@pytest.mark.parametrize("name", FAMILIES)
def test_forward_logits_unchanged_by_decode_support(name):
    model, params, batch, dec = _setup(name)
    logits = np.asarray(model.apply({"params": params}, {**batch, "decoder_input_tokens": dec}))
    total, row = GOLDEN[name]
    # Tolerances cover XLA's compile-option-dependent float32 rounding (a few 1e-7 absolute),
    # not a change in the computation, which moves these by orders of magnitude more.
    assert float(logits.sum()) == pytest.approx(total, rel=1e-5, abs=1e-3)
    np.testing.assert_allclose(logits[1, 2, :3], row, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_cached_step_logits_equal_full_forward(name):
    model, params, batch, dec = _setup(name)
    full = model.apply({"params": params}, {**batch, "decoder_input_tokens": dec})
    length = dec.shape[1]

    @jax.jit
    def steps(params):
        encoded, segments = model.apply({"params": params}, batch, method="encode")

        def one(cache, i):
            token = jax.lax.dynamic_slice_in_dim(dec, i, 1, axis=1)
            logits, v = model.apply({"params": params, "cache": cache}, token, encoded, segments, i,
                                    length, method="decode_step", mutable=["cache"])
            return v["cache"], logits[:, 0]

        cache = decoding.init_cache(model, params, encoded, segments, length)
        return jnp.moveaxis(jax.lax.scan(one, cache, jnp.arange(length))[1], 0, 1)

    np.testing.assert_allclose(np.asarray(steps(params)), np.asarray(full), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_greedy_cached_uncached_and_beam1_agree(name):
    model, params, batch, _ = _setup(name)
    cached = np.asarray(decoding.greedy(model, params, batch, max_length=8))
    uncached = np.asarray(decoding.greedy(model, params, batch, max_length=8, use_cache=False))
    beams, _ = decoding.beam_search(model, params, batch, max_length=8, beam_size=1, alpha=0.0)
    assert len(np.unique(cached)) > 2  # the test sees real paths, not one repeated token
    np.testing.assert_array_equal(cached, uncached)
    np.testing.assert_array_equal(np.asarray(beams[:, 0]), cached)


def test_beam_scores_are_length_normalised_log_probs():
    model, params, batch, _ = _setup("t5-tiny")
    alpha, k, max_len = 0.6, 3, 6
    seqs, scores = decoding.beam_search(model, params, batch, max_length=max_len, beam_size=k, alpha=alpha)
    seqs, scores = np.asarray(seqs), np.asarray(scores)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    for j in range(k):
        seq = seqs[:, j]
        dec_in = np.concatenate([np.zeros((seq.shape[0], 1), np.int32), seq[:, :-1]], 1)
        logp = jax.nn.log_softmax(model.apply({"params": params}, {**batch, "decoder_input_tokens": dec_in}))
        tok_logp = np.take_along_axis(np.asarray(logp), seq[..., None], -1)[..., 0]
        # Length: up to and including the first EOS, else the whole row.
        has_eos = (seq == 1).any(1)
        length = np.where(has_eos, (seq == 1).argmax(1) + 1, max_len)
        total = np.array([tok_logp[i, :length[i]].sum() for i in range(len(seq))])
        expect = total / ((5.0 + length) / 6.0) ** alpha
        np.testing.assert_allclose(scores[:, j], expect, rtol=1e-4, atol=1e-4)
    best_greedy = np.asarray(decoding.beam_search(model, params, batch, max_length=max_len,
                                                  beam_size=1, alpha=alpha)[1])[:, 0]
    assert np.all(scores[:, 0] >= best_greedy - 1e-5)  # a wider beam never finds worse


def test_decoding_past_learned_positions_is_a_user_error():
    from seqpt_jax.errors import UserError
    model, params, batch, _ = _setup("bert-tiny")  # 32 learned positions
    with pytest.raises(UserError, match="learned positions"):
        decoding.greedy(model, params, batch, max_length=40)
