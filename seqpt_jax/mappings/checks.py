"""Validation shared by the mappings: model kind of a param tree, config compatibility.

Every mistake ends in one `UserError` line that names the dimension or field and the fix.
"""

from __future__ import annotations

import jax
from flax import traverse_util

from seqpt_jax import models
from seqpt_jax.errors import UserError
from seqpt_jax.models import TransformerConfig

# Fields that the mappings never change: the grown model keeps the source's.
STRUCTURE = ("family", "vocab_size", "norm", "norm_position", "positions", "activation",
             "gated_mlp", "use_bias", "tie_embeddings", "relpos_buckets", "relpos_max_distance",
             "max_length", "position_offset", "type_vocab_size", "pad_id")
# Fields width/depth growth may increase.
WIDTH = ("d_model", "num_heads", "head_dim", "d_ff")
DEPTH = ("num_encoder_layers", "num_decoder_layers")
# Everything the encoder's function depends on (warm start and extraction keep it).
ENCODER = STRUCTURE + WIDTH + ("num_encoder_layers", "norm_eps")


def flat(tree) -> dict:
    return traverse_util.flatten_dict(dict(tree))


def unflat(d: dict) -> dict:
    return traverse_util.unflatten_dict(d)


def model_kind(params) -> str:
    """"encoder_decoder" | "encoder_mlm" | "encoder", read from the tree's top-level keys."""
    keys = set(params)
    if "decoder" in keys:
        return "encoder_decoder"
    if "mlm_head" in keys:
        return "encoder_mlm"
    if "encoder" in keys:
        return "encoder"
    if keys == {"discriminator", "generator"}:
        raise UserError("this is an ELECTRA model; extract its discriminator first: seqpt extract --electra "
                        "MODEL_DIR --out DIR (mappings.electra_to_encoder), then use DIR.")
    raise UserError(f"params with top-level keys {sorted(keys)} are not a seqpt_jax model "
                    f"(expected 'encoder', plus 'mlm_head' or 'decoder').")


def check_params(params, cfg: TransformerConfig, kind: str, what: str = "source") -> None:
    """The tree has exactly the shapes `cfg` gives for `kind`."""
    want = flat(models.param_shapes(models.build(kind, cfg)))
    got = flat(params)
    for path in sorted(set(want) | set(got)):
        name = "/".join(path)
        if path not in got:
            raise UserError(f"{what} params lack {name}, which its config needs; "
                            f"pass the config the params were trained with.")
        if path not in want:
            raise UserError(f"{what} params have {name}, which its config does not; "
                            f"pass the config the params were trained with.")
        if tuple(got[path].shape) != tuple(want[path].shape):
            raise UserError(f"{what} param {name} has shape {tuple(got[path].shape)} but its config "
                            f"gives {tuple(want[path].shape)}; pass the config the params were trained with.")


def check_same(src: TransformerConfig, dst: TransformerConfig, fields, why: str) -> None:
    for field in fields:
        a, b = getattr(src, field), getattr(dst, field)
        if a != b:
            raise UserError(f"{field} differs (source {a!r}, target {b!r}); {why} — "
                            f"set the target's {field}={a!r}.")


def check_growth(src: TransformerConfig, dst: TransformerConfig, kind: str) -> None:
    check_same(src, dst, STRUCTURE, "growth keeps the source's architecture and vocabulary")
    fields = WIDTH + (DEPTH if kind == "encoder_decoder" else DEPTH[:1])
    for field in fields:
        a, b = getattr(src, field), getattr(dst, field)
        if b < a:
            raise UserError(f"cannot grow to a smaller model: target {field}={b} < source {field}={a}; "
                            f"choose a target with {field} >= {a}.")


def is_array(x) -> bool:
    return isinstance(x, (jax.Array, jax.ShapeDtypeStruct)) or hasattr(x, "shape")
