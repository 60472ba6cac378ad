"""`TransformerConfig` and the named presets.

One frozen dataclass describes every model in the project. The two families differ only by
the switches below: `t5` (mT5 / T5 v1.1: pre-RMSNorm, relative position bias, gated GELU, no
biases) and `bert` (BERT / XLM-R: post-LayerNorm, learned absolute positions, GELU, biases).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from seqpt_jax.errors import UserError

FAMILIES = ("t5", "bert")
_CHOICES = {
    "norm": ("rmsnorm", "layernorm"),
    "norm_position": ("pre", "post"),
    "positions": ("relative", "absolute"),
    "activation": ("gelu", "gelu_tanh", "relu"),
    "remat": ("none", "full", "dots"),
    "attention_impl": ("auto", "xla", "cudnn"),
}
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Architecture of an encoder, decoder or encoder-decoder Transformer."""

    family: str = "t5"
    vocab_size: int = 32128
    d_model: int = 512
    num_heads: int = 8
    head_dim: int = 64
    d_ff: int = 1024
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    # Family switches.
    norm: str = "rmsnorm"
    norm_position: str = "pre"
    norm_eps: float = 1e-6
    positions: str = "relative"
    activation: str = "gelu_tanh"
    gated_mlp: bool = True
    use_bias: bool = False
    tie_embeddings: bool = False
    # Relative position bias (t5) / learned absolute positions (bert).
    relpos_buckets: int = 32
    relpos_max_distance: int = 128
    max_length: int = 512
    position_offset: int = 0  # XLM-R counts positions from pad_id + 1.
    type_vocab_size: int = 0  # BERT's segment (token type) embeddings; 0 = none.
    pad_id: int = 0
    dropout_rate: float = 0.0
    # Numerics: parameters stay float32; activations use `dtype`.
    dtype: str = "float32"
    remat: str = "none"
    # Run encoder layers [0, k) and [k, n) as two scans (params `layers/` and `layers_top/`), so
    # a bert2BERT sub-model step runs its frozen bottom layers forward-only (train.freezing).
    encoder_scan_split: int = 0
    # Layer-scan iterations per loop trip: 1 = a rolled while loop (fast compiles, the default);
    # 0 = every layer unrolled into straight-line code (faster steps on XLA CPU, hw/cpu.gin).
    # Execution only: the parameter tree keeps its leading `layers` axis either way.
    scan_unroll: int = 1
    # Attention kernel (execution only, models.layers.attention_implementation): 'xla' = the
    # jax.nn.dot_product_attention XLA path; 'cudnn' = cuDNN's fused flash kernel (bf16/fp16 on
    # an NVIDIA GPU; an error elsewhere); 'auto' = cuDNN where it runs this call's pattern, XLA
    # otherwise (decided at trace time).
    attention_impl: str = "auto"
    # Tokens per chunk of the vocabulary projection + cross-entropy in training and evaluation
    # (train.losses.chunked_cross_entropy): no float32 [tokens, vocab] logits are built.
    # 0 = materialised logits (the default; fastest on CPU). Execution only.
    loss_chunk: int = 0

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise UserError(
                f"TransformerConfig.family={self.family!r} is unknown; use one of {FAMILIES}."
            )
        for field, allowed in _CHOICES.items():
            value = getattr(self, field)
            if value not in allowed:
                raise UserError(
                    f"TransformerConfig.{field}={value!r} is unknown; use one of {allowed}."
                )
        if self.dtype not in _DTYPES:
            raise UserError(
                f"TransformerConfig.dtype={self.dtype!r} is unknown; use one of {tuple(_DTYPES)}."
            )
        for field in ("vocab_size", "d_model", "num_heads", "head_dim", "d_ff"):
            if getattr(self, field) <= 0:
                raise UserError(f"TransformerConfig.{field} must be positive, got {getattr(self, field)}.")
        if self.family == "bert" and self.num_heads * self.head_dim != self.d_model:
            raise UserError(
                f"TransformerConfig.num_heads * head_dim = {self.num_heads} * {self.head_dim} "
                f"must equal d_model = {self.d_model} in the bert family; set head_dim = "
                f"d_model / num_heads (d_model must be divisible by num_heads)."
            )
        if not 0 <= self.encoder_scan_split < max(self.num_encoder_layers, 1):
            raise UserError(f"TransformerConfig.encoder_scan_split={self.encoder_scan_split} must be in "
                            f"[0, num_encoder_layers={self.num_encoder_layers}).")
        if self.scan_unroll < 0:
            raise UserError(f"TransformerConfig.scan_unroll must be >= 0 (0 = all layers), got "
                            f"{self.scan_unroll}.")
        if self.loss_chunk < 0:
            raise UserError(f"TransformerConfig.loss_chunk must be >= 0 (0 = materialised logits), got "
                            f"{self.loss_chunk}.")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise UserError(f"TransformerConfig.dropout_rate must be in [0, 1), got {self.dropout_rate}.")

    @property
    def compute_dtype(self) -> Any:
        return _DTYPES[self.dtype]

    def replace(self, **changes) -> "TransformerConfig":
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise UserError(
                f"TransformerConfig has no field {unknown[0]!r}; fields are "
                f"{', '.join(f.name for f in dataclasses.fields(self))}."
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerConfig":
        return cls().replace(**d)


def _t5(**kw) -> TransformerConfig:
    """mT5 / T5 v1.1."""
    return TransformerConfig(**{"family": "t5", "vocab_size": 250112, **kw})


def _bert(**kw) -> TransformerConfig:
    base = dict(
        family="bert", vocab_size=30522, norm="layernorm", norm_position="post", norm_eps=1e-12,
        positions="absolute", activation="gelu", gated_mlp=False, use_bias=True,
        tie_embeddings=True, type_vocab_size=2, max_length=512, dropout_rate=0.1,
    )
    base.update(kw)
    return TransformerConfig(**base)


def _bert_size(layers, d_model, heads, d_ff, **kw) -> TransformerConfig:
    return _bert(num_encoder_layers=layers, num_decoder_layers=layers, d_model=d_model,
                 num_heads=heads, head_dim=d_model // heads, d_ff=d_ff, **kw)


def _t5_size(layers, d_model, heads, d_ff, **kw) -> TransformerConfig:
    return _t5(num_encoder_layers=layers, num_decoder_layers=layers, d_model=d_model,
               num_heads=heads, head_dim=64, d_ff=d_ff, **kw)


_XLMR = dict(vocab_size=250002, pad_id=1, position_offset=2, max_length=514, type_vocab_size=1,
             norm_eps=1e-5)

# name -> (config factory, published parameter count, where it was published).
PRESETS = {
    # Google's compact BERTs (Turc et al. 2019) and the original BERT sizes.
    "bert-tiny": (lambda: _bert_size(2, 128, 2, 512), 4.4e6, "Turc et al. 2019 (BERT-Tiny)"),
    "bert-mini": (lambda: _bert_size(4, 256, 4, 1024), 11.3e6, "Turc et al. 2019 (BERT-Mini)"),
    "bert-small": (lambda: _bert_size(4, 512, 8, 2048), 29.1e6, "Turc et al. 2019 (BERT-Small)"),
    "bert-medium": (lambda: _bert_size(8, 512, 8, 2048), 41.7e6, "Turc et al. 2019 (BERT-Medium)"),
    "bert-base": (lambda: _bert_size(12, 768, 12, 3072), 110e6, "Devlin et al. 2019 (BERT-Base)"),
    "bert-large": (lambda: _bert_size(24, 1024, 16, 4096), 340e6, "Devlin et al. 2019 (BERT-Large)"),
    "xlmr-base": (lambda: _bert_size(12, 768, 12, 3072, **_XLMR), 270e6, "Conneau et al. 2020 (XLM-R Base)"),
    "xlmr-large": (lambda: _bert_size(24, 1024, 16, 4096, **_XLMR), 550e6, "Conneau et al. 2020 (XLM-R Large)"),
    # A small T5 v1.1-style model for laptops and tests.
    "t5-tiny": (lambda: _t5(vocab_size=32128, num_encoder_layers=2, num_decoder_layers=2, d_model=128,
                            num_heads=4, head_dim=32, d_ff=256), None, None),
    "t5-small": (lambda: _t5(vocab_size=32128, num_encoder_layers=8, num_decoder_layers=8, d_model=512,
                             num_heads=6, head_dim=64, d_ff=1024), 77e6, "T5 v1.1 Small (google/t5-v1_1-small)"),
    "mt5-small": (lambda: _t5_size(8, 512, 6, 1024), 300e6, "Xue et al. 2021 (mT5-Small)"),
    "mt5-base": (lambda: _t5_size(12, 768, 12, 2048), 580e6, "Xue et al. 2021 (mT5-Base)"),
    "mt5-large": (lambda: _t5_size(24, 1024, 16, 2816), 1.2e9, "Xue et al. 2021 (mT5-Large)"),
    "mt5-xl": (lambda: _t5_size(24, 2048, 32, 5120), 3.7e9, "Xue et al. 2021 (mT5-XL)"),
}


def preset(name: str, **overrides) -> TransformerConfig:
    """The named preset, with any field overridden (e.g. `vocab_size` for your vocabulary)."""
    if name not in PRESETS:
        raise UserError(f"Unknown preset {name!r}; choose one of: {', '.join(PRESETS)}.")
    cfg = PRESETS[name][0]()
    return cfg.replace(**overrides) if overrides else cfg
