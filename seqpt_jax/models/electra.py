"""ELECTRA (Clark et al. 2020): replaced-token detection with a small MLM generator.

One model, two ordinary networks of this project (equations in docs/mappings.md, "ELECTRA"):

    discriminator/   EncoderMLM's layout without `mlm_head` (token_embedder, position_embedder,
                     token_type_embedder, embedding_norm, encoder) + `rtd_head` (dense, act, 1 logit)
    generator/       embeddings_project (width d -> d_g, absent when equal), encoder (d_g wide),
                     mlm_head (transform d_g -> d, act, norm; output_bias when use_bias)

The generator reads the discriminator's embedding tables (token, position, token type and the
embedding norm, as ELECTRA's code shares them) and projects them to its width; its vocabulary
projection is the shared token table (tied, as in the paper). Its softmax is sampled at the
masked positions (from the step's dropout rng, so a resumed run draws the same tokens); the
samples replace the masked tokens and the discriminator predicts, at every position, whether
its input token differs from the original. Samples are integers: no gradient reaches the
generator through them. `mappings.electra_to_encoder` turns `discriminator/` into a plain
encoder_mlm (fresh MLM head) or encoder checkpoint.
"""

from __future__ import annotations

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from seqpt_jax.errors import UserError
from seqpt_jax.models.config import TransformerConfig
from seqpt_jax.models.layers import DenseGeneral, Norm, _param, activation
from seqpt_jax.models.transformer import Batch, Embedders, EncoderStack, embed, encode

Array = jax.Array
RTD_WEIGHT = 50.0           # lambda of the paper (loss = MLM + lambda * RTD)
GENERATOR_FRACTION = 0.25   # generator width / discriminator width (paper: 1/4 to 1/2; 1/4 small, 1/3 base)
EVAL_SAMPLE_SEED = 0        # without a dropout rng (evaluation, init): a fixed sampling key


class ElectraOutputs(flax.struct.PyTreeNode):
    """What `Electra` returns; `train.losses.electra_loss` scores it."""

    mlm_logits: Array     # [B, P, vocab] generator logits at mlm_positions, float32
    rtd_logits: Array     # [B, L] discriminator logits of "replaced", float32
    rtd_labels: Array     # [B, L] 1.0 where the discriminator's input differs from the original
    rtd_weights: Array    # [B, L] 1.0 on every non-padding position
    rtd_inputs: Array     # [B, L] the discriminator's input: the samples at the masked positions
    rtd_weight: float = flax.struct.field(pytree_node=False, default=RTD_WEIGHT)


def generator_config(cfg: TransformerConfig, fraction: float) -> TransformerConfig:
    """The generator: `cfg` with d_model and d_ff scaled by `fraction` (rounded), heads of the
    discriminator's head_dim (one head narrower than that: ELECTRA's max(1, d_g // 64)), the
    same depth and everything else unchanged."""
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"generator_fraction={fraction} must be in (0, 1] (the paper uses 1/4 to 1/3); "
                        f"set GENERATOR_FRACTION.")
    d = max(1, round(cfg.d_model * fraction))
    heads = max(1, d // cfg.head_dim)
    head_dim = cfg.head_dim if d >= cfg.head_dim else d
    if cfg.family == "bert":
        if d % heads:
            raise UserError(f"generator width {d} (d_model {cfg.d_model} x {fraction}) does not split into {heads} "
                            f"heads; choose a GENERATOR_FRACTION giving a multiple of head_dim {cfg.head_dim}.")
        head_dim = d // heads
    return cfg.replace(d_model=d, num_heads=heads, head_dim=head_dim, d_ff=max(1, round(cfg.d_ff * fraction)),
                       encoder_scan_split=0)


def replace_masked(tokens: Array, positions: Array, sampled: Array, targets: Array, selected: Array):
    """(discriminator input, RTD labels [B, L] float32): `tokens` with `sampled` written at the
    `selected` entries of `positions` [B, P]; label 1 exactly where the written token differs from
    the original (`targets`), 0 elsewhere, also where the generator sampled the original. Padding
    entries of `positions` (not selected) write nothing, even where they repeat a position."""
    rows = jnp.arange(tokens.shape[0])[:, None]
    put = jnp.zeros(tokens.shape, bool).at[rows, positions].max(selected)
    value = jnp.zeros_like(tokens).at[rows, positions].add(jnp.where(selected, sampled, 0).astype(tokens.dtype))
    replaced = (selected & (sampled != targets)).astype(jnp.float32)
    labels = jnp.zeros(tokens.shape, jnp.float32).at[rows, positions].max(replaced)
    return jnp.where(put, value, tokens), labels


class RtdHead(nn.Module):
    """ELECTRA's discriminator head: dense + activation, then one logit per position."""

    cfg: TransformerConfig

    @nn.compact
    def __call__(self, hidden: Array) -> Array:
        cfg = self.cfg
        h = DenseGeneral(cfg, (cfg.d_model,), (cfg.d_model,), ("embed", "embed_out"), name="transform")(hidden)
        logit = DenseGeneral(cfg.replace(use_bias=True), (cfg.d_model,), (1,), ("embed", "classes"),
                             name="output")(activation(cfg)(h))
        return logit[..., 0].astype(jnp.float32)


class Discriminator(nn.Module):
    """Embeddings + encoder + RTD head. mode "embed": the shared embedding output (for the
    generator); "attend": the tied vocabulary projection; "forward": RTD logits [B, L]."""

    cfg: TransformerConfig

    @nn.compact
    def __call__(self, mode: str, inputs, deterministic: bool = True):
        cfg = self.cfg
        embedders = Embedders(cfg)
        if mode == "embed":
            return embed(cfg, embedders, inputs, deterministic)
        if mode == "attend":
            return embedders.token.attend(inputs)
        hidden, _ = encode(cfg, embedders, inputs, deterministic)
        return RtdHead(cfg, name="rtd_head")(hidden)


class Generator(nn.Module):
    """Projection to the generator's width, its encoder, and its MLM head up to the vocabulary
    projection (which is the shared token table, applied by the caller): returns `[B, P, d]`
    and the output bias (None without biases)."""

    cfg: TransformerConfig   # the generator's (generator_config)
    embed_dim: int           # the shared tables' width (the discriminator's d_model)

    @nn.compact
    def __call__(self, x: Array, segments: Array, positions, mlm_positions: Array, deterministic: bool):
        cfg, e = self.cfg, self.embed_dim
        if cfg.d_model != e:  # ELECTRA's embeddings_project
            x = DenseGeneral(cfg, (e,), (cfg.d_model,), ("embed", "embed_out"), name="embeddings_project")(x)
        hidden = EncoderStack(cfg, deterministic, name="encoder")(x, segments, positions)
        hidden = jnp.take_along_axis(hidden, mlm_positions[..., None].astype(jnp.int32), 1)
        return _GeneratorHead(cfg, e, name="mlm_head")(hidden)


class _GeneratorHead(nn.Module):
    cfg: TransformerConfig
    embed_dim: int

    @nn.compact
    def __call__(self, hidden: Array):
        cfg, e = self.cfg, self.embed_dim
        h = DenseGeneral(cfg, (cfg.d_model,), (e,), ("embed_out", "embed"), name="transform")(hidden)
        h = Norm(cfg, name="transform_norm")(activation(cfg)(h))
        if cfg.family == "t5":
            h = h * e ** -0.5  # T5 rescales before a tied projection (its tables are N(0, 1))
        bias = None
        if cfg.use_bias:
            bias = _param(self, "output_bias", nn.initializers.zeros, (cfg.vocab_size,), ("vocab",))
        return h, bias


class Electra(nn.Module):
    """Generator + discriminator; `cfg` is the discriminator's. Returns `ElectraOutputs`.

    Training batches are MLM batches (`mlm_positions/mlm_targets/mlm_weights [B, P]`); without
    them (init, shape inference) the generator runs on every position and nothing is replaced.
    """

    cfg: TransformerConfig
    generator_fraction: float = GENERATOR_FRACTION
    rtd_weight: float = RTD_WEIGHT

    @property
    def generator_cfg(self) -> TransformerConfig:
        return generator_config(self.cfg, self.generator_fraction)

    @nn.compact
    def __call__(self, batch: Batch, *, enable_dropout: bool = False) -> ElectraOutputs:
        cfg, det = self.cfg, not enable_dropout
        disc = Discriminator(cfg, name="discriminator")
        gen = Generator(self.generator_cfg, cfg.d_model, name="generator")
        tokens = batch["encoder_input_tokens"]
        if "mlm_positions" in batch:
            positions, targets = batch["mlm_positions"], batch["mlm_targets"]
            selected = batch["mlm_weights"] > 0
        else:
            positions = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
            targets, selected = tokens, jnp.zeros(tokens.shape, bool)
        x, segments, pos = disc("embed", batch, det)
        h, bias = gen(x, segments, pos, positions, det)
        mlm_logits = disc("attend", h)
        if bias is not None:
            mlm_logits = mlm_logits + bias.astype(mlm_logits.dtype)
        mlm_logits = mlm_logits.astype(jnp.float32)
        key = self.make_rng("dropout") if self.has_rng("dropout") else jax.random.PRNGKey(EVAL_SAMPLE_SEED)
        sampled = jax.random.categorical(key, jax.lax.stop_gradient(mlm_logits), axis=-1).astype(tokens.dtype)
        corrupted, labels = replace_masked(tokens, positions.astype(jnp.int32), sampled, targets, selected)
        # Segments come from the original tokens: a sampled pad id stays a real token.
        disc_batch = {**batch, "encoder_input_tokens": corrupted, "encoder_segment_ids": segments}
        rtd_logits = disc("forward", disc_batch, det)
        return ElectraOutputs(mlm_logits=mlm_logits, rtd_logits=rtd_logits, rtd_labels=labels,
                              rtd_weights=(segments != 0).astype(jnp.float32), rtd_inputs=corrupted,
                              rtd_weight=self.rtd_weight)
