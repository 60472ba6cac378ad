"""Which files make a downstream task: user files, the project's cross-lingual corpus tasks,
or XTREME's tasks from the files a user has.

A `Task` maps each split to {language: source}. User files form the single language "user";
corpus tasks are found under `CORPUS/tasks/<name>/` (see `CORPUS_TASKS`). A packaged task
(`packaged.PACKAGED`: labels from an installed package) is written there when missing. XTREME
tasks (`xtreme.SPECS`) read the datasets' own formats, so their Task carries its reader.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re

from seqpt_jax.errors import UserError
from seqpt_jax.evaluate import data, packaged, xtreme

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
XTREME_TASKS = tuple(xtreme.SPECS)


@dataclasses.dataclass
class Task:
    name: str
    kind: str  # classification | tagging | generation
    files: dict  # split -> {language: path}
    source_lang: str = "en"  # the language fine-tuned on for zero-shot transfer
    skipped: list = dataclasses.field(default_factory=list)  # "lang.split" files with no examples
    spaced: bool = True  # tagging words are separated by spaces (False: Japanese, data._unspaced)
    reader: object = None  # (source, split, lang) -> examples; None: data.read of a file in `kind`'s format

    def langs(self, split: str) -> list[str]:
        return sorted(self.files.get(split, {}))

    def read(self, split: str, lang: str) -> list[dict]:
        source = self.files[split][lang]
        if self.reader is None:
            return data.read(self.kind, source, split)
        examples = self.reader(source, split, lang)
        if not examples:
            raise UserError(f"task {self.name!r} has no {split} examples for {lang} in {source}; "
                            "check the files (or leave that language out with --langs).")
        return examples


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
                        f"{', '.join(XTREME_TASKS)} with --data or --tfds, "
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


def from_xtreme(name: str, data_dir: str | None = None, tfds_dir: str | None = None,
                langs: list[str] | None = None) -> Task:
    """XTREME task `name` with every one of its languages present (or only `langs`): from the
    distributed files under `data_dir`, or from TFDS datasets prepared in `tfds_dir`."""
    spec = xtreme.SPECS[name]
    if bool(data_dir) == bool(tfds_dir):
        raise UserError(f"--task {name} reads its data from --data DIR (the dataset's own files: {spec.layout}) "
                        "or --tfds DIR (a TFDS data_dir); pass one of them.")
    root = os.path.expanduser(data_dir or tfds_dir)
    if not os.path.isdir(root):
        raise UserError(f"{root} not found; pass the directory that holds the {name} data.")
    found = xtreme.find_files(name, root) if data_dir else xtreme.find_tfds(name, root)
    unknown = sorted(set(langs or ()) - set(spec.langs))
    if unknown:
        raise UserError(f"--langs {', '.join(unknown)} not among {name}'s XTREME languages ({', '.join(spec.langs)}).")
    files = {split: {l: s for l, s in by_lang.items() if not langs or l in langs} for split, by_lang in found.items()}
    files = {split: by_lang for split, by_lang in files.items() if by_lang}
    if not files.get("test") or not files.get("train"):
        what = f"{spec.layout} under {root}" if data_dir else f"TFDS {name} datasets prepared in {root}"
        raise UserError(f"no {name} {'test' if files.get('train') else 'training'} data found; expected {what}.")
    reader = lambda source, split, lang: xtreme.read(name, source, lang, tfds_dir=root)
    return Task(name=name, kind=spec.kind, files=files, source_lang="en", reader=reader)
