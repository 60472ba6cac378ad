"""Writing a built corpus: the on-disk layout, stats.json, SOURCES.md and the completion marker.

Layout (other modules read exactly this):
    text/<lang>.<split>.jsonl                  {"text", "source", "id", "script"}
    tasks/section/<lang>.<split>.jsonl         {"text", "label", "id"}
    tasks/ui_tagging/<lang>.<split>.conll      token<TAB>BIO tag, blank line between paragraphs
    tasks/translation/en-<lang>.<split>.jsonl  {"source", "target", "id"}
    tasks/synopsis/<lang>.<split>.jsonl        {"source", "target", "id"}
    stats.json, SOURCES.md, COMPLETE (written last)
Everything is written into a temporary sibling directory that is renamed into place only when
complete, so an interrupted build never looks finished.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
from pathlib import Path

from seqpt_jax.data.corpus.clean import SPLITS, Doc
from seqpt_jax.data.corpus.languages import detect_script
from seqpt_jax.errors import UserError

MARKER = "COMPLETE"


def is_complete(out: Path) -> bool:
    return (out / MARKER).is_file()


def read_marker(out: Path) -> dict:
    return json.loads((out / MARKER).read_text())


def staging_dir(out: Path) -> Path:
    """A fresh temporary directory beside `out` (same filesystem, so the rename is atomic)."""
    tmp = out.parent / f".{out.name}.partial"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        (tmp / ".probe").write_text("ok")
        (tmp / ".probe").unlink()
    except OSError as e:
        raise UserError(f"cannot write the corpus to {out} ({e.strerror}); pass --out DIR "
                        "on a writable disk.") from None
    return tmp


def publish(tmp: Path, out: Path) -> None:
    """Moves the finished staging dir to `out`, replacing an incomplete earlier build."""
    if out.exists():
        if any(out.iterdir()) and not (out / "text").exists():
            raise UserError(f"{out} exists and is not a corpus directory; pass another --out.")
        shutil.rmtree(out)
    os.replace(tmp, out)


def _jsonl(path: Path, rows) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_text(root: Path, docs: list[Doc]) -> dict:
    """text/<lang>.<split>.jsonl; returns {lang: {split: {documents, characters}}} and script
    totals."""
    (root / "text").mkdir()
    by_file = collections.defaultdict(list)
    for doc in docs:
        by_file[(doc.lang, doc.split)].append(doc)
    langs = sorted({d.lang for d in docs})
    per_lang = {lang: {s: {"documents": 0, "characters": 0} for s in SPLITS} for lang in langs}
    scripts: dict[str, dict[str, int]] = collections.defaultdict(lambda: {"documents": 0, "characters": 0})
    n_bytes = 0
    for lang in langs:
        for split in SPLITS:
            rows = []
            for doc in sorted(by_file[(lang, split)], key=lambda d: (d.source, d.id)):
                script = detect_script(doc.text)
                rows.append({"text": doc.text, "source": doc.source, "id": doc.id,
                             "script": script})
                per_lang[lang][split]["documents"] += 1
                per_lang[lang][split]["characters"] += len(doc.text)
                scripts[script]["documents"] += 1
                scripts[script]["characters"] += len(doc.text)
                n_bytes += len(doc.text.encode("utf-8"))
            _jsonl(root / "text" / f"{lang}.{split}.jsonl", rows)
    return {"languages": per_lang, "scripts": dict(scripts), "total_mb": round(n_bytes / 1e6, 2)}


def write_tasks(root: Path, tasks: dict[str, dict[tuple[str, str], list]]) -> dict:
    """tasks/<task>/<name>.<split>.<ext>; `tasks[task][(name, split)]` is a list of rows
    (dicts for jsonl; lists of (token, tag) for ui_tagging). Returns counts per file."""
    counts: dict[str, dict[str, int]] = {}
    for task, files in tasks.items():
        (root / "tasks" / task).mkdir(parents=True)
        counts[task] = {}
        for (name, split), rows in sorted(files.items()):
            if task == "ui_tagging":
                path = root / "tasks" / task / f"{name}.{split}.conll"
                with open(path, "w", encoding="utf-8") as f:
                    for sentence in rows:
                        f.write("".join(f"{tok}\t{tag}\n" for tok, tag in sentence) + "\n")
            else:
                _jsonl(root / "tasks" / task / f"{name}.{split}.jsonl", rows)
            counts[task][f"{name}.{split}"] = len(rows)
    return counts


def package_licenses(tree: Path, package: str) -> str:
    """The distinct `License:` names in the package's machine-readable copyright file."""
    path = tree / "usr/share/doc" / package / "copyright"
    if not path.is_file():
        return "no copyright file"
    names = sorted({line[8:].strip() for line in path.read_text(errors="replace").splitlines()
                    if line.startswith("License:") and line[8:].strip()})
    return ", ".join(names) if names else "free-form copyright file"


def write_sources(root: Path, sources, packages: dict[str, list[str]]) -> None:
    """SOURCES.md: per source its license, how it was fetched and the packages used."""
    lines = ["# Sources of this corpus", "",
             "Built by `seqpt corpus build` from Debian (main) with apt; nothing was installed.",
             "Each package's own copyright file is under usr/share/doc/<package>/copyright in "
             "the download cache.", ""]
    for module in sources:
        lines += [f"## {module.NAME}", "", f"- License: {module.LICENSE}",
                  f"- Fetched: {module.FETCHED}"]
        used = packages.get(module.NAME, [])
        if used:
            lines.append("- Packages / indexes (with the licenses their copyright files name):")
            lines += [f"  - {item}" for item in used]
        lines.append("")
    (root / "SOURCES.md").write_text("\n".join(lines))


def finish(tmp: Path, out: Path, stats: dict, marker: dict) -> None:
    (tmp / "stats.json").write_text(json.dumps(stats, indent=1, ensure_ascii=False) + "\n")
    (tmp / MARKER).write_text(json.dumps(marker) + "\n")      # last: the corpus is complete
    publish(tmp, out)
