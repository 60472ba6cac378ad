"""Downstream tasks whose labelled data ships in a Python package that seqpt_jax installs.

They are written in the corpus tasks' layout (`CORPUS/tasks/<name>/<lang>.<split>.conll`), so
`tasks.from_corpus`, `data.read_tagging` and the protocol read them like any corpus task; nothing
is fetched at run time.

ja_ner  Japanese named entities, IOB2 tags over 8 types (ART DAT LOC MON ORG PER PSN TIM), from
        the PyPI package `hironsancorpus` 0.1.2 (MIT licence; file hironsan/corpus/iob_sents.txt):
        500 news sentences, 15,520 MeCab (IPADIC) words, one word per line with its morphological
        features and the IOB2 tag last, a blank line between sentences. Split as the package
        splits it: the first int(0.9 * 500) = 450 sentences train, the other 50 test. Japanese
        only, so no zero-shot language.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

from seqpt_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Packaged:
    package: str         # the pip distribution (setup.py CORE pins it)
    module: str          # its import name
    file: str            # the labelled file inside the module's directory
    lang: str            # the one language the task has
    train_fraction: float  # the first fraction of sentences trains, the rest tests (the package's split)
    license: str
    spaced: bool         # words separated by spaces in running text (data.encode_tagging)


PACKAGED = {
    "ja_ner": Packaged("hironsancorpus==0.1.2", "hironsan", "corpus/iob_sents.txt", "ja", 0.9, "MIT",
                       spaced=False),
}


def source_file(name: str) -> str:
    """The package file of task `name`, found without importing the package."""
    p = PACKAGED[name]
    spec = importlib.util.find_spec(p.module)
    path = os.path.join(spec.submodule_search_locations[0], p.file) if spec and spec.submodule_search_locations else None
    if not path or not os.path.isfile(path):
        raise UserError(f"task {name!r} reads its data from the package {p.package}, which is not installed; "
                        f"`pip install {p.package}` (seqpt_jax's install pulls it in).")
    return path


def sentences(name: str) -> list[dict]:
    """[{words, tags}] in the package file's order."""
    from seqpt_jax.evaluate import data
    return data.read_tagging(source_file(name), "train")


def split(name: str, sents: list[dict]) -> dict[str, list[dict]]:
    """{"train": the first fraction, "test": the rest}: deterministic, the package's own split."""
    n = int(len(sents) * PACKAGED[name].train_fraction)
    return {"train": sents[:n], "test": sents[n:]}


def conll(sents: list[dict]) -> str:
    return "".join("".join(f"{w}\t{t}\n" for w, t in zip(s["words"], s["tags"])) + "\n" for s in sents)


def materialise(name: str, root: str | os.PathLike, limits: dict | None = None,
                source: str | os.PathLike | None = None) -> dict[str, int]:
    """Writes root/<lang>.<split>.conll for task `name` (at most limits[split] sentences each, the
    first ones); returns the sentence count per file. Files already holding that text are kept.
    `source`: a folder holding the task's files already (an exported corpus's tasks/<name>), read
    instead of the package."""
    from seqpt_jax.evaluate import data
    lang = PACKAGED[name].lang
    parts = ({part: data.read_tagging(os.path.join(source, f"{lang}.{part}.conll"), part) for part in ("train", "test")}
             if source else split(name, sentences(name)))
    os.makedirs(root, exist_ok=True)
    counts = {}
    for part, sents in parts.items():
        sents = sents[:(limits or {}).get(part) or len(sents)]
        path = os.path.join(root, f"{lang}.{part}.conll")
        text = conll(sents)
        if not (os.path.isfile(path) and Path(path).read_text("utf-8") == text):
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(path + ".tmp", path)
        counts[f"{lang}.{part}"] = len(sents)
    return counts
