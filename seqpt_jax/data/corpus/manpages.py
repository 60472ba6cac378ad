"""Translated manual pages (`manpages-<lang>`): roff source to plain text.

A small man(7) reader, not a typesetter: requests become paragraph breaks or are dropped,
font and character escapes become the characters they stand for, and filled text is joined
into paragraphs. groff would be exact but costs a process per page, thousands of times.
A page is one item, named `<name>.<section>`, shared by all languages so a page and its
translations always land in the same split.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Iterator

from seqpt_jax.data.corpus.clean import Doc, Skips, decode, join_lines, normalize

NAME = "manpages"
LICENSE = ("Each page keeps its upstream license (mostly GPL-2+, BSD-style, or the Linux "
           "man-pages license); see usr/share/doc/<package>/copyright in each package.")
FETCHED = "`apt-get download manpages-<lang>` and `dpkg -x` (nothing installed)."

_CHARS = {
    "em": "\u2014", "en": "\u2013", "bu": "\u2022", "co": "\u00a9", "rg": "\u00ae",
    "aq": "'", "dq": '"', "lq": "\u201c", "rq": "\u201d", "oq": "\u2018", "cq": "\u2019",
    "hy": "-", "mi": "-", "rs": "\\", "ti": "~", "ha": "^", "ga": "`", "aa": "\u00b4",
    "Fo": "\u00ab", "Fc": "\u00bb", "fo": "\u2039", "fc": "\u203a", "lh": "<", "rh": ">",
    "sq": "\u25a1", "tm": "\u2122", "de": "\u00b0", "+-": "\u00b1", "mu": "\u00d7",
    "<=": "\u2264", ">=": "\u2265", "!=": "\u2260", "->": "\u2192", "<-": "\u2190",
    "ss": "\u00df", "ae": "\u00e6", "oe": "\u0153", "at": "@", "sh": "#", "Do": "$",
}
_ESCAPE = re.compile(
    r"\\(?:f(?:\[[^\]]*\]|\(..|.)"          # font changes
    r"|s[+-]?(?:\d|\(\d\d|\[\d+\])"         # size changes
    r"|[*n](?:\[[^\]]*\]|\(..|.)"           # strings and registers
    r"|\((..)|\[([^\]]*)\]"                 # named characters
    r"|[hvwlLDoXbkzZ](?:'[^']*'|.)"         # motions and drawing, dropped
    r"|(.))")
_SINGLE = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "&": "", "|": "",
           "^": "", "c": "", "%": "", ":": "", "/": "", ",": "", ")": "", "t": " ", "'": "\u00b4",
           "`": "`", ".": "."}
_BREAKS = {"PP", "LP", "P", "TP", "IP", "HP", "TQ", "sp", "br", "RS", "RE", "SH", "SS", "EX",
           "EE", "nf", "fi", "in", "ti", "UR", "UE", "MT", "ME", "SY", "YS", "OP"}
_FONTS = {"B", "I", "SM", "SB", "BR", "RB", "IR", "RI", "BI", "IB"}


def _char(m: re.Match) -> str:
    two, named, single = m.group(1), m.group(2), m.group(3)
    if two is not None:
        return _CHARS.get(two, "")
    if named is not None:
        if re.fullmatch(r"u[0-9A-Fa-f]{4,6}", named):
            return chr(int(named[1:], 16))
        return _CHARS.get(named, "")
    if single is not None:
        return _SINGLE.get(single, single)
    return ""


def unescape(text: str) -> str:
    text = text.split('\\"', 1)[0]          # an in-line comment runs to the end of the line
    return _ESCAPE.sub(_char, text)


def _args(rest: str) -> list[str]:
    return [a[1:-1] if a.startswith('"') else a for a in re.findall(r'"[^"]*"|\S+', rest)]


def roff_to_text(source: str) -> str | None:
    """Plain text of a man(7) page; None for `.so` redirections (the target page is read
    under its own name)."""
    paragraphs: list[str] = []
    current: list[str] = []
    fill = True
    skip_macro = False

    def brk():
        if current:
            text = current[0]
            for line in current[1:]:
                text = join_lines(text, line) if fill else text + "\n" + line
            paragraphs.append(text)
            current.clear()

    for line in source.split("\n"):
        if skip_macro:
            skip_macro = not line.startswith("..")
            continue
        if line[:1] in (".", "'"):
            req, _, rest = line[1:].strip().partition(" ")
            if req.startswith('\\"') or not req:
                continue
            if req == "so":
                return None
            if req in ("de", "de1", "am", "ig"):
                skip_macro = True
                continue
            if req in ("SH", "SS"):
                brk()
                paragraphs.append(unescape(" ".join(_args(rest))).strip())
                continue
            if req in _FONTS:
                args = _args(rest)
                join = " " if req in ("B", "I", "SM", "SB") else ""
                current.append(unescape(join.join(args)))
                continue
            if req in _BREAKS:
                brk()
                fill = {"nf": False, "EX": False, "fi": True, "EE": True}.get(req, fill)
                if req in ("IP",) and rest:
                    tag = unescape(_args(rest)[0]) if _args(rest) else ""
                    if tag.strip():
                        current.append(tag)
                continue
            continue                           # TH, ie/if/el, nr, ds, ad, na, ... are layout
        text = unescape(line)
        if text.strip() or not fill:
            current.append(text.strip() if fill else text.rstrip())
        else:
            brk()
    brk()
    return "\n\n".join(p for p in paragraphs if p.strip())


def man_pages(tree: Path, man_dir: str) -> Iterator[tuple[str, Path]]:
    """(page name like `ls.1`, file) for each page of one language in an unpacked package."""
    base = tree / "usr/share/man" / man_dir if man_dir else tree / "usr/share/man"
    for path in sorted(base.glob("man*/*")):
        if path.is_file() and not path.is_symlink():
            name = path.name[:-3] if path.name.endswith(".gz") else path.name
            yield name, path


def extract(lang: str, tree: Path, man_dir: str, skips: Skips) -> list[Doc]:
    docs = []
    for name, path in man_pages(tree, man_dir):
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError):
                skips["manpages: corrupt gzip"] += 1
                continue
        source = decode(raw, skips)
        if source is None:
            continue
        text = roff_to_text(source)
        if text is None:
            continue
        text = normalize(text, skips)
        if text:
            docs.append(Doc(lang, NAME, f"manpages/{name}", f"man:{name}", text))
    return docs
