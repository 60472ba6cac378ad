"""The tokenizer of an export, and the vocabulary of an import.

Export: the run's SentencePiece model as `tokenizer.model` with a `tokenizer_config.json` for
transformers' `SentencePieceBackend`, which encodes with the sentencepiece library itself, so
ids are those of seqpt_jax by construction. (A `tokenizer.json` Unigram would not be: the
tokenizers library scores paths in float64, sentencepiece in float32, and near-ties then
segment differently; T5Tokenizer in transformers 5 also drops byte fallback.) The 100 extra
ids are added tokens `<extra_id_k>` at id `pieces + 99 - k`, as seqio numbers them; the MLM
mask is the lowest extra id, `<extra_id_99>` (`vocab.TokenInfo.mask_id`).

Import: a Hugging Face directory's SentencePiece model becomes the checkpoint's vocabulary.
T5 and mT5's is used as it is: its raw ids are the model's ids under seqpt_jax's conventions
(pad 0, eos 1, unk 2, extra ids on top). XLM-R's model numbers unk 0, <s> 1, </s> 2, while the
model's embedding rows follow fairseq: <s> 0, <pad> 1, </s> 2, <unk> 3, every other piece one
row above its SentencePiece id, <mask> last. The import rewrites the model proto so that its
piece order is the rows' order (`fairseq_model`): <s>, <pad>, </s> CONTROL, <unk> UNKNOWN, the
pieces with their scores, <mask> CONTROL, with bos/pad/eos/unk ids 0/1/2/3 in its trainer
spec. Encoding is unchanged (same pieces, same scores), only the ids move, so they are the
model's rows with no change to a weight; `data.vocab` reads the special ids from the file.
Export writes it back in XLM-R's layout (`xlmr_model`) with an `XLMRobertaTokenizer` config.
A tokenizer that is not SentencePiece (BERT's WordPiece, byte-level BPE) cannot tokenize as
seqpt_jax does: the import refuses it in one line unless `--weights-only`.
"""

from __future__ import annotations

import json
import os

from seqpt_jax.data import vocab as vocab_lib
from seqpt_jax.errors import UserError

TOKENIZER_MODEL = "tokenizer.model"     # the file name SentencePieceBackend loads
XLMR_MODEL = "sentencepiece.bpe.model"  # the file name XLMRobertaTokenizer converts
# XLM-R's special pieces: (SentencePiece id in its file, id = embedding row in the model).
_FAIRSEQ = {"<s>": (1, 0), "<pad>": (None, 1), "</s>": (2, 2), "<unk>": (0, 3)}
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
    if vocab_lib.own_mask(sp) is not None:
        return _xlmr_files(vocab_path, sp, kind, cfg)
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


def _is_fairseq_source(sp) -> bool:
    """XLM-R's file: unk 0, <s> 1, </s> 2, no pad, no <mask> piece."""
    return ((sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, -1)
            and vocab_lib.own_mask(sp) is None)


def _proto(data: bytes):
    from sentencepiece import sentencepiece_model_pb2 as pb
    proto = pb.ModelProto()
    proto.ParseFromString(data)
    return proto


def fairseq_model(data: bytes) -> bytes:
    """XLM-R's SentencePiece model (bytes) with its pieces in the order of the model's embedding
    rows (fairseq: <s> <pad> </s> <unk>, the pieces, <mask>); see the module docstring."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    piece = pb.ModelProto.SentencePiece
    src = _proto(data)
    out = pb.ModelProto()
    out.CopyFrom(src)
    del out.pieces[:]
    for name, (old, _) in sorted(_FAIRSEQ.items(), key=lambda kv: kv[1][1]):
        new = out.pieces.add()
        if old is not None:
            new.CopyFrom(src.pieces[old])
        new.piece, new.type = name, piece.UNKNOWN if name == "<unk>" else piece.CONTROL
    out.pieces.extend(src.pieces[3:])
    mask = out.pieces.add()
    mask.piece, mask.type, mask.score = vocab_lib.MASK_PIECE, piece.CONTROL, 0.0
    spec = out.trainer_spec
    spec.bos_id, spec.pad_id, spec.eos_id, spec.unk_id = (_FAIRSEQ[k][1] for k in ("<s>", "<pad>", "</s>", "<unk>"))
    spec.bos_piece, spec.pad_piece, spec.eos_piece, spec.unk_piece = "<s>", "<pad>", "</s>", "<unk>"
    spec.vocab_size = len(out.pieces)
    return out.SerializeToString()


def xlmr_model(data: bytes) -> bytes:
    """The inverse of `fairseq_model`: XLM-R's own layout, which `XLMRobertaTokenizer` expects."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    src = _proto(data)
    out = pb.ModelProto()
    out.CopyFrom(src)
    del out.pieces[:]
    by_name = {p.piece: p for p in src.pieces[:4]}
    for name in ("<unk>", "<s>", "</s>"):
        out.pieces.add().CopyFrom(by_name[name])
    out.pieces.extend(src.pieces[4:-1])
    spec = out.trainer_spec
    spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id = 0, 1, 2, -1
    spec.vocab_size = len(out.pieces)
    return out.SerializeToString()


def _xlmr_files(vocab_path: str, sp, kind: str, cfg) -> dict[str, bytes]:
    n = sp.get_piece_size()
    if (sp.bos_id(), sp.pad_id(), sp.eos_id(), sp.unk_id(), vocab_lib.own_mask(sp)) != (0, 1, 2, 3, n - 1):
        raise UserError(f"vocabulary {vocab_path} has its own <mask> but not XLM-R's layout; export with "
                        f"--weights-only.")
    if kind != "encoder_mlm" or cfg.pad_id != 1 or cfg.vocab_size != n:
        raise UserError(f"vocabulary {vocab_path} is XLM-R's ({n} ids) but the model is a {kind} with pad_id "
                        f"{cfg.pad_id} and {cfg.vocab_size} embeddings; export with --weights-only.")
    with open(vocab_path, "rb") as f:
        model = xlmr_model(f.read())
    config = {"tokenizer_class": "XLMRobertaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
              "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>",
              "mask_token": vocab_lib.MASK_PIECE, "model_max_length": cfg.max_length - cfg.position_offset,
              "clean_up_tokenization_spaces": False}
    return {XLMR_MODEL: model, "tokenizer_config.json": json.dumps(config, indent=2).encode()}


def from_hf_dir(path: str, cfg, weights_only: bool = False) -> tuple[bytes | None, str]:
    """(the vocabulary for the model of config `cfg` imported from `path`, as SentencePiece model
    bytes, or None with `weights_only`; a one-line note). A UserError when the directory's
    tokenizer cannot be that vocabulary."""
    if weights_only:
        return None, f"weights only: no vocabulary brought over from {path} (--weights-only)."
    for name in HF_SPM_NAMES:
        file = os.path.join(path, name)
        if os.path.isfile(file):
            break
    else:
        found = [n for n in ("tokenizer.json", "vocab.txt", "vocab.json", "merges.txt")
                 if os.path.isfile(os.path.join(path, n))]
        what = (f"its tokenizer ({', '.join(found)}) is not SentencePiece" if found
                else f"it has no SentencePiece model ({', '.join(HF_SPM_NAMES)})")
        raise UserError(f"{path}: {what}, so seqpt_jax cannot tokenize for this model; pass --weights-only to "
                        f"convert the weights alone (then continue only with a vocabulary whose ids match).")
    sp = vocab_lib.processor(file)
    with open(file, "rb") as f:
        data = f.read()
    n = sp.get_piece_size()
    if _conventions_problem(sp) is None:
        if n + vocab_lib.EXTRA_IDS > cfg.vocab_size:
            raise UserError(f"{file} has {n} pieces, + {vocab_lib.EXTRA_IDS} sentinels is more than the model's "
                            f"{cfg.vocab_size} embeddings, so it is not this model's vocabulary; pass --weights-only.")
        return data, f"vocabulary: {file} ({n} pieces + {vocab_lib.EXTRA_IDS} sentinels)"
    if _is_fairseq_source(sp):
        if cfg.vocab_size != n + 2 or cfg.pad_id != _FAIRSEQ["<pad>"][1]:
            raise UserError(f"{file} is XLM-R's SentencePiece layout ({n} pieces: the model needs {n + 2} "
                            f"embeddings and pad_id 1) but the model has {cfg.vocab_size} and pad_id {cfg.pad_id}; "
                            f"pass --weights-only.")
        return fairseq_model(data), (f"vocabulary: {file} renumbered as the model's rows (XLM-R: <s> 0, <pad> 1, "
                                     f"</s> 2, <unk> 3, {n - 3} pieces, <mask> {n + 1})")
    raise UserError(f"{file} is SentencePiece but {_conventions_problem(sp)}, and is not XLM-R's layout either, "
                    f"so its ids are not the model's; pass --weights-only to convert the weights alone.")


def describe(vocab_path: str, kind: str) -> str:
    """The model card's paragraph on the tokenizer, from the vocabulary file itself."""
    sp = vocab_lib.processor(vocab_path)
    pieces = sp.get_piece_size()
    if vocab_lib.own_mask(sp) is not None:
        return (f"`{XLMR_MODEL}` is XLM-R's SentencePiece model, loaded by `XLMRobertaTokenizer`. seqpt_jax "
                f"trained with the same pieces numbered as the model's rows (`<s>`=0, `<pad>`=1, `</s>`=2, "
                f"`<unk>`=3, `<mask>`={pieces - 1}), which is XLM-R's numbering; its inputs end with `</s>` "
                f"and do not start with `<s>`.")
    byte_fallback = any(sp.is_byte(i) for i in range(pieces))
    mask = f", and `{sentinel(vocab_lib.EXTRA_IDS - 1)}` is the mask token" if kind == "encoder_mlm" else ""
    return (f"`tokenizer.model` is the SentencePiece model the run was trained with ({pieces:,} pieces"
            f"{', byte fallback' if byte_fallback else ''}), loaded by transformers' `SentencePieceBackend`, so "
            f"ids equal seqpt_jax's: `{sp.id_to_piece(0)}`=0, `{sp.id_to_piece(1)}`=1 (appended to every input), "
            f"`{sp.id_to_piece(2)}`=2, and {vocab_lib.EXTRA_IDS} sentinels from `{sentinel(0)}` "
            f"(id {pieces + vocab_lib.EXTRA_IDS - 1}) down to `{sentinel(vocab_lib.EXTRA_IDS - 1)}` (id {pieces})"
            f"{mask}. Write sentinels and the mask token between spaces, as seqio reads them.")
