"""Hugging Face transformers <-> seqpt_jax parameter conversion, both ways, local files only.

    kind, cfg, params = convert.from_hf("path/to/hf_dir")   # kind: encoder_mlm | encoder_decoder | encoder
    convert.to_hf(kind, cfg, params, "path/to/out_dir")      # config.json + model.safetensors

Whole directories, with the tokenizer and a model card from the run's records (`seqpt convert`):
`convert.export.export(run_dir, out_dir)` and `convert.export.import_hf(hf_dir, ckpt_dir)`.

Supported: BertForMaskedLM, XLMRobertaForMaskedLM (and RobertaForMaskedLM) <-> EncoderMLM;
T5ForConditionalGeneration, MT5ForConditionalGeneration <-> EncoderDecoder; T5EncoderModel,
MT5EncoderModel <-> Encoder. The key tables live in `bert.py` and `t5.py`.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from seqpt_jax import models
from seqpt_jax.convert import bert, t5
from seqpt_jax.convert.hf_files import read_config, read_state, write_dir
from seqpt_jax.errors import UserError
from seqpt_jax.models import TransformerConfig

# HF architecture -> (family module, our model kind).
ARCHITECTURES = {
    **{arch: (bert, "encoder_mlm") for arch in bert.ARCHITECTURES},
    **{arch: (t5, kind) for arch, kind in t5.ARCHITECTURES.items()},
}
_FAMILIES = {"bert": bert, "t5": t5}


def _architecture(hf: dict, path: str) -> str:
    archs = hf.get("architectures") or []
    if len(archs) != 1 or archs[0] not in ARCHITECTURES:
        raise UserError(f"{path}/config.json names architectures={archs}; seqpt_jax converts exactly "
                        f"one of {', '.join(ARCHITECTURES)}.")
    return archs[0]


@functools.lru_cache(maxsize=16)
def _shapes(kind: str, cfg: TransformerConfig) -> dict:
    shapes = models.param_shapes(models.build(kind, cfg))
    return {jax.tree_util.keystr(p): x.shape for p, x in jax.tree_util.tree_flatten_with_path(shapes)[0]}


def _check_tree(params, kind: str, cfg: TransformerConfig, what: str):
    """`params` must have exactly the structure and shapes of `models.build(kind, cfg)`."""
    want = _shapes(kind, cfg)
    have = {jax.tree_util.keystr(p): np.shape(x) for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
    for key in sorted(want.keys() | have.keys()):
        if want.get(key) != have.get(key):
            raise UserError(f"{what}: parameter {key} has shape {have.get(key, 'missing')}, the {kind} model "
                            f"of its config needs {want.get(key, 'none')}; the weights and config disagree.")


def from_hf(path: str) -> tuple[str, TransformerConfig, dict]:
    """(kind, config, params as float32 numpy) of the HF model saved in the local dir `path`."""
    hf = read_config(path)
    arch = _architecture(hf, path)
    family, kind = ARCHITECTURES[arch]
    cfg = family.config_from_hf(hf, arch)
    cfg, params = family.state_to_params(read_state(path), cfg, arch, path)
    _check_tree(params, kind, cfg, path)
    return kind, cfg, params


def hf_architecture(kind: str, cfg: TransformerConfig) -> str:
    """The transformers class `to_hf` writes for this model (UserError if none computes the same)."""
    return _FAMILIES[cfg.family].architecture(cfg, kind)


def to_hf(kind: str, cfg: TransformerConfig, params, path: str, *, overwrite: bool = False,
          extra: dict[str, bytes] | None = None) -> str:
    """Writes `config.json` + `model.safetensors` that transformers loads with no missing keys
    (+ `extra` files in the same directory: see `export` for the tokenizer and model card)."""
    if kind not in models.KINDS:
        raise UserError(f"Unknown model kind {kind!r}; use one of {', '.join(models.KINDS)}.")
    family = _FAMILIES[cfg.family]
    arch = family.architecture(cfg, kind)
    params = jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), params)
    _check_tree(params, kind, cfg, "to_hf")
    return write_dir(path, family.config_to_hf(cfg, arch), family.params_to_state(params, cfg, arch),
                     overwrite=overwrite, extra=extra)


__all__ = ["ARCHITECTURES", "from_hf", "to_hf", "hf_architecture"]
