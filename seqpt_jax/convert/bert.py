"""BERT (`BertForMaskedLM`) and XLM-R (`XLMRobertaForMaskedLM`) <-> our `bert` family.

The two differ only in names (`bert.` + `cls.predictions.` vs `roberta.` + `lm_head.`) and in
positions: XLM-R counts them from `pad_token_id + 1`, our `position_offset`.
"""

from __future__ import annotations

import re

import numpy as np

from seqpt_jax.convert.rules import COPY, LINEAR, OUT, QKV, QKV_BIAS, Rule, export_params, import_state
from seqpt_jax.errors import UserError
from seqpt_jax.models import TransformerConfig

# HF architecture -> the prefix of its encoder weights. All are kind "encoder_mlm".
ARCHITECTURES = {"BertForMaskedLM": "bert", "XLMRobertaForMaskedLM": "roberta",
                 "RobertaForMaskedLM": "roberta"}
_MODEL_TYPE = {"BertForMaskedLM": "bert", "XLMRobertaForMaskedLM": "xlm-roberta"}
_FROM_HF_ACT = {"gelu": "gelu", "gelu_python": "gelu", "gelu_new": "gelu_tanh",
                "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh", "relu": "relu"}
_TO_HF_ACT = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}
_HEAD = {  # MLM head module names per prefix
    "bert": dict(dense="cls.predictions.transform.dense", norm="cls.predictions.transform.LayerNorm",
                 bias="cls.predictions.bias", decoder="cls.predictions.decoder"),
    "roberta": dict(dense="lm_head.dense", norm="lm_head.layer_norm", bias="lm_head.bias",
                    decoder="lm_head.decoder"),
}
# HF keys with no parameter of ours: buffers, the NSP head and pooler of pre-training checkpoints,
# and the decoder bias that HF ties to the head's bias.
_IGNORED = re.compile(r"(\.position_ids|\.token_type_ids|\.decoder\.bias)$|"
                      r"^(bert|roberta)\.pooler\.|^cls\.seq_relationship\.")


def _dense(ours: str, hf: str, kernel=LINEAR, bias=COPY) -> list[Rule]:
    return [Rule(f"{ours}/kernel", f"{hf}.weight", kernel), Rule(f"{ours}/bias", f"{hf}.bias", bias)]


def _norm(ours: str, hf: str) -> list[Rule]:
    return [Rule(f"{ours}/scale", f"{hf}.weight"), Rule(f"{ours}/bias", f"{hf}.bias")]


def rules(prefix: str, cfg: TransformerConfig) -> list[Rule]:
    """The key table of `{prefix}ForMaskedLM` (the output kernel only when untied)."""
    emb, layer, head = f"{prefix}.embeddings", f"{prefix}.encoder.layer.{{i}}", _HEAD[prefix]
    attn = "encoder/layers/attention"
    table = [
        Rule("token_embedder/embedding", f"{emb}.word_embeddings.weight"),
        Rule("position_embedder/embedding", f"{emb}.position_embeddings.weight"),
        *_norm("embedding_norm", f"{emb}.LayerNorm"),
        *_dense(f"{attn}/query", f"{layer}.attention.self.query", QKV, QKV_BIAS),
        *_dense(f"{attn}/key", f"{layer}.attention.self.key", QKV, QKV_BIAS),
        *_dense(f"{attn}/value", f"{layer}.attention.self.value", QKV, QKV_BIAS),
        *_dense(f"{attn}/out", f"{layer}.attention.output.dense", OUT),
        *_norm("encoder/layers/attention_norm", f"{layer}.attention.output.LayerNorm"),
        *_dense("encoder/layers/mlp/wi", f"{layer}.intermediate.dense"),
        *_dense("encoder/layers/mlp/wo", f"{layer}.output.dense"),
        *_norm("encoder/layers/mlp_norm", f"{layer}.output.LayerNorm"),
        *_dense("mlm_head/transform", head["dense"]),
        *_norm("mlm_head/transform_norm", head["norm"]),
        Rule("mlm_head/output_bias", head["bias"]),
    ]
    if cfg.type_vocab_size:
        table.append(Rule("token_type_embedder/embedding", f"{emb}.token_type_embeddings.weight", COPY))
    if not cfg.tie_embeddings:
        table.append(Rule("mlm_head/output/kernel", f"{head['decoder']}.weight", LINEAR))
    return table


def config_from_hf(hf: dict, arch: str) -> TransformerConfig:
    heads, width = hf["num_attention_heads"], hf["hidden_size"]
    if width % heads:
        raise UserError(f"config.json: hidden_size={width} is not divisible by num_attention_heads={heads}; fix the config.")
    act = hf.get("hidden_act", "gelu")
    if act not in _FROM_HF_ACT:
        raise UserError(f"config.json: hidden_act={act!r} has no seqpt_jax equivalent; use one of {sorted(_FROM_HF_ACT)}.")
    if ARCHITECTURES[arch] == "roberta" and _FROM_HF_ACT[act] != "gelu":
        raise UserError(f"config.json: hidden_act={act!r}, but XLM-R's MLM head always uses exact GELU; "
                        f"seqpt_jax uses one activation for both, so only hidden_act='gelu' converts.")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise UserError(f"config.json: position_embedding_type={hf['position_embedding_type']!r} is not "
                        f"supported; only 'absolute' positions convert.")
    roberta = ARCHITECTURES[arch] == "roberta"
    pad = hf.get("pad_token_id", 1 if roberta else 0)
    pad = 0 if pad is None else pad
    return TransformerConfig(
        family="bert", vocab_size=hf["vocab_size"], d_model=width, num_heads=heads,
        head_dim=width // heads, d_ff=hf["intermediate_size"],
        num_encoder_layers=hf["num_hidden_layers"], num_decoder_layers=hf["num_hidden_layers"],
        norm="layernorm", norm_position="post", norm_eps=hf.get("layer_norm_eps", 1e-12),
        positions="absolute", activation=_FROM_HF_ACT[act], gated_mlp=False, use_bias=True,
        tie_embeddings=hf.get("tie_word_embeddings", True) is not False,
        max_length=hf.get("max_position_embeddings", 512),
        position_offset=pad + 1 if roberta else 0, type_vocab_size=hf.get("type_vocab_size", 2),
        pad_id=pad, dropout_rate=hf.get("hidden_dropout_prob", 0.1))


def architecture(cfg: TransformerConfig, kind: str) -> str:
    """The HF class that computes what our model computes, or a UserError saying why none does."""
    if kind != "encoder_mlm":
        raise UserError(f"to_hf supports the bert family as kind 'encoder_mlm' (BertForMaskedLM / "
                        f"XLMRobertaForMaskedLM), not {kind!r}.")
    wanted = dict(norm="layernorm", norm_position="post", positions="absolute", gated_mlp=False, use_bias=True)
    for field, value in wanted.items():
        if getattr(cfg, field) != value:
            raise UserError(f"TransformerConfig.{field}={getattr(cfg, field)!r} has no BERT equivalent; "
                            f"BERT/XLM-R need {field}={value!r}.")
    if cfg.position_offset == 0:
        return "BertForMaskedLM"
    if cfg.position_offset == cfg.pad_id + 1:
        if cfg.activation != "gelu":
            raise UserError(f"TransformerConfig.activation={cfg.activation!r}: XLM-R's MLM head always "
                            f"uses exact GELU; set activation='gelu' to export as XLMRobertaForMaskedLM.")
        return "XLMRobertaForMaskedLM"
    raise UserError(f"TransformerConfig.position_offset={cfg.position_offset} matches neither BERT (0) "
                    f"nor XLM-R (pad_id + 1 = {cfg.pad_id + 1}); set one of those.")


def config_to_hf(cfg: TransformerConfig, arch: str) -> dict:
    return {
        "architectures": [arch], "model_type": _MODEL_TYPE[arch], "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model, "num_hidden_layers": cfg.num_encoder_layers,
        "num_attention_heads": cfg.num_heads, "intermediate_size": cfg.d_ff,
        "hidden_act": _TO_HF_ACT[cfg.activation], "hidden_dropout_prob": cfg.dropout_rate,
        "attention_probs_dropout_prob": cfg.dropout_rate, "max_position_embeddings": cfg.max_length,
        # HF always has a token-type table; one zero row adds nothing when we have none.
        "type_vocab_size": max(cfg.type_vocab_size, 1), "layer_norm_eps": cfg.norm_eps,
        "pad_token_id": cfg.pad_id, "tie_word_embeddings": cfg.tie_embeddings,
        "position_embedding_type": "absolute", "initializer_range": 0.02, "dtype": "float32",
    }


def state_to_params(state: dict, cfg: TransformerConfig, arch: str, where: str):
    """(config, params): an output matrix that differs from the embedding unties the config."""
    prefix = ARCHITECTURES[arch]
    state = {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)): v
             for k, v in state.items()}  # names of TF-era checkpoints
    head = _HEAD[prefix]
    if f"{head['decoder']}.bias" in state:  # the bias HF's forward adds (`bias` is unused when untied)
        state[head["bias"]] = state[f"{head['decoder']}.bias"]
    decoder = state.get(f"{head['decoder']}.weight")
    if cfg.tie_embeddings and decoder is not None and not np.array_equal(
            decoder, state.get(f"{prefix}.embeddings.word_embeddings.weight")):
        cfg = cfg.replace(tie_embeddings=False)  # transformers does not tie these either
    params, used = import_state(rules(prefix, cfg), state, cfg, where)
    leftover = sorted(k for k in set(state) - used if not _IGNORED.search(k)
                      and k != f"{head['decoder']}.weight")
    if leftover:
        raise UserError(f"{where} has tensors seqpt_jax does not know ({', '.join(leftover[:3])}); "
                        f"is config.json's architecture right?")
    return cfg, params


def params_to_state(params: dict, cfg: TransformerConfig, arch: str) -> dict:
    prefix = ARCHITECTURES[arch]
    state = export_params(rules(prefix, cfg), params, cfg)
    state[f"{_HEAD[prefix]['decoder']}.bias"] = state[_HEAD[prefix]["bias"]]  # what the forward adds
    if not cfg.type_vocab_size:
        state[f"{prefix}.embeddings.token_type_embeddings.weight"] = np.zeros((1, cfg.d_model), np.float32)
    return state
