"""Cleaning shared by every source: text normalization, the by-item split, dedupe, boilerplate.

The split is a pure function of an item's group key (a Debian source package, a man page name,
a help file path), so the same item lands in the same split in every language and every
rebuild, and a downstream test item can never appear in the pre-training (train) text.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import re
import unicodedata

SPLITS = ("train", "validation", "test")
# Percent of items per split: train / validation / test.
SPLIT_PERCENT = (90, 5, 5)
# Lines longer than this are not prose (base64, tables, minified code): dropped and counted.
MAX_LINE_CHARS = 5000

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000]+")
_BLANKS = re.compile(r"\n{3,}")
_NEAR = re.compile(r"[\W\d_]+")


@dataclasses.dataclass
class Doc:
    """One pre-training document: `group` decides the split, `id` names the item."""
    lang: str
    source: str
    id: str
    group: str
    text: str

    @property
    def split(self) -> str:
        return split_of(self.group)


class Skips(collections.Counter):
    """Records skipped, by reason ("invalid UTF-8", "over-long line", ...)."""


def split_of(group: str) -> str:
    """train / validation / test, from a stable hash of the item's group key."""
    bucket = int.from_bytes(hashlib.sha256(group.encode()).digest()[:8], "big") % 100
    if bucket < SPLIT_PERCENT[0]:
        return "train"
    return "validation" if bucket < SPLIT_PERCENT[0] + SPLIT_PERCENT[1] else "test"


def decode(raw: bytes, skips: Skips, what: str = "invalid UTF-8") -> str | None:
    """UTF-8 text, or None (counted) for bytes that are not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        skips[what] += 1
        return None


def normalize(text: str, skips: Skips | None = None) -> str:
    """NFC, no ANSI colour codes or control characters, single spaces, no over-long lines,
    at most one blank line in a row."""
    text = unicodedata.normalize("NFC", _ANSI.sub("", text))
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = []
    for line in text.split("\n"):
        line = _SPACES.sub(" ", line).strip()
        if len(line) > MAX_LINE_CHARS:
            if skips is not None:
                skips["over-long line"] += 1
            continue
        lines.append(line)
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")


def join_lines(left: str, right: str) -> str:
    """Joins two wrapped lines of one paragraph: with a space, except between Chinese or
    Japanese characters, which are written without spaces (a wrap there is not a word gap)."""
    left, right = left.rstrip(), right.lstrip()
    if not left or not right:
        return left + right
    if _CJK.match(left[-1]) and _CJK.match(right[0]):
        return left + right
    return left + " " + right


def letter_ratio(text: str) -> float:
    """Share of letters among non-space characters: low for ASCII art, tables and code."""
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) / len(chars) if chars else 0.0


def near_key(text: str) -> str:
    """Key under which texts differing only in case, digits, punctuation or spacing collide
    (version numbers, list markers, reflowed lines)."""
    return hashlib.blake2b(_NEAR.sub("", text.lower()).encode(), digest_size=16).hexdigest()


def dedupe(docs: list[Doc]) -> tuple[list[Doc], int]:
    """Drops exact and near duplicates within each language. Test items are kept first, then
    validation, then train, so a text shared with a held-out item leaves the training split."""
    order = {s: i for i, s in enumerate(reversed(SPLITS))}
    seen: set[tuple[str, str]] = set()
    kept = []
    for doc in sorted(docs, key=lambda d: (order[d.split], d.source, d.id)):
        key = (doc.lang, near_key(doc.text))
        if key in seen:
            continue
        seen.add(key)
        kept.append(doc)
    return kept, len(docs) - len(kept)


def strip_boilerplate(docs: list[Doc], min_docs: int = 30, min_share: float = 0.02) -> int:
    """Removes lines repeated across many documents of one source and language (translator
    credits, "see also" footers, generated headers). Returns the number of lines removed."""
    counts: collections.Counter = collections.Counter()
    for doc in docs:
        counts.update({line for line in doc.text.split("\n") if line})
    limit = max(min_docs, int(min_share * len(docs)))
    common = {line for line, n in counts.items() if n >= limit}
    if not common:
        return 0
    removed = 0
    for doc in docs:
        lines = doc.text.split("\n")
        keep = [line for line in lines if line not in common]
        removed += len(lines) - len(keep)
        doc.text = _BLANKS.sub("\n\n", "\n".join(keep)).strip()
    return removed
