"""Autoregressive decoding for `EncoderDecoder`: greedy and beam search, jit-compiled and batched.

The encoder runs once; the decoder advances one token per step through the key/value cache
(`EncoderDecoder.decode_step`). Outputs are `[batch, max_length]` token ids without the start
token, ending at the first EOS (kept) and padded with 0 after it.

Beam search follows fairseq / Hugging Face: each step ranks 2K candidates; an EOS candidate is
finished only when it ranks within the top K (so beam size 1 is exactly greedy); the search
stops once no alive beam can beat the K finished ones; scores are log-probabilities divided by
the GNMT length penalty ((5 + length) / 6) ** alpha (alpha = 0: none).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqpt_jax.errors import UserError

Array = jax.Array
NEG_INF = -1.0e9


def length_penalty(length: Array, alpha: float) -> Array:
    """GNMT (Wu et al. 2016) / T5 brevity normaliser."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def _encode(model: nn.Module, params, batch: dict, max_length: int):
    cfg = model.cfg
    if cfg.positions == "absolute" and max_length + cfg.position_offset > cfg.max_length:
        # A position table lookup past its end would clamp silently, not fail.
        raise UserError(f"decoding {max_length} tokens needs more than the model's {cfg.max_length} "
                        "learned positions; lower the maximum decode length.")
    return model.apply({"params": params}, batch, method="encode")


def init_cache(model: nn.Module, params, encoded: Array, segments: Array, max_length: int):
    """A zero key/value cache for `max_length` decoder steps (shapes from an abstract call)."""
    tokens = jnp.zeros((encoded.shape[0], max_length), jnp.int32)

    def create():
        _, variables = model.apply({"params": params}, tokens, encoded, segments, 0, max_length,
                                   method="decode_step", mutable=["cache"])
        return variables["cache"]

    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(create))


def _step_logits(model, params, cache, token: Array, encoded, segments, step, max_length):
    """Log-probabilities [batch, vocab] for one token per row, and the advanced cache."""
    logits, variables = model.apply({"params": params, "cache": cache}, token[:, None], encoded,
                                    segments, step, max_length, method="decode_step",
                                    mutable=["cache"])
    return jax.nn.log_softmax(logits[:, 0].astype(jnp.float32)), variables["cache"]


# ------------------------------------------------------------------------------ greedy


@functools.partial(jax.jit, static_argnames=("model", "max_length", "eos_id", "start_id", "use_cache"))
def greedy(model: nn.Module, params, batch: dict, *, max_length: int, eos_id: int = 1,
           start_id: int = 0, use_cache: bool = True) -> Array:
    """Argmax decoding. `use_cache=False` re-runs the whole decoder each step (a reference)."""
    encoded, segments = _encode(model, params, batch, max_length)
    b = encoded.shape[0]
    out = jnp.zeros((b, max_length + 1), jnp.int32).at[:, 0].set(start_id)
    cache = init_cache(model, params, encoded, segments, max_length) if use_cache else None

    def cond(state):
        step, _, done, _ = state
        return (step < max_length) & ~jnp.all(done)

    def body(state):
        step, out, done, cache = state
        if use_cache:
            token = jax.lax.dynamic_index_in_dim(out, step, axis=1, keepdims=False)
            logp, cache = _step_logits(model, params, cache, token, encoded, segments, step, max_length)
        else:
            full = {**batch, "decoder_input_tokens": out[:, :max_length]}
            logits = model.apply({"params": params}, full)
            logp = jax.lax.dynamic_index_in_dim(logits, step, axis=1, keepdims=False)
        nxt = jnp.where(done, 0, jnp.argmax(logp, -1).astype(jnp.int32))
        out = jax.lax.dynamic_update_index_in_dim(out, nxt, step + 1, axis=1)
        return step + 1, out, done | (nxt == eos_id), cache

    state = (jnp.int32(0), out, jnp.zeros((b,), bool), cache)
    _, out, _, _ = jax.lax.while_loop(cond, body, state)
    return out[:, 1:]


# ------------------------------------------------------------------------------ beam search


def _gather(x: Array, index: Array) -> Array:
    """x [batch, beams, ...] -> rows `index` [batch, k] per batch item."""
    return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


def _gather_cache(cache, index: Array, batch: int, beams: int):
    """Reorders the flat [batch * beams] axis of every cache array. Cache arrays live in the
    scanned decoder layers, so that axis is axis 1 (after `layers`); per-layer scalars (the
    cache index, same for every row) are left as they are."""
    def one(x):
        if x.ndim < 2:
            return x
        rows = jnp.moveaxis(x, 1, 0).reshape((batch, beams) + x.shape[:1] + x.shape[2:])
        rows = _gather(rows, index)
        return jnp.moveaxis(rows.reshape((batch * beams,) + x.shape[:1] + x.shape[2:]), 0, 1)
    return jax.tree.map(one, cache)


@functools.partial(jax.jit, static_argnames=("model", "max_length", "beam_size", "alpha", "eos_id",
                                             "start_id"))
def beam_search(model: nn.Module, params, batch: dict, *, max_length: int, beam_size: int = 4,
                alpha: float = 0.6, eos_id: int = 1, start_id: int = 0) -> tuple[Array, Array]:
    """(sequences [batch, beam_size, max_length], scores [batch, beam_size]), best first."""
    k = beam_size
    encoded, segments = _encode(model, params, batch, max_length)
    b = encoded.shape[0]
    encoded = jnp.repeat(encoded, k, axis=0)
    segments = jnp.repeat(segments, k, axis=0)
    cache = init_cache(model, params, encoded, segments, max_length)
    seqs = jnp.zeros((b, k, max_length + 1), jnp.int32).at[:, :, 0].set(start_id)
    # Only beam 0 is live at first, so the first step expands one hypothesis, not k copies.
    alive_logp = jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1), jnp.float32), (b, 1))
    fin_seqs = jnp.zeros_like(seqs)
    fin_scores = jnp.full((b, k), NEG_INF, jnp.float32)
    best_bound = length_penalty(max_length, alpha)  # the largest penalty any beam can reach

    def cond(state):
        step, _, alive_logp, _, fin_scores, _ = state
        # Log-probs only fall with length, so alive_logp / lp(max_length) bounds any future score.
        can_improve = jnp.max(alive_logp, -1) / best_bound > jnp.min(fin_scores, -1)
        return (step < max_length) & jnp.any(can_improve)

    def body(state):
        step, seqs, alive_logp, fin_seqs, fin_scores, cache = state
        token = seqs[:, :, step].reshape(b * k)
        logp, cache = _step_logits(model, params, cache, token, encoded, segments, step, max_length)
        vocab = logp.shape[-1]
        cand = (alive_logp[:, :, None] + logp.reshape(b, k, vocab)).reshape(b, k * vocab)
        cand_logp, flat = jax.lax.top_k(cand, 2 * k)  # [b, 2k], best first
        beam, tok = flat // vocab, (flat % vocab).astype(jnp.int32)
        cand_seqs = _gather(seqs, beam)
        cand_seqs = jax.lax.dynamic_update_index_in_dim(cand_seqs, tok, step + 1, axis=2)
        is_eos = tok == eos_id
        # Finished: EOS candidates among the top k only (beam size 1 == greedy).
        eos_scores = jnp.where(is_eos & (jnp.arange(2 * k) < k),
                               cand_logp / length_penalty(step + 1, alpha), NEG_INF)
        merged_scores = jnp.concatenate([fin_scores, eos_scores], 1)
        fin_scores, top = jax.lax.top_k(merged_scores, k)
        fin_seqs = _gather(jnp.concatenate([fin_seqs, cand_seqs], 1), top)
        # Alive: the k best candidates that did not end.
        alive_logp, top = jax.lax.top_k(jnp.where(is_eos, NEG_INF, cand_logp), k)
        seqs = _gather(cand_seqs, top)
        cache = _gather_cache(cache, _gather(beam, top), b, k)
        return step + 1, seqs, alive_logp, fin_seqs, fin_scores, cache

    state = (jnp.int32(0), seqs, alive_logp, fin_seqs, fin_scores, cache)
    step, seqs, alive_logp, fin_seqs, fin_scores, _ = jax.lax.while_loop(cond, body, state)
    # Beams that reached max_length without EOS compete with the finished ones.
    alive_scores = jnp.where(alive_logp > NEG_INF / 2, alive_logp / length_penalty(step, alpha), NEG_INF)
    scores, top = jax.lax.top_k(jnp.concatenate([fin_scores, alive_scores], 1), k)
    return _gather(jnp.concatenate([fin_seqs, seqs], 1), top)[:, :, 1:], scores
