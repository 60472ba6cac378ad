"""Training losses: weighted token cross-entropy (+ optional z-loss) for MLM and seq2seq.

Every loss returns *sums* (loss, z-loss, weight), not means: gradient accumulation and data
parallelism add sums across micro-batches and devices and divide once by the total weight, so
k micro-batches give exactly the gradient of one batch k times larger.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from seqpt_jax.errors import UserError


class LossSums(NamedTuple):
    loss: jax.Array      # sum of weighted cross-entropy (+ z-loss) over tokens
    z_loss: jax.Array    # the z-loss part of `loss`
    weight: jax.Array    # sum of token weights (the normaliser)
    correct: jax.Array   # weighted count of argmax hits (accuracy = correct / weight)


def cross_entropy(logits: jax.Array, targets: jax.Array, weights: jax.Array,
                  z_loss: float = 0.0) -> LossSums:
    """Weighted softmax cross-entropy over the last axis, computed in float32.

    z-loss (PaLM / T5X): `z_loss * logsumexp(logits)^2` per token keeps the softmax normaliser
    near 1, which stabilises bf16 training of large vocabularies.
    """
    logits = logits.astype(jnp.float32)
    weights = weights.astype(jnp.float32)
    log_z = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), -1)[..., 0]
    token_loss = log_z - target_logit
    token_z = z_loss * jnp.square(log_z)
    correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
    return LossSums(loss=jnp.sum((token_loss + token_z) * weights),
                    z_loss=jnp.sum(token_z * weights),
                    weight=jnp.sum(weights),
                    correct=jnp.sum(correct * weights))


def mlm_loss(logits, batch: dict, z_loss: float = 0.0) -> LossSums:
    """Loss on the masked positions: `mlm_targets` weighted by `mlm_weights`. An ELECTRA model's
    outputs (`models.ElectraOutputs`, from the same MLM batches) score as `electra_loss`."""
    from seqpt_jax.models.electra import ElectraOutputs
    if isinstance(logits, ElectraOutputs):
        return electra_loss(logits, batch, z_loss)
    return cross_entropy(logits, batch["mlm_targets"], batch["mlm_weights"], z_loss)


def electra_loss(out, batch: dict, z_loss: float = 0.0) -> LossSums:
    """ELECTRA (Clark et al. 2020): mean generator MLM CE + lambda * mean discriminator RTD
    sigmoid CE, lambda = `out.rtd_weight` (50). As sums normalised by the MLM weight W_mlm: the
    RTD sum is scaled by lambda * W_mlm / W_rtd (W_rtd: non-padding positions), so loss / W_mlm
    is exactly the paper's per batch (with grad_accum each micro-batch's RTD mean is weighted by
    its share of W_mlm). z-loss applies to the generator. `correct` / `weight` is the
    discriminator's accuracy over non-padding positions."""
    if "mlm_targets" not in batch:
        raise UserError("ELECTRA trains on MLM batches (mlm_positions/mlm_targets/mlm_weights); use an MLM "
                        "task such as seqpt_local_mlm (runs/pretrain_electra.gin).")
    mlm = cross_entropy(out.mlm_logits, batch["mlm_targets"], batch["mlm_weights"], z_loss)
    x, y, w = out.rtd_logits.astype(jnp.float32), out.rtd_labels, out.rtd_weights
    bce = jnp.maximum(x, 0.0) - x * y + jnp.log1p(jnp.exp(-jnp.abs(x)))  # sigmoid CE, stable
    share = mlm.weight / jnp.maximum(jnp.sum(w), 1.0)
    hits = ((x > 0) == (y > 0.5)).astype(jnp.float32)
    return LossSums(loss=mlm.loss + out.rtd_weight * share * jnp.sum(bce * w), z_loss=mlm.z_loss,
                    weight=mlm.weight, correct=share * jnp.sum(hits * w))


def seq2seq_loss(logits: jax.Array, batch: dict, z_loss: float = 0.0) -> LossSums:
    """Loss on `decoder_target_tokens` weighted by `decoder_loss_weights` (seqio's names)."""
    return cross_entropy(logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"], z_loss)


def seq2seq_with_encoder_mlm(logits: jax.Array, mlm_logits: jax.Array, batch: dict, mlm_weight: float,
                             z_loss: float = 0.0) -> LossSums:
    """Seq2seq denoising + encoder MLM: `sum(decoder CE) + mlm_weight * sum(encoder MLM CE)`,
    normalised (by the caller) by the decoder target weight, so a masked encoder token counts
    `mlm_weight` times a decoder target token; as sums it stays exact under accumulation.
    `weight` and `correct` are the decoder's (accuracy stays the seq2seq accuracy)."""
    if mlm_logits is None:
        raise UserError("encoder_mlm_weight > 0 needs a model with an encoder MLM head; build "
                        "EncoderDecoder(cfg, encoder_mlm_head=True) (train.loop does when the weight > 0).")
    if "mlm_targets" not in batch:
        raise UserError("encoder_mlm_weight > 0 needs mlm_targets/mlm_weights in the batch; use the "
                        "span_corruption_masked objective (runs/seq2seq_masked_encoder.gin) or weight 0.")
    s2s, mlm = seq2seq_loss(logits, batch, z_loss), mlm_loss(mlm_logits, batch, z_loss)
    return s2s._replace(loss=s2s.loss + mlm_weight * mlm.loss, z_loss=s2s.z_loss + mlm_weight * mlm.z_loss)


def loss_for(batch: dict):
    """The loss that matches a batch's features: seq2seq if it has decoder targets, else MLM."""
    return seq2seq_loss if "decoder_target_tokens" in batch else mlm_loss


def add(a: LossSums, b: LossSums) -> LossSums:
    return LossSums(*(x + y for x, y in zip(a, b)))
