"""The tokenizer of an export, and the vocabulary of an import.

Export: the run's SentencePiece model as `tokenizer.model` with a `tokenizer_config.json` for
transformers' `SentencePieceBackend`, which encodes with the sentencepiece library itself, so
ids are those of seqpt_jax by construction. (A `tokenizer.json` Unigram would not be: the
tokenizers library scores paths in float64, sentencepiece in float32, and near-ties then
segment differently; T5Tokenizer in transformers 5 also drops byte fallback.) The 100 extra
ids are added tokens `<extra_id_k>` at id `pieces + 99 - k`, as seqio numbers them; the MLM
mask is the lowest extra id, `<extra_id_99>` (`vocab.TokenInfo.mask_id`).

Import: a Hugging Face directory's SentencePiece model is usable when its raw ids are the
model's ids under seqpt_jax's conventions (pad 0, eos 1, unk 2, extra ids on top), as in T5
and mT5; XLM-R's fairseq numbering (<s> 0, <pad> 1, </s> 2, <unk> 3, pieces shifted by one)
is not.
"""

from __future__ import annotations

import json
import os

from seqpt_jax.data import vocab as vocab_lib
from seqpt_jax.errors import UserError

TOKENIZER_MODEL = "tokenizer.model"     # the file name SentencePieceBackend loads
HF_SPM_NAMES = ("spiece.model", "tokenizer.model", "sentencepiece.bpe.model", "source.spm")


def sentinel(k: int) -> str:
    return f"<extra_id_{k}>"


def _conventions_problem(sp) -> str | None:
    want = {vocab_lib.PAD_ID: "pad", vocab_lib.EOS_ID: "eos", vocab_lib.UNK_ID: "unk"}
    have = {"pad": sp.pad_id(), "eos": sp.eos_id(), "unk": sp.unk_id()}
    wrong = [f"{name}={have[name]}" for i, name in want.items() if have[name] != i]
    if wrong or sp.bos_id() in want:
        return (f"its ids put {', '.join(wrong) or f'bos={sp.bos_id()}'} where seqpt_jax needs pad=0, "
                f"eos=1, unk=2")
    return None


def hf_files(vocab_path: str, kind: str, cfg) -> dict[str, bytes]:
    """{file name: content} of the tokenizer for a model of `kind` and `cfg` trained with `vocab_path`."""
    sp = vocab_lib.processor(vocab_path)
    pieces, extra = sp.get_piece_size(), vocab_lib.EXTRA_IDS
    problem = _conventions_problem(sp)
    if problem:
        raise UserError(f"vocabulary {vocab_path}: {problem}; export with the vocabulary the model was trained with.")
    if cfg.pad_id != vocab_lib.PAD_ID:
        raise UserError(f"the model's pad_id is {cfg.pad_id} but vocabulary {vocab_path} pads with "
                        f"{vocab_lib.PAD_ID}; its tokenizer would not match the model (export with --weights-only).")
    if pieces + extra > cfg.vocab_size:
        raise UserError(f"vocabulary {vocab_path} has {pieces + extra} ids (with {extra} sentinels) but the model "
                        f"has {cfg.vocab_size} embeddings; it is not the vocabulary this model was trained with.")
    special = {"content": "", "lstrip": False, "rstrip": False, "normalized": False, "single_word": False,
               "special": True}
    added = {str(i): {**special, "content": sp.id_to_piece(i)} for i in (0, 1, 2)}
    added.update({str(pieces + extra - 1 - k): {**special, "content": sentinel(k)} for k in range(extra)})
    config = {
        "tokenizer_class": "SentencePieceBackend",
        "backend": "sentencepiece",
        "legacy": True,                    # encode each text span as sentencepiece does, dummy prefix included
        "special_tokens_pattern": "eos",   # append </s>, as seqpt_jax's inputs end
        "pad_token": sp.id_to_piece(vocab_lib.PAD_ID), "eos_token": sp.id_to_piece(vocab_lib.EOS_ID),
        "unk_token": sp.id_to_piece(vocab_lib.UNK_ID), "bos_token": None,
        "extra_special_tokens": [sentinel(k) for k in range(extra)],
        "added_tokens_decoder": added,
        "clean_up_tokenization_spaces": False,
        "sp_model_kwargs": {},
    }
    if kind == "encoder_mlm":
        config["mask_token"] = sentinel(extra - 1)
    if cfg.positions == "absolute":
        config["model_max_length"] = cfg.max_length
    with open(vocab_path, "rb") as f:
        model = f.read()
    return {TOKENIZER_MODEL: model, "tokenizer_config.json": json.dumps(config, indent=2).encode()}


def from_hf_dir(path: str, vocab_size: int) -> tuple[str | None, str]:
    """(SentencePiece model file usable as this model's vocabulary or None, a one-line note)."""
    for name in HF_SPM_NAMES:
        file = os.path.join(path, name)
        if os.path.isfile(file):
            break
    else:
        found = [n for n in ("tokenizer.json", "vocab.txt", "vocab.json") if os.path.isfile(os.path.join(path, n))]
        what = f"its tokenizer ({', '.join(found)}) is not SentencePiece" if found else "it has no tokenizer files"
        return None, (f"{path}: {what}, so no vocabulary was brought over; train one with `seqpt vocab train` "
                      f"(ids will differ from the model's: continue pre-training only with a matching vocabulary).")
    try:
        sp = vocab_lib.processor(file)
    except UserError as e:
        return None, f"{file}: not used as the vocabulary: {e}"
    problem = _conventions_problem(sp)
    if problem:
        return None, (f"{file} is SentencePiece but {problem}, so it cannot be used as the vocabulary; the "
                      f"weights were converted, train a vocabulary with `seqpt vocab train` to continue.")
    if sp.get_piece_size() + vocab_lib.EXTRA_IDS > vocab_size:
        return None, (f"{file} has {sp.get_piece_size()} pieces, + {vocab_lib.EXTRA_IDS} sentinels is more than "
                      f"the model's {vocab_size} embeddings; not used as the vocabulary.")
    return file, f"vocabulary: {file} ({sp.get_piece_size()} pieces + {vocab_lib.EXTRA_IDS} sentinels)"


def describe(vocab_path: str, kind: str) -> str:
    """The model card's paragraph on the tokenizer, from the vocabulary file itself."""
    sp = vocab_lib.processor(vocab_path)
    pieces = sp.get_piece_size()
    byte_fallback = any(sp.is_byte(i) for i in range(pieces))
    mask = f", and `{sentinel(vocab_lib.EXTRA_IDS - 1)}` is the mask token" if kind == "encoder_mlm" else ""
    return (f"`tokenizer.model` is the SentencePiece model the run was trained with ({pieces:,} pieces"
            f"{', byte fallback' if byte_fallback else ''}), loaded by transformers' `SentencePieceBackend`, so "
            f"ids equal seqpt_jax's: `{sp.id_to_piece(0)}`=0, `{sp.id_to_piece(1)}`=1 (appended to every input), "
            f"`{sp.id_to_piece(2)}`=2, and {vocab_lib.EXTRA_IDS} sentinels from `{sentinel(0)}` "
            f"(id {pieces + vocab_lib.EXTRA_IDS - 1}) down to `{sentinel(vocab_lib.EXTRA_IDS - 1)}` (id {pieces})"
            f"{mask}. Write sentinels and the mask token between spaces, as seqio reads them.")
