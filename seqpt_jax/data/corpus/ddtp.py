"""Debian's package descriptions and their human translations (DDTP), as apt ships them.

The `Packages` index gives each package's `Section`, `Source` and `Description-md5`; each
`Translation-<lang>` index gives `Description-<lang>` keyed by the same md5. The md5 matches a
translation to its English original, so the translated text inherits the package's section
(a label the Debian maintainers chose) and its synopsis line (a summary written by a person).
Packages sharing one description (lib + lib-dev) are one item: the first package by name.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Iterable, Iterator

from seqpt_jax.data.corpus.clean import Doc, Skips, decode, join_lines, normalize

NAME = "ddtp"
LICENSE = ("Package descriptions are part of each package's debian/control and carry that "
           "package's license (DFSG-free, Debian main); translations by the Debian "
           "Description Translation Project, contributed under the same terms as the originals.")
FETCHED = ("`apt-get update` with `-o Acquire::Languages=<langs>` into a private lists directory "
           "(Debian main, binary-amd64 Packages and i18n/Translation-<lang> indexes).")

_BULLET = re.compile(r"^\s*([*+o-]|\d+[.)])\s")


@dataclasses.dataclass(frozen=True)
class PackageInfo:
    package: str
    source: str
    section: str


def stanzas(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """deb822 paragraphs as dicts; continuation lines are kept with their leading space."""
    fields: dict[str, str] = {}
    key = None
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if fields:
                yield fields
            fields, key = {}, None
        elif line[0] in " \t":
            if key is not None:
                fields[key] += "\n" + line
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    if fields:
        yield fields


def split_description(value: str) -> tuple[str, str]:
    """(synopsis, long description) from a Description field: ' .' lines are paragraph
    breaks; lines of a paragraph are rejoined unless they are list items or indented."""
    first, _, rest = value.partition("\n")
    paragraphs, current = [], []
    for line in rest.split("\n"):
        body = line[1:] if line.startswith(" ") else line
        if body.strip() == ".":
            paragraphs.append(current)
            current = []
        elif current and not (_BULLET.match(body) or body.startswith(" ")):
            current[-1] = join_lines(current[-1], body)
        else:
            current.append(body.strip())
    paragraphs.append(current)
    long = "\n\n".join("\n".join(p) for p in paragraphs if any(p))
    return normalize(first), normalize(long)


def _lines(path: Path, skips: Skips) -> Iterator[str]:
    with open(path, "rb") as f:
        for raw in f:
            line = decode(raw, skips)
            if line is not None:
                yield line


def read_packages(path: Path, skips: Skips) -> dict[str, PackageInfo]:
    """Description-md5 -> the first package (by name) carrying that description."""
    info: dict[str, PackageInfo] = {}
    for st in stanzas(_lines(path, skips)):
        md5, pkg = st.get("Description-md5"), st.get("Package")
        if not md5 or not pkg:
            continue
        if md5 in info and info[md5].package <= pkg:
            continue
        source = st.get("Source", pkg).split()[0]
        section = st.get("Section", "unknown").rsplit("/", 1)[-1]   # contrib/net -> net
        info[md5] = PackageInfo(pkg, source, section)
    return info


def read_translations(path: Path, ddtp_code: str, skips: Skips) -> Iterator[tuple[str, str, str]]:
    """(md5, synopsis, long description) for each translated description."""
    field = f"Description-{ddtp_code}"
    for st in stanzas(_lines(path, skips)):
        md5, value = st.get("Description-md5"), st.get(field)
        if md5 and value:
            synopsis, long = split_description(value)
            if synopsis:
                yield md5, synopsis, long


@dataclasses.dataclass
class DdtpResult:
    docs: list[Doc]
    section: list[dict]      # {"text", "label", "id", "group"}
    synopsis: list[dict]     # {"source", "target", "id", "group"}


def extract(lang: str, translation: Path, ddtp_code: str, packages: dict[str, PackageInfo],
            skips: Skips) -> DdtpResult:
    """Documents and task examples for one language's Translation index."""
    out = DdtpResult([], [], [])
    seen = set()
    for md5, synopsis, long in read_translations(translation, ddtp_code, skips):
        info = packages.get(md5)
        if info is None or md5 in seen:        # a translation of a description no longer shipped
            skips["ddtp: no package for Description-md5"] += info is None
            continue
        seen.add(md5)
        item, group = f"ddtp/{info.package}", f"src:{info.source}"
        text = f"{synopsis}\n\n{long}".strip()
        out.docs.append(Doc(lang, NAME, item, group, text))
        out.section.append({"text": text, "label": info.section, "id": item, "group": group})
        if len(long) >= 40:
            out.synopsis.append({"source": long, "target": synopsis, "id": item, "group": group})
    return out
