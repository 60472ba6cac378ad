"""Downstream task files: reading, validating and turning them into fixed-length arrays.

Three formats, each a user can write by hand:
  classification  JSONL, `text` (or `text_a` + `text_b`) and `label` per line;
  tagging         CoNLL-style: one token per line, its tag in the last tab-separated column,
                  a blank line between sentences (BIO or plain tags);
  generation      JSONL, `source` and `target` per line.
A bad file ends in one `UserError` line naming the file, the line and the fix. Inputs longer
than the model length are cut and *counted* (`Encoded.truncated`), so results say so.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

import numpy as np

from seqpt_jax.errors import UserError

KINDS = ("classification", "tagging", "generation")


# ------------------------------------------------------------------------------ reading


def _open_lines(path: str, split: str) -> list[str]:
    if not os.path.isfile(path):
        raise UserError(f"{split} file {path} not found; pass an existing file with --{split}.")
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def _json_records(path: str, split: str) -> list[tuple[int, dict]]:
    out = []
    for n, line in enumerate(_open_lines(path, split), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: not valid JSON ({e.msg}); write one JSON object per line.") from None
        if not isinstance(rec, dict):
            raise UserError(f"{path}:{n}: expected a JSON object per line, got {type(rec).__name__}.")
        out.append((n, rec))
    return out


def _field(path: str, n: int, rec: dict, name: str, hint: str) -> str:
    if name not in rec or rec[name] is None:
        raise UserError(f"{path}:{n}: no {name!r} field; {hint}")
    return str(rec[name])


def read_classification(path: str, split: str) -> list[dict]:
    """[{text_a, text_b (or None), label}]."""
    examples = []
    for n, rec in _json_records(path, split):
        hint = "classification lines need 'text' (or 'text_a' and 'text_b') and 'label'."
        if "text" in rec:
            a, b = _field(path, n, rec, "text", hint), None
        else:
            a, b = _field(path, n, rec, "text_a", hint), _field(path, n, rec, "text_b", hint)
        examples.append({"text_a": a, "text_b": b, "label": _field(path, n, rec, "label", hint)})
    return _nonempty(examples, path, split)


def read_tagging(path: str, split: str) -> list[dict]:
    """[{words, tags}] from a CoNLL-style file (token first column, tag last column)."""
    examples, words, tags = [], [], []
    for n, line in enumerate(_open_lines(path, split) + [""], 1):
        if not line.strip() or line.startswith("-DOCSTART-"):
            if words:
                examples.append({"words": words, "tags": tags})
                words, tags = [], []
            continue
        cols = line.split("\t")
        if len(cols) < 2 or not cols[0] or not cols[-1].strip():
            raise UserError(f"{path}:{n}: expected 'token<TAB>...<TAB>tag', got {line[:40]!r}; "
                            "separate the tag from the token with a tab.")
        words.append(cols[0])
        tags.append(cols[-1].strip())
    return _nonempty(examples, path, split)


def read_generation(path: str, split: str) -> list[dict]:
    """[{source, target}]."""
    hint = "generation lines need 'source' and 'target'."
    examples = [{"source": _field(path, n, rec, "source", hint), "target": _field(path, n, rec, "target", hint)}
                for n, rec in _json_records(path, split)]
    return _nonempty(examples, path, split)


READERS = {"classification": read_classification, "tagging": read_tagging, "generation": read_generation}


def read(kind: str, path: str, split: str) -> list[dict]:
    if kind not in READERS:
        raise UserError(f"unknown task kind {kind!r}; use one of {', '.join(KINDS)}.")
    return READERS[kind](path, split)


def _nonempty(examples: list, path: str, split: str) -> list:
    if not examples:
        raise UserError(f"{split} file {path} has no examples; fill it or leave --{split} out.")
    return examples


# ------------------------------------------------------------------------------ labels


def label_list(kind: str, train: Sequence[dict]) -> list[str]:
    """The label (or tag) inventory, taken from the training split only."""
    if kind == "classification":
        return sorted({ex["label"] for ex in train})
    if kind == "tagging":
        return sorted({t for ex in train for t in ex["tags"]})
    return []


def check_labels(kind: str, examples: Sequence[dict], labels: Sequence[str], where: str) -> None:
    """Every label of an evaluation split must be one the model could predict."""
    known = set(labels)
    seen = ({ex["label"] for ex in examples} if kind == "classification"
            else {t for ex in examples for t in ex["tags"]} if kind == "tagging" else set())
    unknown = sorted(seen - known)
    if unknown:
        raise UserError(f"{where} has label(s) {', '.join(map(repr, unknown[:5]))} that the training "
                        f"split never uses (known: {', '.join(labels[:10])}); add training examples "
                        "for them or drop those examples.")


# ------------------------------------------------------------------------------ encoding


@dataclasses.dataclass
class Encoded:
    """Model inputs for one split as numpy arrays, plus how many examples were cut."""

    arrays: dict
    truncated: int = 0
    word_index: list | None = None  # tagging: per example, the token position of each kept word


def _ids(vocab, text: str) -> list[int]:
    return list(vocab.encode(text))


def _pad(rows: list[list[int]], length: int, pad: int = 0) -> np.ndarray:
    out = np.full((len(rows), length), pad, np.int32)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def encode_classification(vocab, examples, labels, length: int, eos_id: int = 1) -> Encoded:
    index = {l: i for i, l in enumerate(labels)}
    tokens, types, cut = [], [], 0
    for ex in examples:
        a = _ids(vocab, ex["text_a"]) + [eos_id]
        b = _ids(vocab, ex["text_b"]) + [eos_id] if ex["text_b"] is not None else []
        if len(a) + len(b) > length:
            cut += 1
            keep_b = min(len(b), length // 2)
            a = a[:length - keep_b - 1] + [eos_id]
            b = b[:keep_b - 1] + [eos_id] if keep_b else []
        tokens.append(a + b)
        types.append([0] * len(a) + [1] * len(b))
    arrays = {"encoder_input_tokens": _pad(tokens, length), "encoder_token_type_ids": _pad(types, length),
              "labels": np.array([index.get(ex["label"], -1) for ex in examples], np.int32)}
    return Encoded(arrays, cut)


def _unspaced(vocab, pieces: list[int]) -> list[int]:
    """A word's pieces without SentencePiece's word-boundary mark "▁" in front: the bare "▁"
    piece is dropped, and a "▁x" piece becomes "x" where the vocabulary has it. In a script
    written without spaces (Japanese) the pre-trained model never saw a mark between words."""
    sp = vocab.tokenizer
    first = sp.id_to_piece(pieces[0]) if pieces else ""
    if first == "\u2581" and len(pieces) > 1:
        return pieces[1:]
    if first.startswith("\u2581") and len(first) > 1 and sp.piece_to_id(first[1:]) != sp.unk_id():
        return [sp.piece_to_id(first[1:])] + pieces[1:]
    return pieces


def encode_tagging(vocab, examples, labels, length: int, eos_id: int = 1, spaced: bool = True) -> Encoded:
    """First-subword labelling: a word's tag sits on its first piece; other pieces weigh 0.
    `spaced=False`: words written without spaces between them (`_unspaced`)."""
    index = {l: i for i, l in enumerate(labels)}
    tokens, targets, weights, positions, cut = [], [], [], [], 0
    for ex in examples:
        ids, tgt, w, pos = [], [], [], []
        for word, tag in zip(ex["words"], ex["tags"]):
            pieces = _ids(vocab, word) if spaced else _unspaced(vocab, _ids(vocab, word))
            pieces = pieces or [vocab.unk_id if hasattr(vocab, "unk_id") else 2]
            if len(ids) + len(pieces) > length - 1:
                cut += 1
                break
            pos.append(len(ids))
            ids += pieces
            tgt += [index.get(tag, 0)] + [0] * (len(pieces) - 1)
            w += [1] + [0] * (len(pieces) - 1)
        tokens.append(ids + [eos_id])
        targets.append(tgt)
        weights.append(w)
        positions.append(pos)
    arrays = {"encoder_input_tokens": _pad(tokens, length), "labels": _pad(targets, length),
              "label_weights": _pad(weights, length)}
    return Encoded(arrays, cut, positions)


def encode_generation(vocab, examples, length: int, target_length: int, eos_id: int = 1) -> Encoded:
    src, tgt, cut = [], [], 0
    for ex in examples:
        s, t = _ids(vocab, ex["source"]) + [eos_id], _ids(vocab, ex["target"]) + [eos_id]
        if len(s) > length or len(t) > target_length:
            cut += 1
        src.append(s[:length - 1] + [eos_id] if len(s) > length else s)
        tgt.append(t[:target_length])
    targets = _pad(tgt, target_length)
    arrays = {"encoder_input_tokens": _pad(src, length), "decoder_target_tokens": targets,
              "decoder_input_tokens": np.pad(targets[:, :-1], ((0, 0), (1, 0))),
              "decoder_loss_weights": (targets != 0).astype(np.int32)}
    return Encoded(arrays, cut)
