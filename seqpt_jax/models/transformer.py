"""Encoder and decoder stacks (scanned layers) and the embeddings they share.

The encoder subtree is identical wherever it appears (EncoderMLM, EncoderDecoder, the
classifiers), so warm start and extraction are dictionary moves.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from seqpt_jax.models.config import TransformerConfig
from seqpt_jax.models.layers import (Attention, Mlp, Norm, RelativePositionBias, _constrain,
                                     _param)

Array = jax.Array
Batch = dict


class Embed(nn.Module):
    """A `[num, embed]` table; `attend` reuses it as a tied output projection."""

    cfg: TransformerConfig
    num: int
    axes: tuple = ("vocab", "embed")
    stddev: Optional[float] = None

    def setup(self):
        std = self.stddev or (0.02 if self.cfg.family == "bert" else 1.0)
        self.embedding = _param(self, "embedding", nn.initializers.normal(std),
                                (self.num, self.cfg.d_model), self.axes)

    def __call__(self, ids: Array) -> Array:
        return jnp.take(self.embedding, ids, axis=0).astype(self.cfg.compute_dtype)

    def attend(self, x: Array) -> Array:
        return jnp.einsum("...d,vd->...v", x, self.embedding.astype(x.dtype))


def _dropout(cfg: TransformerConfig, x: Array, deterministic: bool) -> Array:
    if cfg.dropout_rate and not deterministic:
        return nn.Dropout(cfg.dropout_rate)(x, deterministic=False)
    return x


class EncoderLayer(nn.Module):
    cfg: TransformerConfig
    deterministic: bool = True

    @nn.compact
    def __call__(self, x: Array, mask: Array, bias: Optional[Array]):
        cfg, det = self.cfg, self.deterministic
        attention, mlp = Attention(cfg, name="attention"), Mlp(cfg, name="mlp")
        if cfg.norm_position == "pre":
            h = Norm(cfg, name="attention_norm")(x)
            x = x + _dropout(cfg, attention(h, h, mask, bias, det), det)
            h = Norm(cfg, name="mlp_norm")(x)
            x = x + _dropout(cfg, mlp(h, det), det)
        else:
            x = Norm(cfg, name="attention_norm")(x + _dropout(cfg, attention(x, x, mask, bias, det), det))
            x = Norm(cfg, name="mlp_norm")(x + _dropout(cfg, mlp(x, det), det))
        return _constrain(x, ("batch", "length", "embed")), None


class DecoderLayer(nn.Module):
    cfg: TransformerConfig
    deterministic: bool = True
    decode: bool = False  # key/value cache for step-by-step generation (see Attention)

    @nn.compact
    def __call__(self, x: Array, encoded: Array, self_mask: Array, cross_mask: Array,
                 bias: Optional[Array]):
        cfg, det = self.cfg, self.deterministic
        self_attn = Attention(cfg, decode=self.decode, causal=True, name="self_attention")
        cross_attn = Attention(cfg, name="cross_attention")
        mlp = Mlp(cfg, name="mlp")
        if cfg.norm_position == "pre":
            h = Norm(cfg, name="self_attention_norm")(x)
            x = x + _dropout(cfg, self_attn(h, h, self_mask, bias, det), det)
            h = Norm(cfg, name="cross_attention_norm")(x)
            x = x + _dropout(cfg, cross_attn(h, encoded, cross_mask, None, det), det)
            h = Norm(cfg, name="mlp_norm")(x)
            x = x + _dropout(cfg, mlp(h, det), det)
        else:
            x = Norm(cfg, name="self_attention_norm")(
                x + _dropout(cfg, self_attn(x, x, self_mask, bias, det), det))
            x = Norm(cfg, name="cross_attention_norm")(
                x + _dropout(cfg, cross_attn(x, encoded, cross_mask, None, det), det))
            x = Norm(cfg, name="mlp_norm")(x + _dropout(cfg, mlp(x, det), det))
        return _constrain(x, ("batch", "length", "embed")), None


def _scanned(layer_cls, cfg: TransformerConfig, num_layers: int, num_inputs: int,
             deterministic: bool, name: str, **layer_kwargs) -> nn.Module:
    """`num_layers` copies of a layer with every parameter stacked on a leading `layers` axis."""
    if cfg.remat != "none":
        policy = (jax.checkpoint_policies.checkpoint_dots if cfg.remat == "dots"
                  else jax.checkpoint_policies.nothing_saveable)
        layer_cls = nn.remat(layer_cls, policy=policy, prevent_cse=False)
    # A decode cache, when there is one, is stacked per layer like the params.
    scan = nn.scan(layer_cls, variable_axes={"params": 0, "cache": 0}, split_rngs={"params": True, "dropout": True},
                   in_axes=(nn.broadcast,) * num_inputs, length=num_layers,
                   unroll=min(cfg.scan_unroll or num_layers, num_layers),
                   metadata_params={nn.PARTITION_NAME: "layers"})
    return scan(cfg, deterministic, name=name, **layer_kwargs)


def attention_mask(q_segments: Array, k_segments: Array) -> Array:
    """[batch, 1, q, k]: a query sees keys of its own segment; segment 0 is padding."""
    same = q_segments[:, None, :, None] == k_segments[:, None, None, :]
    return same & (k_segments[:, None, None, :] != 0)


class EncoderStack(nn.Module):
    cfg: TransformerConfig
    deterministic: bool = True

    @nn.compact
    def __call__(self, x: Array, segments: Array, positions) -> Array:
        cfg = self.cfg
        bias = None
        if cfg.positions == "relative":
            bias = RelativePositionBias(cfg, bidirectional=True, name="relpos_bias")(positions, positions)
        mask, split = attention_mask(segments, segments), cfg.encoder_scan_split
        if split:  # two scans: bottom layers [0, split) and top layers (sub-model training)
            x, _ = _scanned(EncoderLayer, cfg, split, 2, self.deterministic, "layers")(x, mask, bias)
            top = _scanned(EncoderLayer, cfg, cfg.num_encoder_layers - split, 2, self.deterministic, "layers_top")
            x, _ = top(x, mask, bias)
        else:
            layers = _scanned(EncoderLayer, cfg, cfg.num_encoder_layers, 2, self.deterministic, "layers")
            x, _ = layers(x, mask, bias)
        if cfg.norm_position == "pre":
            x = _dropout(cfg, Norm(cfg, name="final_norm")(x), self.deterministic)
        return x


class DecoderStack(nn.Module):
    cfg: TransformerConfig
    deterministic: bool = True
    decode: bool = False

    @nn.compact
    def __call__(self, y: Array, encoded: Array, self_mask: Array, cross_mask: Array,
                 positions, key_positions=None) -> Array:
        """`key_positions` (decode mode): the cache's positions when queries are one step."""
        cfg = self.cfg
        bias = None
        if cfg.positions == "relative":
            keys = positions if key_positions is None else key_positions
            bias = RelativePositionBias(cfg, bidirectional=False, name="relpos_bias")(positions, keys)
        else:
            y = _dropout(cfg, Norm(cfg, name="embedding_norm")(y), self.deterministic)
        kwargs = {"decode": True} if self.decode else {}
        layers = _scanned(DecoderLayer, cfg, cfg.num_decoder_layers, 4, self.deterministic, "layers",
                          **kwargs)
        y, _ = layers(y, encoded, self_mask, cross_mask, bias)
        if cfg.norm_position == "pre":
            y = _dropout(cfg, Norm(cfg, name="final_norm")(y), self.deterministic)
        return y


def _positions(batch: Batch, prefix: str, length: int):
    """Packed batches carry positions; otherwise a static arange (no per-example work)."""
    pos = batch.get(f"{prefix}_positions")
    return np.arange(length, dtype=np.int32)[None] if pos is None else pos


class Embedders:
    """The embedding tables of a model, created once at the caller's top level and shared by
    encoder and decoder: token_embedder, position_embedder (bert), token_type_embedder (bert)."""

    def __init__(self, cfg: TransformerConfig):
        self.cfg = cfg
        self.token = Embed(cfg, cfg.vocab_size, name="token_embedder")
        self.position = None
        self.token_type = None
        if cfg.positions == "absolute":
            self.position = Embed(cfg, cfg.max_length, axes=("length", "embed"), stddev=0.02,
                                  name="position_embedder")
        if cfg.type_vocab_size:
            self.token_type = Embed(cfg, cfg.type_vocab_size, axes=("token_types", "embed"),
                                    stddev=0.02, name="token_type_embedder")

    def __call__(self, tokens: Array, positions, token_types: Optional[Array] = None) -> Array:
        x = self.token(tokens)
        if self.position is not None:
            x = x + self.position(jnp.asarray(positions) + self.cfg.position_offset)
        if self.token_type is not None:
            x = x + self.token_type(jnp.zeros_like(tokens) if token_types is None else token_types)
        return x


def embed(cfg: TransformerConfig, embedders: Embedders, batch: Batch, deterministic: bool):
    """The encoder's input: (embedded `encoder_input_tokens` after `embedding_norm` and dropout,
    segment ids, positions). `embedding_norm` is created at the caller's level (see `encode`)."""
    tokens = batch["encoder_input_tokens"]
    segments = batch.get("encoder_segment_ids")
    if segments is None:
        segments = (tokens != cfg.pad_id).astype(jnp.int32)
    positions = _positions(batch, "encoder", tokens.shape[-1])
    x = embedders(tokens, positions, batch.get("encoder_token_type_ids"))
    if cfg.positions == "absolute":
        x = Norm(cfg, name="embedding_norm")(x)
    x = _constrain(_dropout(cfg, x, deterministic), ("batch", "length", "embed"))
    return x, segments, positions


def encode(cfg: TransformerConfig, embedders: Embedders, batch: Batch, deterministic: bool):
    """Embeds and encodes `encoder_input_tokens`; returns (hidden states, segment ids).

    Call inside the top-level model's compact `__call__`: `embedding_norm` and `encoder` are
    created at that level, which fixes the parameter tree of DESIGN.md §2.
    """
    x, segments, positions = embed(cfg, embedders, batch, deterministic)
    return EncoderStack(cfg, deterministic, name="encoder")(x, segments, positions), segments


def decode(cfg: TransformerConfig, embedders: Embedders, batch: Batch, encoded: Array,
           encoder_segments: Array, deterministic: bool) -> Array:
    """Runs the decoder over `decoder_input_tokens` (already shifted right); hidden states."""
    tokens = batch["decoder_input_tokens"]
    length = tokens.shape[-1]
    positions = _positions(batch, "decoder", length)
    y = embedders(tokens, positions)
    if cfg.positions == "relative":
        y = _dropout(cfg, y, deterministic)
    self_mask, cross_mask = decoder_masks(batch, encoder_segments, length)
    return DecoderStack(cfg, deterministic, name="decoder")(y, encoded, self_mask, cross_mask, positions)


def decode_step(cfg: TransformerConfig, embedders: Embedders, tokens: Array, encoded: Array,
                encoder_segments: Array, step: Array, max_length: int) -> Array:
    """Decoder hidden states for `tokens` [batch, q] at positions step..step+q-1, reading and
    extending the key/value cache of length `max_length` (mutable "cache" collection).

    Call with tokens of length `max_length` and no cache yet to create the cache (shapes only).
    """
    q = tokens.shape[-1]
    positions = (jnp.asarray(step, jnp.int32) + jnp.arange(q, dtype=jnp.int32))[None]
    key_positions = np.arange(max_length, dtype=np.int32)[None]
    y = embedders(tokens, positions)
    cross_mask = (encoder_segments != 0)[:, None, None, :]
    stack = DecoderStack(cfg, True, decode=True, name="decoder")
    return stack(y, encoded, None, cross_mask, positions, key_positions)


def decoder_masks(batch: Batch, encoder_segments: Array, length: int):
    """Causal self-attention mask and cross-attention mask, segment-aware when packed."""
    causal = jnp.tril(jnp.ones((length, length), dtype=bool))[None, None]
    dec_segments = batch.get("decoder_segment_ids")
    if dec_segments is None:
        self_mask = causal
        cross_mask = (encoder_segments != 0)[:, None, None, :]
    else:
        self_mask = causal & attention_mask(dec_segments, dec_segments)
        cross_mask = attention_mask(dec_segments, encoder_segments)
    return self_mask, cross_mask
