"""Building the corpus: fetch each source per language, clean, split by item, dedupe, write.

The order matters for the no-leak guarantee: held-out (validation/test) task examples are
collected first, their paragraphs are removed from training documents, and dedupe keeps the
held-out copy of any text that also occurs in training.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import sys
import time
from pathlib import Path

from tqdm import tqdm

from seqpt_jax.data.corpus import ddtp, fortunes, libreoffice, manpages, output
from seqpt_jax.data.corpus.apt import AptFetcher, Fetcher
from seqpt_jax.data.corpus.clean import Doc, Skips, dedupe, near_key, split_of, strip_boilerplate
from seqpt_jax.data.corpus.languages import Language, resolve
from seqpt_jax.errors import UserError

SOURCES = (ddtp, manpages, libreoffice, fortunes)
FORMAT_VERSION = 1
MIN_DOC_CHARS = 20
# A section label needs this many English training examples to be a class of the task.
MIN_SECTION_EXAMPLES = 20


class _Collector:
    """Everything one build gathers before writing."""

    def __init__(self):
        self.docs: list[Doc] = []
        self.tasks: dict[str, dict[tuple[str, str], list]] = collections.defaultdict(
            lambda: collections.defaultdict(list))
        self.skips = Skips()
        self.missing: list[str] = []
        self.packages: dict[str, list[str]] = collections.defaultdict(list)
        self.held_out_paragraphs: dict[str, set[str]] = collections.defaultdict(set)

    def add_example(self, task: str, name: str, group: str, row, key: str) -> None:
        self.tasks[task][(name, split_of(group))].append((key, row))


def _ddtp(c: _Collector, fetcher: Fetcher, langs: list[Language], bar) -> None:
    packages = ddtp.read_packages(fetcher.packages_index(), c.skips)
    c.packages["ddtp"].append("Packages (binary-amd64)")
    for lang in langs:
        bar.set_postfix_str(f"ddtp {lang.code}")
        path = fetcher.translation_index(lang.ddtp) if lang.ddtp else None
        if path is None:
            c.missing.append(f"ddtp: no Translation index for {lang.code}")
            bar.update()
            continue
        c.packages["ddtp"].append(f"Translation-{lang.ddtp}")
        result = ddtp.extract(lang.code, path, lang.ddtp, packages, c.skips)
        c.docs += result.docs
        for ex in result.section:
            c.add_example("section", lang.code, ex["group"],
                          {k: ex[k] for k in ("text", "label", "id")}, near_key(ex["text"]))
        for ex in result.synopsis:
            c.add_example("synopsis", lang.code, ex["group"],
                          {k: ex[k] for k in ("source", "target", "id")}, near_key(ex["source"]))
        bar.update()


def _tree(c: _Collector, fetcher: Fetcher, source: str, package: str | None, lang: str):
    tree = fetcher.package_tree(package) if package else None
    if tree is None:
        c.missing.append(f"{source}: no package for {lang}" + (f" ({package})" if package else ""))
    else:
        c.packages[source].append(f"{package}: {output.package_licenses(tree, package)}")
    return tree


def _libreoffice(c: _Collector, fetcher: Fetcher, langs: list[Language], bar) -> None:
    english = None
    for lang in langs:                         # English comes first (languages.resolve)
        bar.set_postfix_str(f"libreoffice {lang.code}")
        package = f"libreoffice-help-{lang.help}" if lang.help else None
        tree = _tree(c, fetcher, libreoffice.NAME, package, lang.code)
        if tree is None:
            bar.update()
            continue
        files = libreoffice.read_help(tree, c.skips)
        if lang.code == "en":
            english = files
        elif english is not None:              # untranslated paragraphs are English text
            files = {rel: _translated(ps, english.get(rel, [])) for rel, ps in files.items()}
            for rel, pid, en, tr in libreoffice.align(english, files):
                group = f"help:{rel}"
                c.add_example("translation", f"en-{lang.code}", group,
                              {"source": en.text, "target": tr.text, "id": f"libreoffice/{rel}#{pid}"},
                              near_key(en.text + "\t" + tr.text))
        for rel, paragraphs in files.items():
            group = f"help:{rel}"
            for p in paragraphs:
                if p.has_entity:
                    c.add_example("ui_tagging", lang.code, group, libreoffice.bio(p), near_key(p.text))
            if split_of(group) != "train":
                c.held_out_paragraphs[lang.code].update(p.text for p in paragraphs)
            c.docs.append(Doc(lang.code, libreoffice.NAME, f"libreoffice/{rel}", group,
                              libreoffice.document(paragraphs, c.skips)))
        bar.update()


def _translated(paragraphs, english) -> list:
    same = {p.text for p in english}
    return [p for p in paragraphs if p.text not in same]


def _per_package(c: _Collector, fetcher: Fetcher, langs: list[Language], bar, module) -> None:
    for lang in langs:
        bar.set_postfix_str(f"{module.NAME} {lang.code}")
        if module is manpages:
            tree = _tree(c, fetcher, module.NAME, lang.manpages, lang.code)
            docs = manpages.extract(lang.code, tree, lang.man_dir, c.skips) if tree else []
        else:
            tree = _tree(c, fetcher, module.NAME, lang.fortunes, lang.code)
            docs = fortunes.extract(lang.code, tree, c.skips) if tree else []
        if tree is not None and not docs:
            c.missing.append(f"{module.NAME}: package for {lang.code} yielded no text")
        c.docs += docs
        bar.update()


def _unleak(c: _Collector) -> None:
    """Removes held-out help paragraphs from training documents that repeat them."""
    for doc in c.docs:
        held = c.held_out_paragraphs.get(doc.lang)
        if doc.source == libreoffice.NAME and held and doc.split == "train":
            doc.text = "\n".join(line for line in doc.text.split("\n") if line not in held)


def _dedupe_tasks(c: _Collector) -> dict[str, dict[tuple[str, str], list]]:
    """Per task file: drops repeated examples, held-out splits first (so a training example
    never repeats a test one), and section labels too rare to learn."""
    out = {}
    for task, files in c.tasks.items():
        seen: dict[str, set[str]] = collections.defaultdict(set)
        kept: dict[tuple[str, str], list] = {}
        names = sorted({name for name, _ in files})
        for split, name in itertools.product(("test", "validation", "train"), names):
            rows = []
            for key, row in files.get((name, split), []):
                if key not in seen[name]:
                    seen[name].add(key)
                    rows.append(row)
            kept[(name, split)] = rows
        out[task] = kept
    if "section" in out:
        counts = collections.Counter(r["label"] for r in out["section"].get(("en", "train"), []))
        labels = {l for l, n in counts.items() if n >= MIN_SECTION_EXAMPLES}
        out["section"] = {k: [r for r in rows if r["label"] in labels] for k, rows in out["section"].items()}
    return out


def _cap(docs: list[Doc], max_mb: float | None, n_langs: int) -> list[Doc]:
    """At most max_mb / n_langs MB per language, dropping documents in a fixed hash order."""
    if not max_mb:
        return docs
    budget = max_mb * 1e6 / n_langs
    used: dict[str, float] = collections.defaultdict(float)
    kept = []
    for doc in sorted(docs, key=lambda d: hashlib.sha256(d.id.encode()).digest()):
        size = len(doc.text.encode("utf-8"))
        if used[doc.lang] + size <= budget:
            used[doc.lang] += size
            kept.append(doc)
    return kept


def build(out: str | Path, langs=None, max_mb: float | None = None, *,
          cache_dir: str | Path | None = None, fetcher: Fetcher | None = None,
          progress: bool = True, log=print) -> Path:
    """Builds the corpus into `out` (see output.py for the layout). Returns `out`; returns at
    once when `out` already holds a complete corpus."""
    out = Path(out).expanduser()
    chosen = resolve(langs)
    codes = [l.code for l in chosen]
    if output.is_complete(out):
        built = output.read_marker(out)
        if langs is not None and sorted(built.get("langs", [])) != sorted(codes):
            raise UserError(f"{out} holds a corpus for {','.join(built.get('langs', []))}, not "
                            f"{','.join(codes)}; pass another --out or delete it to rebuild.")
        log(f"corpus already built at {out}")
        return out
    if max_mb is not None and max_mb <= 0:
        raise UserError(f"--max-mb must be positive, got {max_mb}.")
    start = time.time()
    tmp = output.staging_dir(out)
    if fetcher is None:
        cache = Path(cache_dir) if cache_dir else out.parent / "downloads"
        fetcher = AptFetcher(cache, [l.ddtp for l in chosen if l.ddtp])
    c = _Collector()
    with tqdm(total=4 * len(chosen), desc="corpus", unit="step", disable=not progress,
              file=sys.stderr) as bar:
        _ddtp(c, fetcher, chosen, bar)
        _per_package(c, fetcher, chosen, bar, manpages)
        _libreoffice(c, fetcher, chosen, bar)
        _per_package(c, fetcher, chosen, bar, fortunes)
    for msg in c.missing:
        log(f"note: {msg}")

    _unleak(c)
    boiler = 0
    for (_lang, source), docs in _by(c.docs, lambda d: (d.lang, d.source)).items():
        if source in (manpages.NAME, libreoffice.NAME):
            boiler += strip_boilerplate(docs)
    docs = [d for d in c.docs if len(d.text) >= MIN_DOC_CHARS]
    docs, n_dupes = dedupe(docs)
    docs = _cap(docs, max_mb, len(chosen))
    missing_langs = sorted(set(codes) - {d.lang for d in docs})
    if missing_langs:
        log(f"note: no text at all for {', '.join(missing_langs)}")

    stats = output.write_text(tmp, docs)
    tasks = _dedupe_tasks(c)
    stats["tasks"] = output.write_tasks(tmp, tasks)
    stats["section_labels"] = sorted({r["label"] for rows in tasks.get("section", {}).values() for r in rows})
    stats["sources"] = {lang: dict(collections.Counter(d.source for d in ds))
                        for lang, ds in sorted(_by(docs, lambda d: d.lang).items())}
    stats["removed"] = {"duplicates": n_dupes, "boilerplate_lines": boiler,
                        "short_documents": len(c.docs) - len(docs) - n_dupes if not max_mb else None}
    stats["skipped"] = dict(c.skips)
    stats["missing"] = c.missing
    stats["build_seconds"] = round(time.time() - start, 1)
    output.write_sources(tmp, SOURCES, c.packages)
    output.finish(tmp, out, stats, {"format": FORMAT_VERSION, "langs": codes, "max_mb": max_mb,
                                    "built": time.strftime("%Y-%m-%dT%H:%M:%S")})
    if c.skips:
        log("skipped records: " + ", ".join(f"{n} {why}" for why, n in sorted(c.skips.items())))
    return out


def _by(items, key) -> dict:
    groups = collections.defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return groups
