"""Whole-directory hand-offs: a seqpt_jax model -> a Hugging Face directory that
`AutoTokenizer` / `AutoModelFor...` load as they are, and back (weights and vocabulary).

    convert.export("runs/s2s", "hf/s2s")          # weights + tokenizer + model card (README.md)
    convert.import_hf("hf/mt5", "ckpt/mt5")       # params checkpoint + vocab.model when SentencePiece
"""

from __future__ import annotations

import os

from seqpt_jax.errors import UserError


def export(source: str, out: str, *, vocab: str | None = None, overwrite: bool = False,
           weights_only: bool = False) -> tuple[str, str, dict]:
    """Exports the MODEL_DIR or params checkpoint `source`; returns (path, HF class, what it holds).

    The vocabulary is the one `source` records (`data.vocab_record`), or `vocab` (checked
    against the record when there is one)."""
    from seqpt_jax import convert, models
    from seqpt_jax.convert import card, tokenizer
    from seqpt_jax.data import vocab_record
    from seqpt_jax.params_io import load, read_model

    read_model(source)  # one clear line when `source` is not a model directory
    vocab_path = None if weights_only else vocab_record.resolve(source, vocab)
    if not weights_only and vocab_path is None:
        raise UserError(f"{source} records no vocabulary; pass --vocab SPM_MODEL (the one it was trained "
                        f"with) or --weights-only for config.json + model.safetensors alone.")
    kind, cfg, params = load(source)
    arch = convert.hf_architecture(kind, cfg)
    extra = {}
    if not weights_only:
        extra.update(tokenizer.hf_files(vocab_path, kind, cfg))
        extra["README.md"] = card.render(source, kind, cfg, arch, models.count_params(params),
                                         os.path.abspath(vocab_path)).encode()
    path = convert.to_hf(kind, cfg, params, out, overwrite=overwrite, extra=extra)
    return path, arch, {"kind": kind, "cfg": cfg, "params": models.count_params(params), "vocab": vocab_path}


def import_hf(hf_dir: str, out: str, *, overwrite: bool = False, weights_only: bool = False) -> tuple[str, dict]:
    """Converts the HF model in `hf_dir` to a params checkpoint at `out`; its SentencePiece model
    (XLM-R's renumbered as the model's rows: `tokenizer.fairseq_model`) is written in as
    `vocab.model` and recorded. A tokenizer that cannot be the vocabulary is a UserError unless
    `weights_only`. Returns (path, info) with info["note"] the line saying which vocabulary came."""
    from seqpt_jax import convert, params_io
    from seqpt_jax.convert import tokenizer
    from seqpt_jax.data import vocab_record
    from seqpt_jax.models import count_params

    kind, cfg, params = convert.from_hf(hf_dir)
    spm_model, note = tokenizer.from_hf_dir(hf_dir, cfg, weights_only)
    path = params_io.save_params(out, kind, cfg, params, overwrite=overwrite)
    if spm_model is not None:
        copy = os.path.join(path, vocab_record.COPY)
        with open(copy, "wb") as f:
            f.write(spm_model)
        vocab_record.write_record(path, copy)
    return path, {"kind": kind, "cfg": cfg, "params": count_params(params), "note": note,
                  "vocab": spm_model is not None}
