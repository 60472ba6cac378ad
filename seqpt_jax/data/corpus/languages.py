"""The corpus languages: each language's Debian package names per source, and script detection.

A language is named by a short code of our own (`zh`, `pt`); each source spells it its own way
(`Translation-zh_CN`, `manpages-pt-br`, `libreoffice-help-zh-cn`). `None` means Debian has no
such package for that language, which the build reports instead of failing.
"""

from __future__ import annotations

import dataclasses
import unicodedata

from seqpt_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Language:
    code: str
    name: str
    script: str                   # the main script, for reporting; documents are detected
    ddtp: str | None              # apt's Translation-<ddtp> index
    manpages: str | None          # package; its pages live under usr/share/man/<man_dir>/
    man_dir: str | None
    help: str | None              # libreoffice-help-<help> package
    fortunes: str | None          # package


LANGUAGES: dict[str, Language] = {l.code: l for l in [
    Language("en", "English", "Latin", "en", "manpages", "", "en-us", "fortunes"),
    Language("de", "German", "Latin", "de", "manpages-de", "de", "de", "fortunes-de"),
    Language("fr", "French", "Latin", "fr", "manpages-fr", "fr", "fr", None),
    Language("es", "Spanish", "Latin", "es", "manpages-es", "es", "es", "fortunes-es"),
    Language("it", "Italian", "Latin", "it", "manpages-it", "it", "it", "fortunes-it"),
    Language("pt", "Portuguese (Brazil)", "Latin", "pt_BR", "manpages-pt-br", "pt_BR", "pt-br",
             "fortunes-br"),
    Language("nl", "Dutch", "Latin", "nl", "manpages-nl", "nl", "nl", None),
    Language("pl", "Polish", "Latin", "pl", "manpages-pl", "pl", "pl", "fortunes-pl"),
    Language("ru", "Russian", "Cyrillic", "ru", "manpages-ru", "ru", "ru", "fortunes-ru"),
    Language("uk", "Ukrainian", "Cyrillic", "uk", "manpages-uk", "uk", None, None),
    Language("el", "Greek", "Greek", "el", "manpages-el", "el", "el", None),
    Language("ja", "Japanese", "Japanese", "ja", "manpages-ja", "ja", "ja", None),
    Language("zh", "Chinese (Simplified)", "Han", "zh_CN", "manpages-zh", "zh_CN", "zh-cn",
             "fortunes-zh"),
    Language("ko", "Korean", "Hangul", "ko", None, None, "ko", None),
    Language("hi", "Hindi", "Devanagari", None, None, None, "hi", None),
    # Available but not in the default build: pass --langs to add them.
    Language("sv", "Swedish", "Latin", "sv", "manpages-sv", "sv", "sv", None),
    Language("tr", "Turkish", "Latin", "tr", "manpages-tr", "tr", "tr", None),
    Language("vi", "Vietnamese", "Latin", "vi", "manpages-vi", "vi", "vi", None),
    Language("cs", "Czech", "Latin", "cs", "manpages-cs", "cs", "cs", "fortunes-cs"),
]}

DEFAULT_LANGS = ("en", "de", "fr", "es", "it", "pt", "nl", "pl", "ru", "uk", "el", "ja", "zh",
                 "ko", "hi")


def resolve(langs) -> list[Language]:
    """Language objects for codes (a list or a comma string); English always comes first
    because the cross-lingual tasks align every language to it."""
    if langs is None:
        langs = DEFAULT_LANGS
    if isinstance(langs, str):
        langs = langs.split(",")
    codes = [c.strip() for c in langs if c.strip()]
    unknown = [c for c in codes if c not in LANGUAGES]
    if unknown:
        raise UserError(f"unknown language code(s) {', '.join(unknown)}; "
                        f"choose from {', '.join(LANGUAGES)}.")
    codes = ["en"] + [c for c in dict.fromkeys(codes) if c != "en"]
    return [LANGUAGES[c] for c in codes]


def _script_of_char(ch: str) -> str | None:
    if not ch.isalpha():
        return None
    o = ord(ch)
    if 0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF or 0xFF66 <= o <= 0xFF9F:
        return "Kana"
    if 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F:
        return "Hangul"
    if 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF:
        return "Han"
    name = unicodedata.name(ch, "")
    for script in ("LATIN", "CYRILLIC", "GREEK", "DEVANAGARI", "ARABIC", "HEBREW", "THAI"):
        if name.startswith(script):
            return script.title()
    return "Other"


def detect_script(text: str, sample: int = 2000) -> str:
    """The document's dominant script among its letters (first `sample` letters).

    Japanese mixes kana and Han; any kana share above 10% makes it "Japanese", the name the
    corpus reports, so Japanese text is not counted as Chinese."""
    counts: dict[str, int] = {}
    seen = 0
    for ch in text:
        s = _script_of_char(ch)
        if s is None:
            continue
        counts[s] = counts.get(s, 0) + 1
        seen += 1
        if seen >= sample:
            break
    if not counts:
        return "None"
    if counts.get("Kana", 0) > 0.1 * seen:
        return "Japanese"
    return max(counts, key=counts.get)
