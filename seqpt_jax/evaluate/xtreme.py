"""XTREME's cross-lingual tasks (Hu et al. 2020) from the files a user already has.

  xnli     sentence-pair classification (entailment | neutral | contradiction), accuracy;
           15 languages. Train: MultiNLI English, plus XNLI-MT's machine-translated train
           (translate-train) for the in-language runs.
  pawsx    paraphrase identification (paraphrase | different_meaning), accuracy; 7 languages,
           English train plus machine-translated train for the others.
  wikiann  named entities (PER, LOC, ORG in IOB2; Rahimi et al.'s balanced PAN-X splits), span F1;
           XTREME's 40 languages, each with its own train split.
  udpos    Universal Dependencies v2.5 part-of-speech (UPOS), token accuracy; XTREME's 33
           languages, all treebanks of a language merged, as XTREME merges them.

Two sources, neither downloading anything:
  --data DIR  the files as their authors distribute them (`LAYOUTS`), found anywhere under DIR;
  --tfds DIR  TensorFlow Datasets already prepared in the data_dir DIR (`TFDS`: the builders of
              tensorflow-datasets 4.9.x; xnli's English train is `multi_nli`).
A split of a language is a *source* (a path, paths, or a TFDS reference) that `read` turns into
the examples of `data.py`'s formats, so the protocol, metrics and reports are the corpus tasks'.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import os
import re

from seqpt_jax.errors import UserError

XNLI_LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
PAWSX_LANGS = ("de", "en", "es", "fr", "ja", "ko", "zh")
WIKIANN_LANGS = ("af", "ar", "bg", "bn", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr", "he", "hi",
                 "hu", "id", "it", "ja", "jv", "ka", "kk", "ko", "ml", "mr", "ms", "my", "nl", "pt", "ru",
                 "sw", "ta", "te", "th", "tl", "tr", "ur", "vi", "yo", "zh")
UDPOS_LANGS = ("af", "ar", "bg", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu",
               "id", "it", "ja", "kk", "ko", "mr", "nl", "pt", "ru", "ta", "te", "th", "tl", "tr", "ur",
               "vi", "yo", "zh")
NLI_LABELS = ("entailment", "neutral", "contradiction")
PAWS_LABELS = ("different_meaning", "paraphrase")  # the files' 0 and 1


@dataclasses.dataclass(frozen=True)
class Spec:
    kind: str        # data.py's task kind
    langs: tuple     # XTREME's languages for the task
    layout: str      # what --data DIR must hold (for messages and docs)


SPECS = {
    "xnli": Spec("classification", XNLI_LANGS,
                 "XNLI-1.0/xnli.{dev,test}.tsv and XNLI-MT-1.0/multinli/multinli.train.<lang>.tsv"),
    "pawsx": Spec("classification", PAWSX_LANGS,
                  "x-final/<lang>/{train.tsv (en) | translated_train.tsv, dev_2k.tsv, test_2k.tsv}"),
    "wikiann": Spec("tagging", WIKIANN_LANGS,
                    "<lang>/{train,dev,test}: each <lang>.tar.gz of panx_dataset.tar extracted into <lang>/"),
    "udpos": Spec("tagging", UDPOS_LANGS, "UD_<Language>-<Treebank>/<lang>_<tb>-ud-{train,dev,test}.conllu "
                                          "(ud-treebanks-v2.5)"),
}
_SPLIT_NAMES = {"train": "train", "dev": "validation", "test": "test"}


# ------------------------------------------------------------------------------ the distributed files


def _under(root: str, pattern: str) -> list[str]:
    return sorted(glob.glob(os.path.join(root, "**", pattern), recursive=True))


def find_files(name: str, root: str) -> dict:
    """{split: {lang: source}} of task `name` under `root` (every XTREME language present)."""
    files: dict = {}

    def add(split, lang, source):
        if lang in SPECS[name].langs:
            files.setdefault(split, {})[lang] = source

    if name == "xnli":
        for base, split in (("xnli.dev.tsv", "validation"), ("xnli.test.tsv", "test")):  # XNLI-1.0's
            for path in _under(root, base):
                rows = _tsv(path)
                _need(path, rows[0] if rows else {}, "language")
                for lang in sorted({r["language"] for r in rows}):
                    add(split, lang, path)
        for path in _under(root, "multinli.train.*.tsv"):
            add("train", os.path.basename(path).split(".")[2], path)
    elif name == "pawsx":
        for path in _under(root, "*.tsv"):
            base, lang = os.path.basename(path), os.path.basename(os.path.dirname(path))
            split = {"train.tsv": "train", "translated_train.tsv": "train", "dev_2k.tsv": "validation",
                     "test_2k.tsv": "test"}.get(base)
            if split and not (base == "translated_train.tsv" and lang == "en"):
                add(split, lang, path)
    elif name == "wikiann":
        for path in _under(root, "*"):
            split, lang = _SPLIT_NAMES.get(os.path.basename(path)), os.path.basename(os.path.dirname(path))
            if split and os.path.isfile(path):
                add(split, lang, path)
    else:  # udpos: every treebank of a language, but Arabic-NYUAD, whose words are withheld ("_")
        for path in _under(root, "*-ud-*.conllu"):
            m = re.match(r"([a-z]+)_[a-z0-9]+-ud-(train|dev|test)\.conllu$", os.path.basename(path))
            if m and "NYUAD" not in path:
                lang, split = m[1], _SPLIT_NAMES[m[2]]
                if lang in SPECS[name].langs:
                    files.setdefault(split, {}).setdefault(lang, ())
                    files[split][lang] += (path,)
    return files


def _tsv(path: str) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def _need(path: str, row: dict, *names: str) -> None:
    missing = [n for n in names if row.get(n) is None]
    if missing:
        raise UserError(f"{path}: no column {missing[0]!r}; expected the dataset's own tab-separated header.")


def read_xnli(path: str, lang: str) -> list[dict]:
    """XNLI-1.0's dev/test (every language in one file, a `language` column) or XNLI-MT's train
    (`premise`, `hypo`, `label`, where contradiction is spelt "contradictory")."""
    out = []
    for row in _tsv(path):
        if "language" in row:
            _need(path, row, "sentence1", "sentence2", "gold_label")
            if row["language"] == lang:
                out.append({"text_a": row["sentence1"], "text_b": row["sentence2"], "label": row["gold_label"]})
        else:
            _need(path, row, "premise", "hypo", "label")
            label = "contradiction" if row["label"] == "contradictory" else row["label"]
            out.append({"text_a": row["premise"], "text_b": row["hypo"], "label": label})
    return out


def read_pawsx(path: str) -> list[dict]:
    """id, sentence1, sentence2, label (0 | 1); rows with another label are the files' known
    misparsed lines and are skipped, as TFDS skips them."""
    out = []
    for row in _tsv(path):
        _need(path, row, "sentence1", "sentence2", "label")
        if row["label"] in ("0", "1"):
            out.append({"text_a": row["sentence1"], "text_b": row["sentence2"],
                        "label": PAWS_LABELS[int(row["label"])]})
    return out


def _sentences(path: str, word_tag) -> list[dict]:
    """[{words, tags}] of a one-word-per-line file with a blank line between sentences;
    `word_tag(line, n)` gives a line's (word, tag), or None for a line that holds no word."""
    out, words, tags = [], [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate([*f, ""], 1):
            line = line.rstrip("\n")
            if not line.strip():
                if words:
                    out.append({"words": words, "tags": tags})
                    words, tags = [], []
            elif (pair := word_tag(line, n)) is not None:
                words.append(pair[0])
                tags.append(pair[1])
    return out


def read_wikiann(path: str) -> list[dict]:
    """`lang:token<TAB>tag` lines, a blank line between sentences."""
    def word_tag(line, n):
        cols = line.split("\t")
        if len(cols) < 2 or ":" not in cols[0]:
            raise UserError(f"{path}:{n}: expected 'lang:token<TAB>tag' (WikiANN/PAN-X), got {line[:40]!r}.")
        return cols[0].split(":", 1)[1], cols[-1].strip()
    return _sentences(path, word_tag)


def read_conllu(paths: tuple) -> list[dict]:
    """Words (FORM) and UPOS of every sentence of every file; comments, multi-word token ranges
    (1-2) and empty nodes (1.1) are not words of the tagging task."""
    def word_tag(line, n, path=None):
        if line.startswith("#"):
            return None
        cols = line.split("\t")
        if len(cols) != 10:
            raise UserError(f"{path}:{n}: a CoNLL-U word line has 10 tab-separated columns, this one {len(cols)}.")
        return None if "-" in cols[0] or "." in cols[0] else (cols[1], cols[3])
    return [s for path in paths for s in _sentences(path, lambda line, n, path=path: word_tag(line, n, path))]


# ------------------------------------------------------------------------------ TFDS


# name -> (builder, config of a language, {our split: TFDS split}); xnli's splits come from three
# builders: English train `multi_nli`, translated train `xtreme_xnli`, validation/test `xnli`.
TFDS = {
    "pawsx": ("paws_x_wiki", "{lang}", {"train": "train", "validation": "validation", "test": "test"}),
    "wikiann": ("wikiann", "{lang}", {"train": "train", "validation": "validation", "test": "test"}),
    "udpos": ("xtreme_pos", "xtreme_pos_{lang}", {"train": "train", "validation": "dev", "test": "test"}),
}
_XNLI_TFDS = {"train": ("multi_nli", "xtreme_xnli"), "validation": ("xnli",), "test": ("xnli",)}


def find_tfds(name: str, data_dir: str) -> dict:
    """{split: {lang: "tfds:builder[/config]:split"}} for the languages prepared in data_dir (a
    prepared dataset is the folder data_dir/<builder>/<config>, as `download_and_prepare` writes it)."""
    files: dict = {}
    prepared = lambda *parts: os.path.isdir(os.path.join(data_dir, *parts))
    for lang in SPECS[name].langs:
        if name == "xnli":
            for split, builders in _XNLI_TFDS.items():
                builder = builders[0] if split != "train" or lang == "en" else builders[-1]
                if prepared(builder):
                    files.setdefault(split, {})[lang] = f"tfds:{builder}:{split}"
            continue
        builder, config, splits = TFDS[name]
        config = config.format(lang=lang)
        if prepared(builder, config):
            for split, tfds_split in splits.items():
                files.setdefault(split, {})[lang] = f"tfds:{builder}/{config}:{tfds_split}"
    return files


def read_tfds(ref: str, lang: str, data_dir: str) -> list[dict]:
    """The examples of one TFDS split (`find_tfds`'s reference), in data.py's formats."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise UserError("--tfds needs tensorflow-datasets (`pip install tensorflow-datasets`); or pass the "
                        "dataset's own files with --data DIR.") from None
    _, builder_name, split = ref.split(":")
    try:
        builder = tfds.builder(builder_name, data_dir=data_dir)
        rows = tfds.as_numpy(builder.as_dataset(split=split))
    except Exception as e:  # a half-written or missing split: name it, not the stack
        raise UserError(f"cannot read TFDS {builder_name}:{split} from {data_dir} ({str(e).splitlines()[0]}); "
                        f"prepare it with tfds.builder({builder_name.split('/')[0]!r}).download_and_prepare().") from None
    feats = builder.info.features
    text = lambda b: b.decode("utf-8") if isinstance(b, bytes) else str(b)
    out = []
    for ex in rows:
        if "tokens" in ex:  # wikiann, xtreme_pos
            tag = "tags" if "tags" in ex else "upos"
            names = feats[tag].feature
            out.append({"words": [text(w) for w in ex["tokens"]], "tags": [names.int2str(int(t)) for t in ex[tag]]})
        elif "sentence1" in ex:  # paws_x_wiki
            out.append({"text_a": text(ex["sentence1"]), "text_b": text(ex["sentence2"]),
                        "label": feats["label"].int2str(int(ex["label"]))})
        else:  # multi_nli (plain text), xnli / xtreme_xnli (a text per language)
            premise, hypothesis = ex["premise"], ex["hypothesis"]
            if isinstance(premise, dict):
                languages = [text(l) for l in hypothesis["language"]]
                if lang not in premise or lang not in languages:
                    continue
                premise, hypothesis = premise[lang], hypothesis["translation"][languages.index(lang)]
            out.append({"text_a": text(premise), "text_b": text(hypothesis),
                        "label": feats["label"].int2str(int(ex["label"]))})
    return out


# ------------------------------------------------------------------------------ one entry point


def read(name: str, source, lang: str, tfds_dir: str | None = None) -> list[dict]:
    """The examples of `source` (an entry of `find_files` or `find_tfds`) for language `lang`."""
    if isinstance(source, str) and source.startswith("tfds:"):
        return read_tfds(source, lang, tfds_dir)
    if name == "xnli":
        return read_xnli(source, lang)
    if name == "pawsx":
        return read_pawsx(source)
    if name == "wikiann":
        return read_wikiann(source)
    return read_conllu(source)
