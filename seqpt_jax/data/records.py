"""Reading the corpus's files robustly: one bad record is skipped and counted, never fatal.

The corpus layout (written by `seqpt corpus build`):
    DIR/text/<lang>.<split>.jsonl                 {"text", "source", "id"}
    DIR/tasks/section/<lang>.<split>.jsonl        {"text", "label", "id"}
    DIR/tasks/ui_tagging/<lang>.<split>.conll     token<TAB>BIO-tag lines, blank between items
    DIR/tasks/translation/en-<lang>.<split>.jsonl {"source", "target", "id"}
    DIR/tasks/synopsis/<lang>.<split>.jsonl       {"source", "target", "id"}
    DIR/stats.json
"""

from __future__ import annotations

import collections
import json
import os
import sys
from pathlib import Path
from typing import Iterator

from seqpt_jax.errors import UserError

SPLITS = ("train", "validation", "test")
# A record longer than this is skipped: one runaway line must not stall or exhaust a worker.
MAX_RECORD_BYTES = 1 << 20


class SkipCounter(collections.Counter):
    """Skipped records by reason; `report()` prints one line when anything was skipped."""

    def report(self, what: str, stream=sys.stderr) -> None:
        if self:
            reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.items()))
            print(f"seqpt: skipped {sum(self.values())} records in {what}: {reasons}", file=stream)


def text_dir(corpus: str | os.PathLike) -> Path:
    """DIR/text, or a UserError saying how to build the corpus."""
    root = Path(corpus).expanduser()
    if not root.is_dir():
        raise UserError(f"corpus directory {root} does not exist; build it with "
                        f"`seqpt corpus build --out {root}` or pass --corpus DIR.")
    text = root / "text"
    if not text.is_dir() or not any(text.glob("*.train.jsonl")):
        raise UserError(f"corpus directory {root} has no text/<lang>.train.jsonl files; "
                        f"build it with `seqpt corpus build --out {root}`.")
    return text


def languages(corpus: str | os.PathLike, split: str = "train") -> list[str]:
    """The languages that have a non-empty `split` file, sorted."""
    return sorted(p.name.split(".")[0] for p in text_dir(corpus).glob(f"*.{split}.jsonl")
                  if p.stat().st_size > 0)


def text_file(corpus: str | os.PathLike, lang: str, split: str) -> Path:
    """The text file of one language and split, or a UserError naming the languages there are."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    path = text_dir(corpus) / f"{lang}.{split}.jsonl"
    if not path.is_file() or path.stat().st_size == 0:
        have = ", ".join(languages(corpus, split)) or "none"
        raise UserError(f"no {split} data for language {lang!r} in {Path(corpus).expanduser()} "
                        f"(languages with data: {have}); drop it from --langs or rebuild the corpus.")
    return path


def _lines(path: Path, skipped: SkipCounter) -> Iterator[bytes]:
    """Lines of a file as bytes; over-long lines are consumed in pieces and skipped."""
    with open(path, "rb") as f:
        while True:
            line = f.readline(MAX_RECORD_BYTES + 1)
            if not line:
                return
            if len(line) > MAX_RECORD_BYTES and not line.endswith(b"\n"):
                skipped["over-long lines"] += 1
                while line and not line.endswith(b"\n"):  # drain the rest of this line
                    line = f.readline(MAX_RECORD_BYTES)
                continue
            if line.strip():
                yield line


def read_jsonl(path: str | os.PathLike, fields: tuple[str, ...],
               skipped: SkipCounter | None = None) -> Iterator[dict]:
    """Records of a JSON-lines file that have every field as a non-empty string.

    Invalid UTF-8, invalid JSON, missing fields and over-long lines are counted in `skipped`.
    """
    skipped = SkipCounter() if skipped is None else skipped
    for line in _lines(Path(path), skipped):
        try:
            record = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            skipped["invalid UTF-8"] += 1
            continue
        except json.JSONDecodeError:
            skipped["invalid JSON"] += 1
            continue
        if not isinstance(record, dict) or not all(
                isinstance(record.get(k), str) and record[k] for k in fields):
            skipped["records missing " + "/".join(fields)] += 1
            continue
        yield record


def read_texts(corpus: str | os.PathLike, lang: str, split: str,
               skipped: SkipCounter | None = None) -> Iterator[str]:
    """The documents of one language and split."""
    for record in read_jsonl(text_file(corpus, lang, split), ("text",), skipped):
        yield record["text"]


def read_conll(path: str | os.PathLike, skipped: SkipCounter | None = None
               ) -> Iterator[tuple[list[str], list[str]]]:
    """(tokens, tags) items of a CoNLL file: `token<whitespace>tag` lines, blank between items."""
    skipped = SkipCounter() if skipped is None else skipped
    tokens, tags = [], []
    with open(path, "rb") as f:
        for raw in f:
            try:
                line = raw.decode("utf-8").rstrip("\n")
            except UnicodeDecodeError:
                skipped["invalid UTF-8"] += 1
                continue
            if not line.strip():
                if tokens:
                    yield tokens, tags
                tokens, tags = [], []
                continue
            if line.startswith("#"):
                continue
            parts = line.rsplit(None, 1)
            if len(parts) != 2:
                skipped["malformed CoNLL lines"] += 1
                continue
            tokens.append(parts[0])
            tags.append(parts[1])
    if tokens:
        yield tokens, tags


def corpus_stats(corpus: str | os.PathLike) -> dict:
    """DIR/stats.json if present (per language and split: documents, characters), else {}."""
    path = Path(corpus).expanduser() / "stats.json"
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def mixing_sizes(corpus: str | os.PathLike, langs) -> dict[str, float]:
    """Per language the size its mixture rate is computed from: the training characters that
    stats.json records, else the training file's bytes."""
    stats = corpus_stats(corpus)
    return {lang: stats.get(lang, {}).get("train", {}).get("characters")
            or text_file(corpus, lang, "train").stat().st_size for lang in langs}
