"""The models: Encoder, EncoderMLM, EncoderDecoder, SequenceClassifier, TokenClassifier.

All take a batch in seqio feature-converter names (`encoder_input_tokens`, optional
`encoder_segment_ids` / `encoder_positions`, `decoder_input_tokens`, ...) and return float32.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from seqpt_jax.models.config import TransformerConfig
from seqpt_jax.models.layers import DenseGeneral, Norm, _init, _param, activation, dense
from seqpt_jax.models.transformer import Batch, Embedders, decode, decode_step, encode

Array = jax.Array


@flax.struct.dataclass
class VocabProjection:
    """The vocabulary projection not yet applied: `logits()` gives what the model's logits are;
    `train.losses` scores it in token chunks (`cfg.loss_chunk`) without the [tokens, vocab]
    logits. `kernel` is `[embed, vocab]`, or the tied token table `[vocab, embed]` (`tied`)."""

    hidden: Array  # [..., embed], the compute dtype
    kernel: Array  # float32 parameter
    bias: Optional[Array]  # [vocab] (BERT's MLM output bias) or None
    tied: bool = flax.struct.field(pytree_node=False)
    chunk: int = flax.struct.field(pytree_node=False)

    def logits(self) -> Array:
        """float32 `[..., vocab]`, computed as the model always has (compute-dtype matmul)."""
        h = self.hidden
        if self.tied:
            logits = jnp.einsum("...d,vd->...v", h, self.kernel.astype(h.dtype))
        else:
            logits = dense(h, self.kernel, 1, h.dtype)
        if self.bias is not None:
            logits = logits + self.bias
        return logits.astype(jnp.float32)


class VocabKernel(nn.Module):
    """An own `[embed, vocab]` output kernel (a DenseGeneral's `kernel`, no bias)."""

    cfg: TransformerConfig

    @nn.compact
    def __call__(self) -> Array:
        cfg = self.cfg
        return _param(self, "kernel", _init(cfg, cfg.d_model), (cfg.d_model, cfg.vocab_size), ("embed", "vocab"))


def _vocab_projection(cfg: TransformerConfig, embedders: Embedders, h: Array, name: str,
                      bias: Optional[Array] = None) -> VocabProjection:
    """Output projection: tied to the token embedding, or an own `[embed, vocab]` kernel."""
    if cfg.tie_embeddings:
        return VocabProjection(h, embedders.token.embedding, bias, True, cfg.loss_chunk)
    return VocabProjection(h, VocabKernel(cfg, name=name)(), bias, False, cfg.loss_chunk)


def _output(projection: VocabProjection, project: bool):
    """float32 logits, or (`project=False`: for the chunked loss) the projection itself."""
    return projection.logits() if project else projection


class Encoder(nn.Module):
    """The encoder alone; returns the last hidden states `[batch, length, embed]`."""

    cfg: TransformerConfig

    @nn.compact
    def __call__(self, batch: Batch, *, enable_dropout: bool = False) -> Array:
        hidden, _ = encode(self.cfg, Embedders(self.cfg), batch, not enable_dropout)
        return hidden.astype(jnp.float32)


class MlmHead(nn.Module):
    """BERT's prediction head: dense + activation + norm, then the (tied) vocabulary projection."""

    cfg: TransformerConfig

    @nn.compact
    def __call__(self, hidden: Array, embedders: Embedders) -> VocabProjection:
        cfg = self.cfg
        h = DenseGeneral(cfg, (cfg.d_model,), (cfg.d_model,), ("embed", "embed_out"), name="transform")(hidden)
        h = Norm(cfg, name="transform_norm")(activation(cfg)(h))
        bias = None
        if cfg.use_bias:
            bias = _param(self, "output_bias", nn.initializers.zeros, (cfg.vocab_size,), ("vocab",))
        return _vocab_projection(cfg, embedders, h, "output", bias)


class EncoderMLM(nn.Module):
    """Encoder + MLM head; returns float32 logits `[batch, length, vocab]`, or with
    `mlm_positions` [batch, P] in the batch (training batches) `[batch, P, vocab]` at those
    positions only: the head is most of a small model's FLOPs and ~85% of positions carry no loss.
    `project=False`: the `VocabProjection` instead of logits (the chunked loss's input)."""

    cfg: TransformerConfig

    @nn.compact
    def __call__(self, batch: Batch, *, enable_dropout: bool = False, project: bool = True):
        embedders = Embedders(self.cfg)
        hidden, _ = encode(self.cfg, embedders, batch, not enable_dropout)
        if "mlm_positions" in batch:
            hidden = jnp.take_along_axis(hidden, batch["mlm_positions"][..., None].astype(jnp.int32), 1)
        # The head is created at this level so the tree reads mlm_head/..., beside encoder/.
        return _output(MlmHead(self.cfg, name="mlm_head")(hidden, embedders), project)


class EncoderDecoder(nn.Module):
    """Seq2seq: encoder + causal decoder with cross-attention; float32 logits over the vocab.

    For generation, `encode` and `decode_step` run the two halves separately
    (`model.apply(..., method="encode")`); they share `__call__`'s parameters.
    """

    cfg: TransformerConfig
    # An MLM head on the encoder's output (`mlm_head/`, EncoderMLM's layout, so extraction to
    # an EncoderMLM keeps it): for seq2seq denoising + encoder MLM (train.loop's
    # encoder_mlm_weight). It runs only in `forward_with_encoder_mlm` (and at init).
    encoder_mlm_head: bool = False

    def __call__(self, batch: Batch, *, enable_dropout: bool = False, project: bool = True):
        """float32 logits; `project=False`: the `VocabProjection` (the chunked loss's input)."""
        return self._run("forward", batch, enable_dropout=enable_dropout, project=project)

    def forward_with_encoder_mlm(self, batch: Batch, *, enable_dropout: bool = False, project: bool = True):
        """(decoder logits, encoder MLM logits `[batch, encoder length, vocab]`, or `[batch, P, vocab]`
        at `mlm_positions` when the batch has them), float32 (or both `VocabProjection`s with
        `project=False`)."""
        return self._run("forward_with_encoder_mlm", batch, enable_dropout=enable_dropout, project=project)

    def encode(self, batch: Batch) -> tuple[Array, Array]:
        """(encoded hidden states, encoder segment ids) for `encoder_input_tokens`."""
        return self._run("encode", batch)

    def decode_step(self, tokens: Array, encoded: Array, encoder_segments: Array, step: Array,
                    max_length: int) -> Array:
        """Logits for decoder `tokens` [batch, q] at positions `step`..; needs mutable "cache".
        `max_length` is the cache length (static)."""
        return self._run("decode_step", (tokens, encoded, encoder_segments, step, max_length))

    @nn.compact
    def _run(self, mode: str, inputs, *, enable_dropout: bool = False, project: bool = True):
        # One compact method builds every submodule (Linen allows one), so every entry point
        # sees the same parameter tree.
        cfg = self.cfg
        embedders = Embedders(cfg)
        mlm_logits = None
        if mode == "decode_step":
            y = decode_step(cfg, embedders, *inputs)
        else:
            encoded, segments = encode(cfg, embedders, inputs, not enable_dropout)
            if mode == "encode":
                return encoded, segments
            y = decode(cfg, embedders, inputs, encoded, segments, not enable_dropout)
            if self.encoder_mlm_head and (mode == "forward_with_encoder_mlm" or self.is_initializing()):
                hidden = encoded
                if "mlm_positions" in inputs:  # as EncoderMLM: the head on the masked positions only
                    hidden = jnp.take_along_axis(encoded, inputs["mlm_positions"][..., None].astype(jnp.int32), 1)
                mlm_logits = _output(MlmHead(cfg, name="mlm_head")(hidden, embedders), project)
        if cfg.tie_embeddings and cfg.family == "t5":
            y = y * cfg.d_model ** -0.5  # T5 rescales before the tied projection.
        logits = _output(_vocab_projection(cfg, embedders, y, "lm_head"), project)
        return (logits, mlm_logits) if mode == "forward_with_encoder_mlm" else logits


class SequenceClassifier(nn.Module):
    """Encoder, pooled (first token for bert, mean over tokens for t5), then a linear layer."""

    cfg: TransformerConfig
    num_classes: int

    @nn.compact
    def __call__(self, batch: Batch, *, enable_dropout: bool = False) -> Array:
        cfg = self.cfg
        hidden, segments = encode(cfg, Embedders(cfg), batch, not enable_dropout)
        if cfg.family == "bert":
            pooled = jnp.tanh(DenseGeneral(cfg, (cfg.d_model,), (cfg.d_model,), ("embed", "embed_out"),
                                           name="pooler")(hidden[:, 0]))
        else:
            weights = (segments != 0).astype(hidden.dtype)[..., None]
            pooled = (hidden * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)
        if cfg.dropout_rate and enable_dropout:
            pooled = nn.Dropout(cfg.dropout_rate)(pooled, deterministic=False)
        logits = DenseGeneral(cfg.replace(use_bias=True), (cfg.d_model,), (self.num_classes,),
                              ("embed", "classes"), name="classifier")(pooled)
        return logits.astype(jnp.float32)


class TokenClassifier(nn.Module):
    """Encoder, then a linear layer per token: float32 `[batch, length, num_labels]`."""

    cfg: TransformerConfig
    num_labels: int

    @nn.compact
    def __call__(self, batch: Batch, *, enable_dropout: bool = False) -> Array:
        cfg = self.cfg
        hidden, _ = encode(cfg, Embedders(cfg), batch, not enable_dropout)
        if cfg.dropout_rate and enable_dropout:
            hidden = nn.Dropout(cfg.dropout_rate)(hidden, deterministic=False)
        logits = DenseGeneral(cfg.replace(use_bias=True), (cfg.d_model,), (self.num_labels,),
                              ("embed", "classes"), name="classifier")(hidden)
        return logits.astype(jnp.float32)
