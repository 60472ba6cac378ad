"""Encoder -> seq2seq warm start (Soltan et al. 2023, stage 2).

The encoder subtree and the embedding tables are identical in EncoderMLM and EncoderDecoder
(models/transformer.py), so the warm start is a dictionary move: `encoder/`,
`token_embedder/`, `position_embedder/`, `token_type_embedder/` and `embedding_norm/` are
copied exactly, the MLM head is dropped, and the decoder comes from:

- decoder_init="random":  a fresh init of the target (Soltan et al.).
- decoder_init="encoder": decoder layer i copies encoder layer floor(i L_enc / L_dec)
  (self-attention <- attention, mlp <- mlp, self_attention_norm / cross_attention_norm <-
  attention_norm, mlp_norm <- mlp_norm; final and embedding norms from the encoder's).
  Cross-attention, the decoder's relative position bias (its buckets are one-directional)
  and the output projection stay random, as in Rothe et al. (2020).

Preserved exactly: the encoder's output states for every input (the encoder's function).
The target may have a different number of decoder layers (e.g. a smaller decoder).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from seqpt_jax import models
from seqpt_jax.errors import UserError
from seqpt_jax.mappings import checks, transfer

SHARED = ("encoder", "token_embedder", "position_embedder", "token_type_embedder", "embedding_norm")
DECODER_INITS = ("random", "encoder")
# decoder layer module <- encoder layer module (decoder_init="encoder").
_FROM_ENCODER = {"self_attention": "attention", "mlp": "mlp", "self_attention_norm": "attention_norm",
                 "cross_attention_norm": "attention_norm", "mlp_norm": "mlp_norm"}


def _decoder_from_encoder(flat: dict, enc_flat: dict, n_enc: int, n_dec: int) -> dict:
    index = (np.arange(n_dec) * n_enc // n_dec).astype(np.int32)
    out = dict(flat)
    for path in flat:
        if path[:2] == ("decoder", "layers") and path[2] in _FROM_ENCODER:
            src = ("encoder", "layers", _FROM_ENCODER[path[2]]) + path[3:]
            out[path] = jnp.take(enc_flat[src], index, axis=0)
        elif path[0] == "decoder" and path[1] in ("final_norm", "embedding_norm"):
            src = ("encoder", "final_norm") if path[1] == "final_norm" else ("embedding_norm",)
            out[path] = enc_flat[src + path[2:]]
    return out


def _warmstart(enc_params, key, *, s2s_cfg, decoder_init: str, n_enc: int):
    fresh = models.init(models.EncoderDecoder(s2s_cfg), key)
    out = transfer.take(fresh, enc_params, [k for k in SHARED if k in fresh and k in enc_params], what="the encoder checkpoint")
    if decoder_init == "encoder":
        flat = _decoder_from_encoder(checks.flat(out), checks.flat(enc_params), n_enc, s2s_cfg.num_decoder_layers)
        out = checks.unflat(flat)
    return out


def encoder_to_seq2seq(enc_params, enc_cfg, s2s_cfg, *, rng=None, decoder_init: str = "random",
                       out_shardings=None) -> dict:
    """EncoderDecoder params whose encoder and embeddings are `enc_params`' (Encoder or
    EncoderMLM). `s2s_cfg` must agree with `enc_cfg` on everything the encoder uses."""
    if decoder_init not in DECODER_INITS:
        raise UserError(f"decoder_init={decoder_init!r} is unknown; use one of {DECODER_INITS}.")
    kind = checks.model_kind(enc_params)
    if kind == "encoder_decoder":
        raise UserError("the warm-start source is already a seq2seq model; pass an encoder or MLM checkpoint.")
    checks.check_params(enc_params, enc_cfg, kind)
    checks.check_same(enc_cfg, s2s_cfg, checks.ENCODER, "the warm start copies the encoder unchanged")
    rng = jax.random.key(0) if rng is None else rng
    fn = functools.partial(_warmstart, s2s_cfg=s2s_cfg, decoder_init=decoder_init,
                           n_enc=enc_cfg.num_encoder_layers)
    return jax.jit(fn, out_shardings=out_shardings)(enc_params, rng)
