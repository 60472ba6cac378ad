"""Which vocabulary a model was trained with: `vocab.json` in its directory (path + SHA-256).

`seqpt train` records it when a run starts; `seqpt convert --from-hf` records the SentencePiece
model it copies in as `vocab.model`. `resolve` is how `convert` and `finetune` find the
vocabulary without `--vocab`, and why they refuse one whose content differs from the record:
a vocabulary with the same path but other pieces would silently map every id to another word.
"""

from __future__ import annotations

import hashlib
import json
import os

from seqpt_jax.errors import UserError

RECORD = "vocab.json"
COPY = "vocab.model"  # a vocabulary kept inside the model directory (imports, hand-made checkpoints)


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recorded(model_dir: str | os.PathLike) -> dict | None:
    """The record of `model_dir` ({"path", "sha256"}; path absolute), or None."""
    file = os.path.join(model_dir, RECORD)
    if not os.path.isfile(file):
        return None
    try:
        with open(file) as f:
            rec = json.load(f)
        path, digest = rec["path"], rec["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{file} is damaged; delete it and pass --vocab with the vocabulary the model "
                        f"was trained with.") from None
    return {"path": os.path.join(os.path.abspath(model_dir), path), "sha256": digest}


def _check(path: str, rec: dict, model_dir) -> None:
    if sha256(path) != rec["sha256"]:
        raise UserError(f"vocabulary {path} differs from the one {model_dir} was trained with "
                        f"({rec['path']}, sha256 {rec['sha256'][:12]}...); use that one.")


def record(model_dir: str | os.PathLike, vocab_path: str | os.PathLike | None, *, write: bool = True,
           source: str | os.PathLike | None = None) -> None:
    """Records `vocab_path` for `model_dir`; refuses (UserError) a vocabulary whose content differs
    from one already recorded there (a resumed run must keep its vocabulary) or from the one of
    `source`, the model a warm start / growth / extraction starts from. No-op for None or a path
    that is no file (e.g. synthetic data with VOCAB unused). `write=False` only checks (the other
    hosts of a multi-host run)."""
    if vocab_path is None or not os.path.isfile(vocab_path):
        return
    vocab_path = os.path.abspath(vocab_path)
    if source is not None and os.path.isdir(source):
        found = resolve(source)
        if found is not None and sha256(found) != sha256(vocab_path):
            raise UserError(f"vocabulary {vocab_path} differs from the one {source} was trained with "
                            f"({found}); start from it with that vocabulary.")
    rec = recorded(model_dir)
    if rec is not None:
        _check(vocab_path, rec, model_dir)
        if rec["path"] == vocab_path:
            return
    if write:
        write_record(model_dir, vocab_path)


def write_record(model_dir: str | os.PathLike, vocab_path: str | os.PathLike) -> None:
    """Writes the record; a vocabulary inside `model_dir` is recorded by a relative path, so the
    directory can be moved or copied whole."""
    model_dir, vocab_path = os.path.abspath(model_dir), os.path.abspath(vocab_path)
    inside = os.path.commonpath([model_dir, vocab_path]) == model_dir
    rec = {"path": os.path.relpath(vocab_path, model_dir) if inside else vocab_path,
           "sha256": sha256(vocab_path)}
    tmp = os.path.join(model_dir, f".{RECORD}.tmp")
    with open(tmp, "w") as f:
        json.dump(rec, f, indent=2)
    os.replace(tmp, os.path.join(model_dir, RECORD))


def resolve(model_dir: str | os.PathLike, given: str | os.PathLike | None = None) -> str | None:
    """The vocabulary of `model_dir`: `given` (checked against the record), else the recorded
    one (checked that it is still there and unchanged), else `model_dir/vocab.model`, else None."""
    rec = recorded(model_dir)
    if given is not None:
        if not os.path.isfile(given):
            raise UserError(f"vocabulary file {given} not found; pass the SentencePiece model the "
                            f"model was trained with.")
        if rec is not None:
            _check(str(given), rec, model_dir)
        return str(given)
    if rec is not None:
        if not os.path.isfile(rec["path"]):
            raise UserError(f"{model_dir} was trained with vocabulary {rec['path']}, which is gone; "
                            f"pass a copy of it with --vocab.")
        _check(rec["path"], rec, model_dir)
        return rec["path"]
    copy = os.path.join(model_dir, COPY)
    return copy if os.path.isfile(copy) else None


def inherit(source_dir: str | os.PathLike, model_dir: str | os.PathLike) -> None:
    """Gives a checkpoint made from `source_dir` (grown, warm-started, extracted) its vocabulary record."""
    if os.path.isdir(source_dir):
        found = resolve(source_dir)
        if found is not None:
            write_record(model_dir, found)
