"""The corpus builder on hand-written fixtures in the real Debian formats; no network."""

from __future__ import annotations

import collections
import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from seqpt_jax import cli
from seqpt_jax.data.corpus import apt, build, clean, ddtp, fortunes, languages, libreoffice, manpages
from seqpt_jax.data.corpus.clean import Doc, Skips
from seqpt_jax.errors import UserError

FIX = Path(__file__).parent / "fixtures" / "corpus"


# ---- DDTP ---------------------------------------------------------------------------------

def test_packages_index_maps_md5_to_first_package_source_and_section():
    info = ddtp.read_packages(FIX / "Packages", Skips())
    zsh = info["b0f7f3a3a7e5d4c2b1a0f9e8d7c6b5a4"]           # shared by zsh and zsh-static
    assert (zsh.package, zsh.source, zsh.section) == ("zsh", "zsh", "shells")
    fig = info["7c3f0b6e2d1a4b5c6d7e8f9a0b1c2d3e"]
    assert (fig.source, fig.section) == ("figlet", "text")    # "figlet (2.2.5-3)" -> figlet
    assert info["6e2b6d5cf4c3b2a1f0e9d8c7b6a5f4e3"].section == "web"   # contrib/web
    assert len(info) == 8


def test_translation_descriptions_are_split_into_synopsis_and_paragraphs():
    rows = {md5: (s, l) for md5, s, l in ddtp.read_translations(FIX / "Translation-en", "en", Skips())}
    synopsis, long = rows["4b2e4fe0c4a6e8d7d1b1c8c0f6a3b2d9"]
    assert synopsis == "configurable talking cow"
    assert long == ("Cowsay (or cowthink) will turn text into happy ASCII cows, with speech "
                    "(or thought) balloons.\n\nThis package contains the program and a set of "
                    "cow files.")


def test_wrapped_cjk_lines_join_without_a_space():
    _, long = ddtp.split_description("合成器\n 解析するツールであ\n るネットワーク。 Wireshark\n is")
    assert long == "解析するツールであるネットワーク。 Wireshark is"


def test_ddtp_extract_labels_translations_by_section_and_counts_orphans():
    info = ddtp.read_packages(FIX / "Packages", Skips())
    skips = Skips()
    en = ddtp.extract("en", FIX / "Translation-en", "en", info, skips)
    assert skips["ddtp: no package for Description-md5"] == 1          # "gone"
    de = ddtp.extract("de", FIX / "Translation-de", "de", info, Skips())
    by_id = {ex["id"]: ex for ex in de.section}
    assert by_id["ddtp/figlet"]["label"] == "text"
    assert by_id["ddtp/figlet"]["text"].startswith("Große ASCII-Banner aus gewöhnlichem Text erzeugen\n\n")
    assert {d.group for d in en.docs} >= {"src:zsh", "src:figlet", "src:hello"}
    syn = {ex["id"]: ex for ex in de.synopsis}
    assert syn["ddtp/zsh"]["target"] == "Shell mit vielen Funktionen"
    assert syn["ddtp/zsh"]["source"].startswith("Zsh ist ein UNIX-Befehlsinterpreter")


# ---- man pages ----------------------------------------------------------------------------

def test_roff_to_text_golden():
    text = manpages.roff_to_text((FIX / "ls.1").read_text())
    assert text == (
        "NAME\n\nls - list directory contents\n\nSYNOPSIS\n\nls [OPTION]... [FILE]...\n\n"
        "DESCRIPTION\n\nList information about the FILEs (the current directory by default). "
        "Sort entries alphabetically if none of -cftuvSUX nor --sort is specified.\n\n"
        "-a, --all do not ignore entries starting with .\n\n"
        "\u2022 The \u201cdefault\u201d size is 1024 bytes \u2014 see du(1).\n\n"
        "line one\n  line two\n\nSEE ALSO\n\ndir(1), vdir(1)")


def test_so_redirects_are_not_pages():
    assert manpages.roff_to_text((FIX / "dir.1").read_text()) is None


# ---- LibreOffice help ---------------------------------------------------------------------

def test_help_html_paragraphs_skip_system_variants_and_keep_ui_markup():
    ps = libreoffice.parse_html((FIX / "help_en.html").read_text())
    assert [p.par_id for p in ps] == ["hd_id701641581066778", "par_id3147762", "par_id211641581251728",
                                      "par_id921641581538352", "par_id11641581906556", "par_id3147762"]
    assert ps[2].text == "Use Ctrl+F to open the Find toolbar."       # MAC "Command" hidden
    assert libreoffice.bio(ps[2]) == [
        ("Use", "O"), ("Ctrl", "B-KEY"), ("+", "I-KEY"), ("F", "I-KEY"), ("to", "O"), ("open", "O"),
        ("the", "O"), ("Find", "B-MENU"), ("toolbar", "O"), (".", "O")]
    assert libreoffice.bio(ps[3]) == [
        ("Choose", "O"), ("Edit", "B-MENU"), ("-", "I-MENU"), ("Find", "I-MENU"), ("&", "I-MENU"),
        ("Replace", "I-MENU"), ("and", "O"), ("click", "O"), ("Find", "B-WIDGET"),
        ("All", "I-WIDGET"), (".", "O")]
    assert not ps[0].has_entity and ps[3].has_entity


def test_xhp_paragraphs_and_bio_golden():
    ps = libreoffice.parse_xhp((FIX / "help.xhp").read_text())
    assert [p.text for p in ps] == [
        "Find Toolbar", "The Find toolbar searches the document.",
        "Use Ctrl+F to open the Find toolbar.",                # caseinline MAC dropped; emph is no entity
        "Choose Edit - Find & Replace and click Find All.",    # <comment> dropped
        "Type =SUM(A1:A3) in cell A4."]
    assert libreoffice.bio(ps[4]) == [
        ("Type", "O"), ("=", "B-INPUT"), ("SUM", "I-INPUT"), ("(", "I-INPUT"), ("A1", "I-INPUT"),
        (":", "I-INPUT"), ("A3", "I-INPUT"), (")", "I-INPUT"), ("in", "O"), ("cell", "O"),
        ("A4", "B-LITERAL"), (".", "O")]
    assert libreoffice.bio(ps[2])[1:4] == [("Ctrl", "B-KEY"), ("+", "I-KEY"), ("F", "I-KEY")]
    assert libreoffice.bio(ps[2])[7] == ("Find", "O")


def test_adjacent_entities_of_different_type_or_with_a_gap_stay_separate():
    p = libreoffice.Paragraph("par_id1", [("Open", ("MENU", 1)), (" ", None), ("View", ("MENU", 2)),
                                          ("Zoom", ("WIDGET", 3))])
    assert [t for _, t in libreoffice.bio(p)] == ["B-MENU", "B-MENU", "B-WIDGET"]


def test_cjk_tokens_are_characters():
    assert libreoffice.tokenize("書式→セル Ctrl+1 키를 누릅니다") == [
        "書", "式", "→", "セ", "ル", "Ctrl", "+", "1", "키를", "누릅니다"]


def test_alignment_by_file_and_par_id_skips_untranslated_golden(tmp_path):
    en = {"text/shared/find": libreoffice.parse_html((FIX / "help_en.html").read_text())}
    de = {"text/shared/find": libreoffice.parse_html((FIX / "help_de.html").read_text())}
    pairs = [(pid, e.text, t.text) for _, pid, e, t in libreoffice.align(en, de)]
    assert pairs == [
        ("hd_id701641581066778", "Find Toolbar", "Suchleiste"),
        ("par_id3147762", "The Find toolbar searches the document.",
         "Die Suchleiste durchsucht das Dokument."),
        ("par_id211641581251728", "Use Ctrl+F to open the Find toolbar.",
         "Verwenden Sie Strg+F, um die Suchleiste zu öffnen."),
        ("par_id921641581538352", "Choose Edit - Find & Replace and click Find All.",
         "Wählen Sie Bearbeiten - Suchen & Ersetzen und klicken Sie auf Alle suchen.")]


# ---- fortunes and cleaning ----------------------------------------------------------------

def test_fortunes_drop_art_count_bad_bytes_and_strip_colours(tmp_path):
    tree = tmp_path / "usr/share/games/fortunes/de"
    tree.mkdir(parents=True)
    shutil.copy(FIX / "fortunes_de", tree / "sprueche")
    (tree / "sprueche.dat").write_bytes(b"\0\0binary index")
    skips = Skips()
    docs = fortunes.extract("de", tmp_path, skips)
    assert skips["invalid UTF-8"] == 1
    texts = [d.text for d in docs]
    assert texts == ["Wer A sagt, muss auch B sagen.\n-- Sprichwort",
                     "Der frühe Vogel fängt den Wurm.",
                     "《静夜思》\n床前明月光，疑是地上霜。举头望明月，低头思故乡。",
                     "Wer A sagt, muss auch B sagen.\n-- Sprichwort"]   # dedupe comes later
    assert docs[0].group == docs[3].group                                  # same cookie, same item


def test_normalize_counts_over_long_lines():
    skips = Skips()
    text = clean.normalize("a\u00a0 b\r\n\n\n\nc\x07\n" + "x" * (clean.MAX_LINE_CHARS + 1), skips)
    assert text == "a b\n\nc" and skips["over-long line"] == 1


def test_split_is_deterministic_and_near_90_5_5():
    groups = [f"src:pkg{i}" for i in range(20000)]
    splits = collections.Counter(clean.split_of(g) for g in groups)
    assert abs(splits["train"] / 20000 - 0.90) < 0.01
    assert abs(splits["test"] / 20000 - 0.05) < 0.01
    assert [clean.split_of(g) for g in groups[:50]] == [clean.split_of(g) for g in groups[:50]]
    assert clean.split_of("src:patch") == "test" and clean.split_of("src:hello") == "train"


def test_dedupe_drops_near_duplicates_and_keeps_the_held_out_copy():
    docs = [Doc("en", "ddtp", "ddtp/a", "src:hello", "Hello, world 1.0!"),     # train
            Doc("en", "ddtp", "ddtp/b", "src:patch", "hello world 2.0"),       # test
            Doc("de", "ddtp", "ddtp/c", "src:hello", "hello world 2.0"),       # other language
            Doc("en", "ddtp", "ddtp/d", "src:hello", "something else")]
    kept, dropped = clean.dedupe(docs)
    assert dropped == 1
    assert sorted(d.id for d in kept) == ["ddtp/b", "ddtp/c", "ddtp/d"]


def test_boilerplate_lines_repeated_across_many_documents_are_removed():
    docs = [Doc("de", "manpages", f"m{i}", f"man:{i}", f"Seite {i}\nÜBERSETZUNG\nText {i}")
            for i in range(40)]
    assert clean.strip_boilerplate(docs) == 40
    assert docs[3].text == "Seite 3\nText 3"


def test_detect_script():
    assert languages.detect_script("Привет, мир") == "Cyrillic"
    assert languages.detect_script("ファイルを開く 文書") == "Japanese"
    assert languages.detect_script("打开文件") == "Han"
    assert languages.detect_script("파일 열기") == "Hangul"
    assert languages.detect_script("फ़ाइल खोलें") == "Devanagari"
    assert languages.detect_script("Γειά σου") == "Greek"
    assert languages.detect_script("hello") == "Latin"


def test_default_languages_cover_twelve_languages_and_five_scripts():
    chosen = languages.resolve(None)
    assert len(chosen) >= 12 and len({l.script for l in chosen}) >= 5
    assert chosen[0].code == "en"


# ---- errors -------------------------------------------------------------------------------

def test_unknown_language_is_one_line_exit_2(capsys, tmp_path):
    assert cli.main(["corpus", "build", "--langs", "en,xx", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown language code(s) xx" in err


def test_unwritable_out_is_a_user_error(tmp_path, capsys):
    (tmp_path / "file").write_text("not a directory")
    assert cli.main(["corpus", "build", "--langs", "en", "de", "--out", str(tmp_path / "file" / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot write the corpus" in err
    with pytest.raises(UserError, match="cannot write the corpus"):
        build.build(tmp_path / "file" / "corpus", langs="en", fetcher=FixtureFetcher(tmp_path))


def test_missing_apt_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.setattr(apt.shutil, "which", lambda tool: None)
    with pytest.raises(UserError, match="apt-get` not found"):
        apt.AptFetcher(tmp_path, ["de"])


def test_failed_apt_update_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.setattr(apt.shutil, "which", lambda tool: "/usr/bin/" + tool)
    failed = subprocess.CompletedProcess([], 100, "", "W: x\nE: Failed to fetch http://deb.debian.org")
    monkeypatch.setattr(apt.AptFetcher, "_run", lambda self, args, cwd=None: failed)
    fetcher = apt.AptFetcher(tmp_path, ["de"])
    with pytest.raises(UserError, match=r"apt-get update .* failed \(E: Failed to fetch"):
        fetcher.packages_index()


def test_unknown_package_is_none_not_an_error(monkeypatch, tmp_path):
    monkeypatch.setattr(apt.shutil, "which", lambda tool: "/usr/bin/" + tool)
    fetcher = apt.AptFetcher(tmp_path, [])
    fetcher._updated = True
    missing = subprocess.CompletedProcess([], 100, "", "E: Unable to locate package manpages-xx")
    monkeypatch.setattr(apt.AptFetcher, "_run", lambda self, args, cwd=None: missing)
    assert fetcher.package_tree("manpages-xx") is None


# ---- end to end ---------------------------------------------------------------------------

class FixtureFetcher:
    """The builder's fetcher over fixture files laid out as unpacked Debian packages."""

    PRINT = {"en": '<p id="par_id999" class="paragraph">Choose <span class="menuitem">File - Print'
                   '</span> to print the current document.</p>',
             "de": '<p id="par_id999" class="paragraph">Wählen Sie <span class="menuitem">Datei - '
                   'Drucken</span>, um das aktuelle Dokument zu drucken.</p>'}

    def __init__(self, root: Path, fail_on: str | None = None):
        self.root, self.fail_on, self.calls = root / "fetched", fail_on, []

    def packages_index(self):
        return FIX / "Packages"

    def translation_index(self, code):
        path = FIX / f"Translation-{code}"
        return path if path.exists() else None

    def package_tree(self, package):
        self.calls.append(package)
        if package == self.fail_on:
            raise UserError(f"apt-get download {package} failed (simulated).")
        tree = self.root / package
        if package in ("manpages", "manpages-de"):
            d = tree / "usr/share/man" / ("man1" if package == "manpages" else "de/man1")
            d.mkdir(parents=True, exist_ok=True)
            name = "ls.1" if package == "manpages" else "ls_de.1"
            (d / "ls.1.gz").write_bytes(gzip.compress((FIX / name).read_bytes()))
            (d / "dir.1.gz").write_bytes(gzip.compress((FIX / "dir.1").read_bytes()))
        elif package in ("libreoffice-help-en-us", "libreoffice-help-de"):
            lang = "en" if package.endswith("en-us") else "de"
            base = tree / "usr/share/libreoffice/help" / ("en-US" if lang == "en" else "de") / "text"
            page = (FIX / f"help_{lang}.html").read_text()
            for rel, html in [("shared/01/01000020.html", page),       # a test-split file
                              ("shared/guide/print.html", page.replace("</div>\n</body>", self.PRINT[lang] + "</div>\n</body>"))]:
                (base / rel).parent.mkdir(parents=True, exist_ok=True)
                (base / rel).write_text(html)
        elif package == "fortunes-de":
            d = tree / "usr/share/games/fortunes/de"
            d.mkdir(parents=True, exist_ok=True)
            shutil.copy(FIX / "fortunes_de", d / "sprueche")
        else:
            return None
        return tree


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _conll(path: Path) -> list[list[tuple[str, str]]]:
    blocks = path.read_text().split("\n\n")
    return [[tuple(line.split("\t")) for line in b.splitlines()] for b in blocks if b.strip()]


@pytest.fixture
def tiny_corpus(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "MIN_SECTION_EXAMPLES", 1)
    out = tmp_path / "corpus"
    build.build(out, langs="en,de", fetcher=FixtureFetcher(tmp_path), progress=False,
                log=lambda msg: None)
    return out


def test_end_to_end_layout_stats_and_sources(tiny_corpus):
    out = tiny_corpus
    for lang in ("en", "de"):
        for split in clean.SPLITS:
            assert (out / "text" / f"{lang}.{split}.jsonl").exists()
    stats = json.loads((out / "stats.json").read_text())
    assert (out / "COMPLETE").exists() and "## libreoffice" in (out / "SOURCES.md").read_text()
    de_train = _jsonl(out / "text" / "de.train.jsonl")
    assert {r["source"] for r in de_train} == {"ddtp", "manpages", "libreoffice", "fortunes"}
    assert stats["languages"]["de"]["train"]["documents"] == len(de_train)
    assert stats["languages"]["de"]["train"]["characters"] == sum(len(r["text"]) for r in de_train)
    assert set(stats["scripts"]) >= {"Latin", "Han"}                   # the Chinese cookie
    assert "fortunes: no package for en (fortunes)" in stats["missing"]
    assert stats["skipped"]["invalid UTF-8"] == 1
    # The same cookie twice is one document.
    assert sum("Wer A sagt" in r["text"] for r in de_train) <= 1
    section = _jsonl(out / "tasks/section/de.test.jsonl")
    assert {(r["id"], r["label"]) for r in section} == {("ddtp/patch", "vcs"), ("ddtp/figlet", "text")}
    assert (out / "tasks/translation/en-de.train.jsonl").exists()
    assert not (out / "tasks/translation/en-en.train.jsonl").exists()
    pairs = _jsonl(out / "tasks/translation/en-de.test.jsonl")
    assert {"source": "Find Toolbar", "target": "Suchleiste",
            "id": "libreoffice/text/shared/01/01000020#hd_id701641581066778"} in pairs
    tagged = _conll(out / "tasks/ui_tagging/de.test.conll")
    assert [("Strg", "B-KEY"), ("+", "I-KEY"), ("F", "I-KEY")] == tagged[1][2:5]
    assert _conll(out / "tasks/ui_tagging/de.train.conll")[0][2:5] == [
        ("Datei", "B-MENU"), ("-", "I-MENU"), ("Drucken", "I-MENU")]


def test_end_to_end_no_held_out_task_item_in_training_text(tiny_corpus):
    out = tiny_corpus
    for lang in ("en", "de"):
        train_text = "\n".join(r["text"] for r in _jsonl(out / "text" / f"{lang}.train.jsonl"))
        held_out = []
        for split in ("validation", "test"):
            held_out += [r["text"] for r in _jsonl(out / f"tasks/section/{lang}.{split}.jsonl")]
            held_out += [r["source"] for r in _jsonl(out / f"tasks/synopsis/{lang}.{split}.jsonl")]
            held_out += [" ".join(t for t, _ in s) for s in _conll(out / f"tasks/ui_tagging/{lang}.{split}.conll")]
            if lang == "de":
                held_out += [r["target"] for r in _jsonl(out / f"tasks/translation/en-de.{split}.jsonl")]
        assert held_out, lang
        for text in held_out:
            assert text not in train_text
        # The held-out help paragraphs were also in a training help file: removed there.
        ids = {r["id"] for r in _jsonl(out / "text" / f"{lang}.train.jsonl")}
        assert "libreoffice/text/shared/guide/print" in ids
    train_ids = {r["id"] for split in ("train",) for r in _jsonl(out / "tasks/section/en.train.jsonl")}
    assert "ddtp/patch" not in train_ids and "ddtp/figlet" not in train_ids


def test_second_run_returns_at_once(tiny_corpus, tmp_path):
    fetcher = FixtureFetcher(tmp_path)
    messages = []
    build.build(tiny_corpus, langs="en,de", fetcher=fetcher, log=messages.append)
    assert messages == [f"corpus already built at {tiny_corpus}"] and fetcher.calls == []
    with pytest.raises(UserError, match="holds a corpus for en,de"):
        build.build(tiny_corpus, langs="en,ja", fetcher=fetcher)


def test_interrupted_build_leaves_no_complete_corpus(tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    with pytest.raises(UserError, match="simulated"):
        build.build(out, langs="en,de", fetcher=FixtureFetcher(tmp_path, fail_on="libreoffice-help-de"),
                    progress=False, log=lambda msg: None)
    assert not out.exists()
    monkeypatch.setattr(build, "MIN_SECTION_EXAMPLES", 1)
    build.build(out, langs="en,de", fetcher=FixtureFetcher(tmp_path), progress=False, log=lambda m: None)
    assert (out / "COMPLETE").exists()
    assert not (tmp_path / ".corpus.partial").exists()


def test_max_mb_caps_each_language(tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    build.build(out, langs="en,de", max_mb=0.002, fetcher=FixtureFetcher(tmp_path), progress=False,
                log=lambda msg: None)
    stats = json.loads((out / "stats.json").read_text())
    for _lang, splits in stats["languages"].items():
        assert 0 < sum(s["characters"] for s in splits.values()) <= 1000


def test_stats_command_prints_the_summary_or_one_line_error(tiny_corpus, tmp_path, capsys):
    assert cli.main(["corpus", "stats", "--out", str(tiny_corpus)]) == 0
    shown = capsys.readouterr().out
    assert "total:" in shown and "task ui_tagging:" in shown and shown.count("\nde ") == 1
    assert cli.main(["corpus", "stats", "--out", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no complete corpus" in err


def test_package_licenses_come_from_the_copyright_file(tmp_path):
    from seqpt_jax.data.corpus import output
    doc = tmp_path / "usr/share/doc/fortunes-de"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
                                   "Files: *\nCopyright: 1999 A\nLicense: GPL-2+\n\nFiles: debian/*\n"
                                   "License: GPL-2+\n\nLicense: BSD-3-clause\n Text.\n")
    assert output.package_licenses(tmp_path, "fortunes-de") == "BSD-3-clause, GPL-2+"
    assert output.package_licenses(tmp_path, "fortunes-xx") == "no copyright file"
