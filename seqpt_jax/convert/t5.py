"""T5 / mT5 (`T5ForConditionalGeneration`, `MT5ForConditionalGeneration`, `T5EncoderModel`)
<-> our `t5` family.

HF keeps the relative position bias in block 0 of each stack only (the other blocks reuse
it), exactly like our one table per stack. Output projection: `T5ForConditionalGeneration`
rescales the decoder output by d_model**-0.5 when its config ties the embeddings
(`scale_decoder_outputs`); `MT5ForConditionalGeneration` never rescales. Ours rescales iff
`tie_embeddings`, so an unscaled tied model is imported as untied (lm_head = embedding).
"""

from __future__ import annotations

import re

import numpy as np

from seqpt_jax.convert.rules import LINEAR, OUT, QKV, Rule, export_params, import_state
from seqpt_jax.errors import UserError
from seqpt_jax.models import TransformerConfig

ARCHITECTURES = {"T5ForConditionalGeneration": "encoder_decoder",
                 "MT5ForConditionalGeneration": "encoder_decoder",
                 "T5EncoderModel": "encoder", "MT5EncoderModel": "encoder"}
_FROM_HF_ACT = {"relu": "relu", "gelu": "gelu", "gelu_python": "gelu", "gelu_new": "gelu_tanh",
                "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh"}
# HF keys with no parameter of ours: the embeddings tied to `shared`, and a bias HF itself ignores.
_IGNORED = re.compile(r"^(encoder|decoder)\.embed_tokens\.weight$|"
                      r"^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$")


def _attention(ours: str, hf: str) -> list[Rule]:
    return [Rule(f"{ours}/query/kernel", f"{hf}.q.weight", QKV),
            Rule(f"{ours}/key/kernel", f"{hf}.k.weight", QKV),
            Rule(f"{ours}/value/kernel", f"{hf}.v.weight", QKV),
            Rule(f"{ours}/out/kernel", f"{hf}.o.weight", OUT)]


def _mlp(ours: str, hf: str, cfg: TransformerConfig) -> list[Rule]:
    wi = ["wi_0", "wi_1"] if cfg.gated_mlp else ["wi"]
    return [Rule(f"{ours}/{w}/kernel", f"{hf}.{w}.weight", LINEAR) for w in wi + ["wo"]]


def rules(cfg: TransformerConfig, kind: str) -> list[Rule]:
    """The key table of T5ForConditionalGeneration (kind "encoder_decoder") or T5EncoderModel."""
    enc, dec = "encoder.block.{i}.layer", "decoder.block.{i}.layer"
    table = [
        Rule("token_embedder/embedding", "shared.weight"),
        Rule("encoder/relpos_bias/rel_embedding",
             "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
        *_attention("encoder/layers/attention", f"{enc}.0.SelfAttention"),
        Rule("encoder/layers/attention_norm/scale", f"{enc}.0.layer_norm.weight"),
        *_mlp("encoder/layers/mlp", f"{enc}.1.DenseReluDense", cfg),
        Rule("encoder/layers/mlp_norm/scale", f"{enc}.1.layer_norm.weight"),
        Rule("encoder/final_norm/scale", "encoder.final_layer_norm.weight"),
    ]
    if kind == "encoder_decoder":
        table += [
            Rule("decoder/relpos_bias/rel_embedding",
                 "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
            *_attention("decoder/layers/self_attention", f"{dec}.0.SelfAttention"),
            Rule("decoder/layers/self_attention_norm/scale", f"{dec}.0.layer_norm.weight"),
            *_attention("decoder/layers/cross_attention", f"{dec}.1.EncDecAttention"),
            Rule("decoder/layers/cross_attention_norm/scale", f"{dec}.1.layer_norm.weight"),
            *_mlp("decoder/layers/mlp", f"{dec}.2.DenseReluDense", cfg),
            Rule("decoder/layers/mlp_norm/scale", f"{dec}.2.layer_norm.weight"),
            Rule("decoder/final_norm/scale", "decoder.final_layer_norm.weight"),
        ]
        if not cfg.tie_embeddings:
            table.append(Rule("lm_head/kernel", "lm_head.weight", LINEAR))
    return table


def _activation(proj: str) -> tuple[str, bool]:
    gated = proj.startswith("gated-")
    act = "gelu_new" if proj == "gated-gelu" else proj.removeprefix("gated-")  # HF's own rule
    if act not in _FROM_HF_ACT:
        raise UserError(f"config.json: feed_forward_proj={proj!r} has no seqpt_jax equivalent; "
                        f"use [gated-]{{{', '.join(sorted(_FROM_HF_ACT))}}}.")
    return _FROM_HF_ACT[act], gated


def _scales_output(hf: dict, arch: str) -> bool:
    """Whether the HF model multiplies decoder outputs by d_model**-0.5 before the lm_head."""
    if arch.startswith("MT5"):
        return False
    return hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True) is not False)


def config_from_hf(hf: dict, arch: str) -> TransformerConfig:
    activation, gated = _activation(hf.get("feed_forward_proj", "relu"))
    layers = hf["num_layers"]
    decoder_layers = hf.get("num_decoder_layers")
    return TransformerConfig(
        family="t5", vocab_size=hf["vocab_size"], d_model=hf["d_model"], num_heads=hf["num_heads"],
        head_dim=hf["d_kv"], d_ff=hf["d_ff"], num_encoder_layers=layers,
        num_decoder_layers=layers if decoder_layers is None else decoder_layers,
        norm="rmsnorm", norm_position="pre", norm_eps=hf.get("layer_norm_epsilon", 1e-6),
        positions="relative", activation=activation, gated_mlp=gated, use_bias=False,
        tie_embeddings=_scales_output(hf, arch),
        relpos_buckets=hf.get("relative_attention_num_buckets", 32),
        relpos_max_distance=hf.get("relative_attention_max_distance", 128),
        pad_id=hf.get("pad_token_id") or 0, dropout_rate=hf.get("dropout_rate", 0.1))


def architecture(cfg: TransformerConfig, kind: str) -> str:
    """The HF class that computes what our model computes, or a UserError saying why none does."""
    if kind not in ("encoder_decoder", "encoder"):
        raise UserError(f"to_hf supports the t5 family as kind 'encoder_decoder' or 'encoder', not {kind!r}.")
    wanted = dict(norm="rmsnorm", norm_position="pre", positions="relative", use_bias=False)
    for field, value in wanted.items():
        if getattr(cfg, field) != value:
            raise UserError(f"TransformerConfig.{field}={getattr(cfg, field)!r} has no T5 equivalent; "
                            f"T5 needs {field}={value!r}.")
    return "T5ForConditionalGeneration" if kind == "encoder_decoder" else "T5EncoderModel"


def _feed_forward_proj(cfg: TransformerConfig) -> str:
    # "gated-gelu" means tanh-GELU to HF; exact GELU is spelled "gelu_python" when gated.
    act = {"relu": "relu", "gelu": "gelu_python" if cfg.gated_mlp else "gelu", "gelu_tanh": "gelu_new"}
    if cfg.gated_mlp and cfg.activation == "gelu_tanh":
        return "gated-gelu"
    return ("gated-" if cfg.gated_mlp else "") + act[cfg.activation]


def config_to_hf(cfg: TransformerConfig, arch: str) -> dict:
    return {
        "architectures": [arch], "model_type": "t5", "vocab_size": cfg.vocab_size,
        "d_model": cfg.d_model, "d_kv": cfg.head_dim, "d_ff": cfg.d_ff, "num_heads": cfg.num_heads,
        "num_layers": cfg.num_encoder_layers, "num_decoder_layers": cfg.num_decoder_layers,
        "relative_attention_num_buckets": cfg.relpos_buckets,
        "relative_attention_max_distance": cfg.relpos_max_distance,
        "dropout_rate": cfg.dropout_rate, "layer_norm_epsilon": cfg.norm_eps,
        "feed_forward_proj": _feed_forward_proj(cfg), "tie_word_embeddings": cfg.tie_embeddings,
        "scale_decoder_outputs": cfg.tie_embeddings, "is_encoder_decoder": True,
        "pad_token_id": cfg.pad_id, "eos_token_id": 1, "decoder_start_token_id": cfg.pad_id,
        "initializer_factor": 1.0, "dtype": "float32",
    }


def state_to_params(state: dict, cfg: TransformerConfig, arch: str, where: str):
    """(config, params); the tying of the config follows what the HF model computes."""
    kind = ARCHITECTURES[arch]
    extra = set()
    if kind == "encoder_decoder":
        shared = state.get("shared.weight")
        lm = state.get("lm_head.weight", shared)
        extra.add("lm_head.weight")
        if cfg.tie_embeddings and lm is not None and not np.array_equal(lm, shared):
            # Scaled, untied (HF unties unequal tensors): fold the scale into our lm_head.
            state = {**state, "lm_head.weight": np.asarray(lm, np.float32) * np.float32(cfg.d_model ** -0.5)}
            cfg = cfg.replace(tie_embeddings=False)
        elif not cfg.tie_embeddings and lm is not None:
            state = {**state, "lm_head.weight": lm}  # unscaled; absent means tied to shared
    params, used = import_state(rules(cfg, kind), state, cfg, where)
    leftover = sorted(k for k in set(state) - used - extra if not _IGNORED.search(k))
    if leftover:
        raise UserError(f"{where} has tensors seqpt_jax does not know ({', '.join(leftover[:3])}); "
                        f"is config.json's architecture right?")
    return cfg, params


def params_to_state(params: dict, cfg: TransformerConfig, arch: str) -> dict:
    return export_params(rules(cfg, ARCHITECTURES[arch]), params, cfg)
