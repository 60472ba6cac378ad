"""Seq2seq -> encoder extraction: keep a seq2seq model's encoder, give it a new head.

`encoder/` and the embedding tables are copied exactly (the same subtree layout as
EncoderMLM and Encoder); the decoder and the output projection are dropped; for
kind="encoder_mlm" the MLM head (transform, its norm, the output projection when untied, the
output bias) is freshly initialised. Preserved exactly: the encoder's output states.
"""

from __future__ import annotations

import functools

import jax

from seqpt_jax import models
from seqpt_jax.errors import UserError
from seqpt_jax.mappings import checks, transfer
from seqpt_jax.mappings.warmstart import SHARED

KINDS = ("encoder_mlm", "encoder")


def _extract(s2s_params, key, *, enc_cfg, kind: str):
    fresh = models.init(models.build(kind, enc_cfg), key)
    return transfer.take(fresh, s2s_params, [k for k in SHARED if k in fresh and k in s2s_params], what="the seq2seq checkpoint")


def seq2seq_to_encoder(s2s_params, s2s_cfg, enc_cfg=None, *, rng=None, kind: str = "encoder_mlm",
                       out_shardings=None) -> dict:
    """Encoder (or EncoderMLM with a fresh head) params from an EncoderDecoder's params."""
    if kind not in KINDS:
        raise UserError(f"kind={kind!r} cannot be extracted; use one of {KINDS}.")
    if checks.model_kind(s2s_params) != "encoder_decoder":
        raise UserError("the extraction source is not a seq2seq model (no 'decoder'); pass an "
                        "encoder-decoder checkpoint.")
    checks.check_params(s2s_params, s2s_cfg, "encoder_decoder")
    enc_cfg = s2s_cfg if enc_cfg is None else enc_cfg
    checks.check_same(s2s_cfg, enc_cfg, checks.ENCODER, "extraction keeps the encoder unchanged")
    rng = jax.random.key(0) if rng is None else rng
    fn = functools.partial(_extract, enc_cfg=enc_cfg, kind=kind)
    return jax.jit(fn, out_shardings=out_shardings)(s2s_params, rng)
