"""Seq2seq -> encoder extraction: keep a seq2seq model's encoder, give it a new head.

`encoder/` and the embedding tables are copied exactly (the same subtree layout as
EncoderMLM and Encoder); the decoder and the output projection are dropped; for
kind="encoder_mlm" the MLM head (transform, its norm, the output projection when untied, the
output bias) is the seq2seq model's encoder MLM head `mlm_head/` when it was trained with one
(seq2seq denoising + encoder MLM, runs/seq2seq_masked_encoder.gin), else freshly initialised.
Preserved exactly: the encoder's output states (and then its MLM logits, with a kept head).

ELECTRA -> encoder (`electra_to_encoder`): the discriminator (`discriminator/`, EncoderMLM's
layout with `rtd_head` in place of `mlm_head`) without its RTD head, with a fresh MLM head for
kind="encoder_mlm"; the generator is dropped. Preserved exactly: the discriminator's encoder
output states.
"""

from __future__ import annotations

import functools

import jax

from seqpt_jax import models
from seqpt_jax.errors import UserError
from seqpt_jax.mappings import checks, transfer
from seqpt_jax.mappings.warmstart import SHARED

KINDS = ("encoder_mlm", "encoder")


HEAD = "mlm_head"  # a seq2seq model's encoder MLM head (EncoderDecoder.encoder_mlm_head)


def _extract(s2s_params, key, *, enc_cfg, kind: str):
    fresh = models.init(models.build(kind, enc_cfg), key)
    keep = SHARED + ((HEAD,) if kind == "encoder_mlm" else ())
    return transfer.take(fresh, s2s_params, [k for k in keep if k in fresh and k in s2s_params],
                         what="the seq2seq checkpoint")


def _check_head(head, enc_cfg) -> None:
    want = checks.flat(models.param_shapes(models.build("encoder_mlm", enc_cfg))[HEAD])
    got = checks.flat(head)
    if {p: tuple(x.shape) for p, x in got.items()} != {p: tuple(x.shape) for p, x in want.items()}:
        raise UserError("the seq2seq model's encoder MLM head (mlm_head/) does not match the target "
                        "config's MLM head; pass the config the params were trained with.")


def seq2seq_to_encoder(s2s_params, s2s_cfg, enc_cfg=None, *, rng=None, kind: str = "encoder_mlm",
                       out_shardings=None) -> dict:
    """Encoder (or EncoderMLM with a fresh head) params from an EncoderDecoder's params."""
    if kind not in KINDS:
        raise UserError(f"kind={kind!r} cannot be extracted; use one of {KINDS}.")
    if checks.model_kind(s2s_params) != "encoder_decoder":
        raise UserError("the extraction source is not a seq2seq model (no 'decoder'); pass an "
                        "encoder-decoder checkpoint.")
    body = {k: v for k, v in s2s_params.items() if k != HEAD}
    checks.check_params(body, s2s_cfg, "encoder_decoder")
    enc_cfg = s2s_cfg if enc_cfg is None else enc_cfg
    checks.check_same(s2s_cfg, enc_cfg, checks.ENCODER, "extraction keeps the encoder unchanged")
    if HEAD in s2s_params and kind == "encoder_mlm":
        _check_head(s2s_params[HEAD], enc_cfg)
    rng = jax.random.key(0) if rng is None else rng
    fn = functools.partial(_extract, enc_cfg=enc_cfg, kind=kind)
    return jax.jit(fn, out_shardings=out_shardings)(s2s_params, rng)


ELECTRA_PARTS = ("discriminator", "generator")


def _electra_extract(disc_params, key, *, enc_cfg, kind: str):
    fresh = models.init(models.build(kind, enc_cfg), key)
    return transfer.take(fresh, disc_params, [k for k in SHARED if k in fresh],
                         what="the ELECTRA discriminator")


def electra_to_encoder(electra_params, cfg, *, rng=None, kind: str = "encoder_mlm", out_shardings=None) -> dict:
    """Encoder (or EncoderMLM with a fresh MLM head) params from an ELECTRA model's
    discriminator; `cfg` is the ELECTRA model's (the discriminator's) config."""
    if kind not in KINDS:
        raise UserError(f"kind={kind!r} cannot be extracted; use one of {KINDS}.")
    if set(electra_params) != set(ELECTRA_PARTS):
        raise UserError(f"the extraction source is not an ELECTRA model (top-level keys {sorted(electra_params)}, "
                        f"expected {list(ELECTRA_PARTS)}); pass a `seqpt train` MODEL_DIR of runs/pretrain_electra.gin.")
    disc = electra_params["discriminator"]
    want = checks.flat(models.param_shapes(models.build("electra", cfg))["discriminator"])
    got = checks.flat(disc)
    if {p: tuple(x.shape) for p, x in got.items()} != {p: tuple(x.shape) for p, x in want.items()}:
        raise UserError("the ELECTRA discriminator's params do not match its config; pass the config the "
                        "params were trained with (the MODEL_DIR's model.json).")
    rng = jax.random.key(0) if rng is None else rng
    fn = functools.partial(_electra_extract, enc_cfg=cfg, kind=kind)
    return jax.jit(fn, out_shardings=out_shardings)(disc, rng)
