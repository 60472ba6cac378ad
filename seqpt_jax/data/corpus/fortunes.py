"""Fortune cookies (`fortunes`, `fortunes-<lang>`): `%`-separated quotes, poems and jokes.

Each cookie is one item (group = its text hash), so a split never depends on which file a
quote sits in. ASCII art and rot13-encoded (offensive) files are left out.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from seqpt_jax.data.corpus.clean import Doc, Skips, decode, letter_ratio, normalize

NAME = "fortunes"
LICENSE = ("Per package, as its copyright file states (GPL-2+ for most fortunes-<lang>); "
           "the quotations themselves are collected from many authors.")
FETCHED = "`apt-get download fortunes-<lang>` and `dpkg -x` (nothing installed)."


def cookies(raw: bytes, skips: Skips) -> list[str]:
    """The cookies of one fortune file, decoded one by one so that one bad cookie (invalid
    UTF-8) is skipped and counted rather than losing the file."""
    out = []
    for chunk in raw.replace(b"\r\n", b"\n").split(b"\n%\n"):
        text = decode(chunk.strip(b"%\n"), skips)
        if text is not None and text.strip():
            out.append(text)
    return out


def fortune_files(tree: Path) -> list[Path]:
    out = []
    for path in sorted(tree.glob("usr/share/games/fortunes*/**/*")):
        if (path.is_file() and not path.is_symlink() and path.suffix not in (".dat", ".u8")
                and "off" not in path.relative_to(tree).parts and "asciiart" not in path.name
                and "ascii-art" not in path.name):
            out.append(path)
    return out


def extract(lang: str, tree: Path, skips: Skips) -> list[Doc]:
    docs = []
    for path in fortune_files(tree):
        for cookie in cookies(path.read_bytes(), skips):
            text = normalize(cookie, skips)
            if len(text) < 20 or letter_ratio(text) < 0.5:
                continue
            digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
            docs.append(Doc(lang, NAME, f"fortunes/{path.name}/{digest}", f"fortune:{digest}",
                            text))
    return docs
