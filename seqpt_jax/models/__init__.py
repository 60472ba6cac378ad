"""Flax Linen models and their configuration.

    cfg = models.preset("bert-tiny")
    model = models.EncoderMLM(cfg)
    params = models.init(model, jax.random.key(0), batch)
    logits = model.apply({"params": params}, batch)
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np

from seqpt_jax.models.config import PRESETS, TransformerConfig, preset
from seqpt_jax.models.electra import Electra, ElectraOutputs, generator_config
from seqpt_jax.models.heads import (Encoder, EncoderDecoder, EncoderMLM, SequenceClassifier,
                                    TokenClassifier)

KINDS = {"encoder": Encoder, "encoder_mlm": EncoderMLM, "encoder_decoder": EncoderDecoder, "electra": Electra}
# Settings a kind takes beside its config (gin: models.build.generator_fraction = 0.25).
OPTIONS = {"electra": ("generator_fraction", "rtd_weight")}


def build(kind: str, cfg: TransformerConfig, **options) -> nn.Module:
    """The model of a kind: "encoder" | "encoder_mlm" | "encoder_decoder" | "electra" (with its
    OPTIONS: generator_fraction, rtd_weight)."""
    from seqpt_jax.errors import UserError
    if kind not in KINDS:
        raise UserError(f"Unknown model kind {kind!r}; use one of {', '.join(KINDS)}.")
    unknown = sorted(set(options) - set(OPTIONS.get(kind, ())))
    if unknown:
        raise UserError(f"models.build.{unknown[0]} is not a setting of kind {kind!r}; its settings: "
                        f"{', '.join(OPTIONS.get(kind, ())) or 'none'}. Remove the binding.")
    return KINDS[kind](cfg, **options)


def dummy_batch(model: nn.Module, batch_size: int = 1, length: int = 8) -> dict:
    """A batch of ones with the features `model` needs, for init and shape inference."""
    ones = np.ones((batch_size, length), np.int32)
    batch = {"encoder_input_tokens": ones}
    if isinstance(model, EncoderDecoder):
        batch["decoder_input_tokens"] = ones
    return batch


def _boxed_init(model: nn.Module, rng, batch):
    return model.init(rng, batch)["params"]


def init(model: nn.Module, rng: jax.Array, batch: dict | None = None) -> dict:
    """The "params" collection as plain float32 arrays (logical axes: see `logical_axes`)."""
    batch = dummy_batch(model) if batch is None else batch
    boxed = jax.jit(_boxed_init, static_argnums=0)(model, rng, batch)
    return nn.meta.unbox(boxed)


def logical_axes(model: nn.Module, batch: dict | None = None) -> dict:
    """A tree matching the params whose leaves are `PartitionSpec`s of logical axis names."""
    batch = dummy_batch(model) if batch is None else batch
    abstract = jax.eval_shape(lambda: _boxed_init(model, jax.random.key(0), batch))
    return nn.get_partition_spec(abstract)


def param_shapes(model: nn.Module) -> dict:
    """Parameter shapes and dtypes without allocating anything."""
    batch = dummy_batch(model)
    return nn.meta.unbox(jax.eval_shape(lambda: _boxed_init(model, jax.random.key(0), batch)))


def count_params(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


__all__ = [
    "PRESETS", "TransformerConfig", "preset", "Encoder", "EncoderMLM", "EncoderDecoder", "Electra",
    "ElectraOutputs", "generator_config", "OPTIONS",
    "SequenceClassifier", "TokenClassifier", "KINDS", "build", "dummy_batch", "init",
    "logical_axes", "param_shapes", "count_params",
]
