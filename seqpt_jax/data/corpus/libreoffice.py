"""LibreOffice help (`libreoffice-help-<lang>`): paragraphs with their inline UI markup.

Upstream writes help pages as .xhp XML: `<paragraph id="par_id...">` with inline `<menuitem>`,
`<keycode>`, `<item type="widget">`...; Debian's packages ship the HTML rendered from it, where
the ids survive (`<p id="par_id...">`) and the inline markup becomes `<span class="menuitem">`.
Both are read into the same `Paragraph`: text pieces, each with the UI entity it belongs to.
A paragraph is keyed by (help file path, par_id), the same in every language, which is what
aligns a translation to its English original. A help file is one item for the split.
"""

from __future__ import annotations

import dataclasses
import html.parser
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from seqpt_jax.data.corpus.clean import Skips, decode, normalize

NAME = "libreoffice"
LICENSE = ("MPL-2.0 (some files Apache-2.0), The Document Foundation and contributors; see "
           "usr/share/doc/libreoffice-help-<lang>/copyright.")
FETCHED = "`apt-get download libreoffice-help-<lang>` and `dpkg -x` (nothing installed)."

# Inline markup -> the entity type it marks (xhp element / item type, or HTML span class).
ENTITY = {"menuitem": "MENU", "keycode": "KEY", "widget": "WIDGET", "literal": "LITERAL",
          "input": "INPUT"}
_PARAGRAPH_ID = re.compile(r"^(par|hd)_id")
_VOID = {"img", "br", "meta", "link", "input", "hr", "source", "wbr", "col", "area"}
_SKIP = {"script", "style", "head", "noscript", "title"}
_SPACE = re.compile(r"\s+")


@dataclasses.dataclass
class Paragraph:
    """Text pieces in order; `entity` is None or (type, index) so that adjacent entities of one
    type stay distinct."""
    par_id: str
    pieces: list[tuple[str, tuple[str, int] | None]]

    @property
    def text(self) -> str:
        return _SPACE.sub(" ", "".join(t for t, _ in self.pieces)).strip()

    @property
    def has_entity(self) -> bool:
        return any(e is not None and t.strip() for t, e in self.pieces)


class _HelpHTML(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[Paragraph] = []
        self.stack: list[tuple[str, str]] = []   # (tag, role): role in paragraph/entity/skip/""
        self.current: Paragraph | None = None
        self.entity: tuple[str, int] | None = None
        self.n_entities = 0
        self.skipping = 0                        # open elements whose text is dropped

    def handle_starttag(self, tag, attrs):
        if tag in _VOID:
            return
        a = dict(attrs)
        role = ""
        if tag in _SKIP or ("hidden" in a and a.get("class")):   # MAC / CALC ... variants
            role = "skip"
        elif self.current is None and _PARAGRAPH_ID.match(a.get("id") or ""):
            self.current = Paragraph(a["id"], [])
            role = "paragraph"
        elif self.current is not None and self.entity is None and a.get("class") in ENTITY:
            self.n_entities += 1
            self.entity = (ENTITY[a["class"]], self.n_entities)
            role = "entity"
        self.skipping += role == "skip"
        self.stack.append((tag, role))

    def handle_endtag(self, tag):
        if tag in _VOID or not any(t == tag for t, _ in self.stack):
            return
        while self.stack:
            t, role = self.stack.pop()
            if role == "skip":
                self.skipping -= 1
            elif role == "entity":
                self.entity = None
            elif role == "paragraph":
                self.paragraphs.append(self.current)
                self.current = None
            if t == tag:
                break

    def handle_data(self, data):
        if self.current is not None and not self.skipping:
            self.current.pieces.append((data, self.entity))


def parse_html(source: str) -> list[Paragraph]:
    parser = _HelpHTML()
    start = source.find('<div id="DisplayArea"')      # skip the navigation chrome
    parser.feed(source[start:] if start >= 0 else source)
    parser.close()
    return parser.paragraphs


def parse_xhp(source: str) -> list[Paragraph]:
    """Paragraphs of an upstream .xhp help file (`<paragraph>` and `<title>` content)."""
    root = ET.fromstring(source)
    paragraphs: list[Paragraph] = []
    counter = [0]

    def walk(el, para: Paragraph, entity):
        tag = el.tag
        if tag in ("caseinline", "comment", "bookmark_value", "embedvar", "image", "alt"):
            return                             # system variants and non-text
        kind = el.get("type") if tag == "item" else tag
        if entity is None and kind in ENTITY:
            counter[0] += 1
            entity = (ENTITY[kind], counter[0])
        if el.text:
            para.pieces.append((el.text, entity))
        for child in el:
            walk(child, para, entity)
            if child.tail:
                # The tail is outside the child, so it takes this element's entity.
                para.pieces.append((child.tail, entity))

    for el in root.iter():
        if el.tag in ("paragraph", "title") and _PARAGRAPH_ID.match(el.get("id") or ""):
            para = Paragraph(el.get("id"), [])
            walk(el, para, None)
            paragraphs.append(para)
    return paragraphs


def help_files(tree: Path) -> dict[str, Path]:
    """Relative page path (`text/shared/01/01010000`) -> file, for one unpacked package."""
    files = {}
    for base in sorted((tree / "usr/share/libreoffice/help").glob("*/text")):
        for path in sorted(base.rglob("*")):
            if path.suffix in (".html", ".xhp") and path.is_file():
                files[str(path.relative_to(base.parent).with_suffix(""))] = path
    return files


def read_help(tree: Path, skips: Skips) -> dict[str, list[Paragraph]]:
    """Help file path -> its paragraphs, the first occurrence of each par_id (rendered pages
    repeat embedded paragraphs) and only paragraphs with text."""
    out = {}
    for rel, path in help_files(tree).items():
        source = decode(path.read_bytes(), skips)
        if source is None:
            continue
        try:
            paragraphs = parse_xhp(source) if path.suffix == ".xhp" else parse_html(source)
        except ET.ParseError:
            skips["libreoffice: malformed .xhp"] += 1
            continue
        seen, kept = set(), []
        for p in paragraphs:
            if p.par_id not in seen and p.text:
                seen.add(p.par_id)
                kept.append(p)
        out[rel] = kept
    return out


_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Words, single punctuation marks, and single Han/kana characters (which have no spaces
    between words; character-level tags as in the Chinese part of WikiANN)."""
    return _TOKEN.findall(text)


def bio(paragraph: Paragraph) -> list[tuple[str, str]]:
    """(token, BIO tag) for a paragraph. Each markup element is one entity, except that
    elements of one type written back to back (`<keycode>Ctrl</keycode><keycode>+F</keycode>`)
    form one entity, as the rendered text shows them."""
    out: list[tuple[str, str]] = []
    last = None
    for text, entity in paragraph.pieces:
        for i, token in enumerate(tokenize(text)):
            if entity is None:
                out.append((token, "O"))
            else:
                inside = i > 0 or (last is not None and last[0] == entity[0])
                out.append((token, ("I-" if inside else "B-") + entity[0]))
        last = entity                          # an untagged piece, even a space, separates
    return out


def document(paragraphs: list[Paragraph], skips: Skips) -> str:
    return normalize("\n".join(p.text for p in paragraphs), skips)


def align(english: dict[str, list[Paragraph]], other: dict[str, list[Paragraph]]):
    """(help file, par_id, English paragraph, translated paragraph) for paragraphs present in
    both, skipping untranslated ones (identical to English)."""
    for rel, paragraphs in other.items():
        en = {p.par_id: p for p in english.get(rel, [])}
        for p in paragraphs:
            e = en.get(p.par_id)
            if e is not None and e.text != p.text:
                yield rel, p.par_id, e, p
