"""Training losses: weighted token cross-entropy (+ optional z-loss) for MLM and seq2seq.

Every loss returns *sums* (loss, z-loss, weight), not means: gradient accumulation and data
parallelism add sums across micro-batches and devices and divide once by the total weight, so
k micro-batches give exactly the gradient of one batch k times larger.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from seqpt_jax.errors import UserError
from seqpt_jax.models.heads import VocabProjection


class LossSums(NamedTuple):
    loss: jax.Array      # sum of weighted cross-entropy (+ z-loss) over tokens
    z_loss: jax.Array    # the z-loss part of `loss`
    weight: jax.Array    # sum of token weights (the normaliser)
    correct: jax.Array   # weighted count of argmax hits (accuracy = correct / weight)


def cross_entropy(logits, targets: jax.Array, weights: jax.Array, z_loss: float = 0.0) -> LossSums:
    """Weighted softmax cross-entropy over the last axis, computed in float32.

    z-loss (PaLM / T5X): `z_loss * logsumexp(logits)^2` per token keeps the softmax normaliser
    near 1, which stabilises bf16 training of large vocabularies. `logits` may be a model's
    `VocabProjection` (`project=False`): then it is scored `projection.chunk` tokens at a time
    (`chunked_cross_entropy`), the same sums without the [tokens, vocab] logits.
    """
    if isinstance(logits, VocabProjection):
        if logits.chunk:
            return chunked_cross_entropy(logits, targets, weights, z_loss)
        logits = logits.logits()
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


def chunked_cross_entropy(proj: VocabProjection, targets: jax.Array, weights: jax.Array,
                          z_loss: float = 0.0) -> LossSums:
    """`cross_entropy` of `proj.logits()`, `proj.chunk` tokens at a time: no float32 [tokens, vocab]
    logits or logit gradient exists at once (an mT5 head over 64 x 114 targets would hold 7.3 GB
    of each). Each chunk's logits are a float32-accumulated compute-dtype matmul.

    The gradient is computed in the forward pass, chunk by chunk, while the chunk's logits are
    at hand (the loss is a sum, so its cotangent is one scalar that scales it afterwards): one
    matmul forward, then dx and dW only for the operands that carry a gradient (frozen ones are
    skipped), as autodiff of the materialised loss runs them, so the FLOPs ledger is unchanged.
    Only `loss` is differentiable; `z_loss` and `correct` are reported sums."""
    d = proj.hidden.shape[-1]
    hidden = proj.hidden.reshape(-1, d)
    bias = jnp.zeros((proj.kernel.shape[0 if proj.tied else 1],), jnp.float32) if proj.bias is None else proj.bias
    loss, z, correct = _fused_loss(hidden, proj.kernel, bias, targets.reshape(-1).astype(jnp.int32),
                                   weights.reshape(-1).astype(jnp.float32), proj.tied, proj.chunk, float(z_loss))
    return LossSums(loss=loss, z_loss=z, weight=jnp.sum(weights.astype(jnp.float32)), correct=correct)


def _chunk_logits(h, kernel, bias, tied):
    """float32 [c, vocab] logits of one chunk of hidden states."""
    dims = (((1,), (1,)), ((), ())) if tied else (((1,), (0,)), ((), ()))
    return jax.lax.dot_general(h, kernel.astype(h.dtype), dims, preferred_element_type=jnp.float32) + bias


def _chunk_sums(h, kernel, bias, targets, weights, tied, z_loss, grads):
    """(loss, z, correct) sums of one chunk; with `grads` = (dh?, dW?, db?) flags also the
    gradient of the loss sum w.r.t. the chunk's hidden states, the kernel and the bias."""
    logits = _chunk_logits(h, kernel, bias, tied)
    log_z = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[:, None], -1)[:, 0]
    sums = (jnp.sum((log_z - target_logit + z_loss * jnp.square(log_z)) * weights),
            jnp.sum(z_loss * jnp.square(log_z) * weights),
            jnp.sum((jnp.argmax(logits, -1) == targets).astype(jnp.float32) * weights))
    if grads is None:
        return sums, None
    # d/dlogits of w * (log_z - logit[t] + z * log_z^2) = w * (softmax * (1 + 2 z log_z) - onehot)
    probs = jnp.exp(logits - log_z[:, None])
    g = probs * (weights * (1.0 + 2.0 * z_loss * log_z))[:, None]
    g = g.at[jnp.arange(g.shape[0]), targets].add(-weights)
    want_h, want_w, want_b = grads
    gc = g.astype(h.dtype)
    dh = dw = db = None
    if want_h:  # [c, V] x kernel -> [c, d]
        dims = (((1,), (0,)), ((), ())) if tied else (((1,), (1,)), ((), ()))
        dh = jax.lax.dot_general(gc, kernel.astype(h.dtype), dims, preferred_element_type=jnp.float32)
    if want_w:  # kernel-shaped: [V, d] tied, [d, V] untied
        dims = (((0,), (0,)), ((), ()))
        dw = (jax.lax.dot_general(gc, h, dims, preferred_element_type=jnp.float32) if tied
              else jax.lax.dot_general(h, gc, dims, preferred_element_type=jnp.float32))
    if want_b:
        db = jnp.sum(g, 0)
    return sums, (dh, dw, db)


def _over_chunks(hidden, kernel, bias, targets, weights, tied, chunk, z_loss, grads):
    """Sums (and gradients) over every token: `lax.scan` over the whole chunks, then the
    remainder as one more chunk, so no padded token is computed (or counted by the ledger)."""
    n = hidden.shape[0]
    full = n // chunk * chunk
    zero_w = None if grads is None or not grads[1] else jnp.zeros(kernel.shape, jnp.float32)
    zero_b = None if grads is None or not grads[2] else jnp.zeros(bias.shape, jnp.float32)

    def body(carry, xs):
        sums, dw, db = carry
        s, g = _chunk_sums(*xs[:1], kernel, bias, *xs[1:], tied, z_loss, grads)
        sums = tuple(a + b for a, b in zip(sums, s))
        if g is None:
            return (sums, dw, db), None
        dw = dw if g[1] is None else dw + g[1]
        db = db if g[2] is None else db + g[2]
        return (sums, dw, db), g[0]

    carry = (tuple(jnp.zeros((), jnp.float32) for _ in range(3)), zero_w, zero_b)
    dh_parts = []
    if full:
        split = lambda x: x[:full].reshape((full // chunk, chunk) + x.shape[1:])  # noqa: E731
        carry, dh = jax.lax.scan(body, carry, (split(hidden), split(targets), split(weights)))
        if dh is not None:
            dh_parts.append(dh.reshape(full, -1))
    if full < n:
        carry, dh = body(carry, (hidden[full:], targets[full:], weights[full:]))
        if dh is not None:
            dh_parts.append(dh)
    sums, dw, db = carry
    dh = None if not dh_parts else jnp.concatenate(dh_parts, 0).astype(hidden.dtype)
    return sums, (dh, dw, db)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _fused_loss(hidden, kernel, bias, targets, weights, tied, chunk, z_loss):
    return _over_chunks(hidden, kernel, bias, targets, weights, tied, chunk, z_loss, None)[0]


def _fused_loss_fwd(hidden, kernel, bias, targets, weights, tied, chunk, z_loss):
    grads = (hidden.perturbed, kernel.perturbed, bias.perturbed)
    sums, res = _over_chunks(hidden.value, kernel.value, bias.value, targets.value, weights.value, tied, chunk,
                             z_loss, grads)
    return sums, res  # the gradients (dh in the hidden states' dtype, dW and db float32) or None


def _fused_loss_bwd(tied, chunk, z_loss, res, cotangents):
    g_loss, g_z, g_correct = cotangents
    if not all(isinstance(g, jax.custom_derivatives.SymbolicZero) for g in (g_z, g_correct)):
        raise NotImplementedError("chunked_cross_entropy differentiates `loss` only (z_loss and correct "
                                  "are reported sums); set loss_chunk = 0 to differentiate them.")
    if isinstance(g_loss, jax.custom_derivatives.SymbolicZero):
        g_loss = jnp.zeros((), jnp.float32)

    def scaled(d):  # None: that operand carries no gradient (none was computed)
        return None if d is None else (g_loss * d).astype(d.dtype)
    return (*(scaled(d) for d in res), None, None)


_fused_loss.defvjp(_fused_loss_fwd, _fused_loss_bwd, symbolic_zeros=True)
