"""Which files make a downstream task: user files, or the project's cross-lingual corpus tasks.

A `Task` maps each split to {language: file}. User files form the single language "user";
corpus tasks are found under `CORPUS/tasks/<name>/` (see `CORPUS_TASKS`). A packaged task
(`packaged.PACKAGED`: labels from an installed package) is written there when missing.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re

from seqpt_jax.errors import UserError
from seqpt_jax.evaluate import packaged

SPLITS = ("train", "validation", "test")

# name -> (kind, file pattern with {lang} and {split}). Translation is English -> {lang}.
CORPUS_TASKS = {
    "section": ("classification", "{lang}.{split}.jsonl"),
    "ui_tagging": ("tagging", "{lang}.{split}.conll"),
    "translation": ("generation", "en-{lang}.{split}.jsonl"),
    "synopsis": ("generation", "{lang}.{split}.jsonl"),
    "ja_ner": ("tagging", "{lang}.{split}.conll"),  # packaged.py: Japanese NER, trained in Japanese
}
USER_KINDS = ("classification", "tagging", "generation")


@dataclasses.dataclass
class Task:
    name: str
    kind: str  # classification | tagging | generation
    files: dict  # split -> {language: path}
    source_lang: str = "en"  # the language fine-tuned on for zero-shot transfer
    skipped: list = dataclasses.field(default_factory=list)  # "lang.split" files with no examples
    spaced: bool = True  # tagging words are separated by spaces (False: Japanese, data._unspaced)

    def langs(self, split: str) -> list[str]:
        return sorted(self.files.get(split, {}))


def from_files(kind: str, train: str | None, validation: str | None, test: str | None) -> Task:
    """A task from user files (one language, called "user")."""
    if kind not in USER_KINDS:
        raise UserError(f"--task {kind!r} with --train/--test files must be one of {', '.join(USER_KINDS)}.")
    files = {s: {"user": p} for s, p in zip(SPLITS, (train, validation, test)) if p}
    return Task(name=kind, kind=kind, files=files, source_lang="user")


def from_corpus(name: str, corpus: str, langs: list[str] | None = None) -> Task:
    """The corpus task `name` with every language that has files (or only `langs`)."""
    if name not in CORPUS_TASKS:
        raise UserError(f"unknown --task {name!r}; use one of {', '.join(CORPUS_TASKS)} with --corpus, "
                        f"or {', '.join(USER_KINDS)} with --train/--test files.")
    kind, pattern = CORPUS_TASKS[name]
    root = os.path.join(os.path.expanduser(corpus), "tasks", name)
    source = packaged.PACKAGED[name].lang if name in packaged.PACKAGED else "en"
    if name in packaged.PACKAGED and not os.path.isdir(root):
        packaged.materialise(name, root)
    if not os.path.isdir(root):
        raise UserError(f"{root} not found; build the corpus first (`seqpt corpus build`) or pass --corpus.")
    files, skipped = {}, []
    for split in SPLITS:
        regex = re.compile(re.escape(pattern).replace(r"\{lang\}", "(?P<lang>[^./]+)")
                           .replace(r"\{split\}", re.escape(split)) + "$")
        for path in sorted(glob.glob(os.path.join(root, "*"))):
            m = regex.match(os.path.basename(path))
            if not m or (langs and m["lang"] not in langs):
                continue
            if _blank(path):  # a language the corpus has no items for: reported, not fatal
                skipped.append(f"{m['lang']}.{split}")
            else:
                files.setdefault(split, {})[m["lang"]] = path
    if not files.get("test"):
        raise UserError(f"{root} has no *.test files for task {name!r}; rebuild the corpus.")
    spaced = packaged.PACKAGED[name].spaced if name in packaged.PACKAGED else True
    return Task(name=name, kind=kind, files=files, source_lang=source, skipped=skipped, spaced=spaced)


def _blank(path: str) -> bool:
    with open(path, encoding="utf-8") as f:
        return not any(line.strip() for line in f)
