"""Downstream tasks: the corpus's own (section classification, UI-entity tagging, English -> X
translation, synopsis generation) and TFDS XNLI / WikiANN (PAN-X) for users who have them.

Each is registered as a seqio text-to-text task and as a feeding.TaskSpec (classification ->
labels, tagging -> token labels on each word's first piece, seq2seq -> packed rows).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from seqpt_jax.data import feeding, records, sources, tasks, vocab
from seqpt_jax.errors import UserError


class Rows(list):
    """A finite, indexable source of ready rows."""

    def get(self, i: int):
        return self[i]


def _ids(sp, text: str, n: int) -> np.ndarray:
    return np.append(np.asarray(sp.encode(text), np.int32)[:n - 1], vocab.EOS_ID)


def _pairs_source(read: Callable[[str], Iterable[dict]], model_file: str, split: str,
                  length: int, pack: bool, lengths_of=None) -> Rows:
    """Seq2seq rows from {"inputs", "targets"} strings, shuffled once (seed 0) then packed."""
    sp = vocab.processor(model_file)
    examples = [{"inputs": _ids(sp, ex["inputs"], length), "targets": _ids(sp, ex["targets"], length)}
                for ex in read(split)]
    if not examples:
        raise UserError(f"no usable {split} examples for this task.")
    order = np.random.default_rng(0).permutation(len(examples))
    examples = [examples[i] for i in order]
    if pack:
        return Rows(sources.pack_examples(examples, {"inputs": length, "targets": length}))
    return Rows({k: (v, np.ones(len(v), np.int32)) for k, v in ex.items()} for ex in examples)


def _classify_source(read, labels: list[str], model_file: str, split: str, length: int, pack: bool):
    del pack
    sp, index, skipped, rows = vocab.processor(model_file), {l: i for i, l in enumerate(labels)}, 0, Rows()
    for ex in read(split):
        if ex["targets"] not in index:
            skipped += 1
            continue
        rows.append({"inputs": _ids(sp, ex["inputs"], length), "label": index[ex["targets"]]})
    if skipped:
        records.SkipCounter({"examples with labels unseen in training": skipped}).report(split)
    if not rows:
        raise UserError(f"no usable {split} examples for this task.")
    return rows


def align_tags(sp, words: Sequence[str], tags: Sequence[int], length: int) -> dict:
    """Pieces of the words with each word's tag on its first piece (weight 1), others weight 0."""
    ids, labels, weights = [], [], []
    for word, tag in zip(words, tags):
        pieces = sp.encode(word) or [vocab.UNK_ID]
        ids += pieces
        labels += [tag] + [0] * (len(pieces) - 1)
        weights += [1] + [0] * (len(pieces) - 1)
    ids, labels, weights = ids[:length - 1], labels[:length - 1], weights[:length - 1]
    return {"inputs": np.asarray(ids + [vocab.EOS_ID], np.int32),
            "tags": np.asarray(labels + [0], np.int32), "tag_weights": np.asarray(weights + [0], np.int32)}


def _tag_source(read_items, labels: list[str], model_file: str, split: str, length: int, pack: bool):
    del pack
    sp, index = vocab.processor(model_file), {l: i for i, l in enumerate(labels)}
    rows = Rows(align_tags(sp, words, [index.get(t, 0) for t in tags], length)
                for words, tags in read_items(split))
    if not rows:
        raise UserError(f"no usable {split} examples for this task.")
    return rows


def _register(name: str, voc, kind: str, read: Callable[[str], Iterable[dict]], source, splits) -> str:
    import seqio
    dataset_fn = tasks._string_dataset(read, ["inputs", "targets"])
    tasks._add_seqio_task(name, seqio.FunctionDataSource(dataset_fn, splits=splits), voc,
                          [seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
                          add_eos=True)
    tasks.SPECS[name] = feeding.TaskSpec(name, kind, source, vocab.token_info(voc))
    return name


# ----- the corpus's downstream files --------------------------------------------------------

def _jsonl_reader(path_of: Callable[[str], Path], src: str, tgt: str):
    def read(split: str):
        for r in records.read_jsonl(path_of(split), (src, tgt)):
            yield {"inputs": r[src], "targets": r[tgt]}
    return read


def _conll_items(path_of):
    return lambda split: records.read_conll(path_of(split))


def register_corpus_tasks(corpus, vocab_path) -> list[str]:
    """Every downstream task whose files exist under DIR/tasks; returns their names."""
    voc = vocab.load(vocab_path)
    mf, root, names = vocab.model_path(voc), Path(corpus).expanduser() / "tasks", []
    if not root.is_dir():
        raise UserError(f"{root} does not exist; build the corpus with `seqpt corpus build --out {corpus}`.")
    # Section classes come from the English training file: the cross-lingual protocol trains on English.
    section = root / "section"
    english = section / "en.train.jsonl"
    labels = sorted({r["label"] for r in records.read_jsonl(english, ("text", "label"))}) if english.is_file() else []
    for path in sorted(section.glob("*.test.jsonl")) if labels else []:
        lang = path.name.split(".")[0]
        read = _jsonl_reader(lambda s, lang=lang: section / f"{lang}.{s}.jsonl", "text", "label")
        name = f"seqpt_section_{lang}"
        tasks.LABELS[name] = labels
        names.append(_register(name, voc, feeding.CLASSIFY, read,
                               functools.partial(_classify_source, read, labels, mf), records.SPLITS))
    tagging = root / "ui_tagging"
    tag_files = sorted(tagging.glob("*.conll"))
    tags = sorted({t for p in tag_files for _, ts in records.read_conll(p) for t in ts} - {"O"})
    for path in (p for p in tag_files if p.name.endswith(".test.conll")):
        lang = path.name.split(".")[0]
        items = _conll_items(lambda s, lang=lang: tagging / f"{lang}.{s}.conll")
        read = lambda s, items=items: ({"inputs": " ".join(w), "targets": " ".join(t)} for w, t in items(s))
        name = f"seqpt_ui_tagging_{lang}"
        tasks.LABELS[name] = ["O", *tags]
        names.append(_register(name, voc, feeding.TAG, read,
                               functools.partial(_tag_source, items, ["O", *tags], mf), records.SPLITS))
    for sub, prefix in (("translation", "seqpt_translate_"), ("synopsis", "seqpt_synopsis_")):
        for path in sorted((root / sub).glob("*.train.jsonl")):
            stem = path.name.split(".")[0]  # "en-de" or "de"
            read = _jsonl_reader(lambda s, stem=stem, sub=sub: root / sub / f"{stem}.{s}.jsonl",
                                 "source", "target")
            names.append(_register(prefix + stem.replace("-", "_"), voc, feeding.ENCDEC, read,
                                   functools.partial(_pairs_source, read, mf), records.SPLITS))
    return names


# ----- TFDS: XNLI and WikiANN --------------------------------------------------------------

def xnli_examples(split: str, lang: str, data_dir=None) -> Iterable[dict]:
    """XNLI pairs in one language as text-to-text: "premise: ... hypothesis: ..." -> label."""
    for row in tasks._tfds_rows("xnli", split, data_dir):
        hyp = row["hypothesis"]
        langs = [l.decode() for l in hyp["language"]]
        if lang not in langs or lang not in row["premise"]:
            continue
        premise = row["premise"][lang].decode("utf-8")
        hypothesis = hyp["translation"][langs.index(lang)].decode("utf-8")
        yield {"inputs": f"premise: {premise} hypothesis: {hypothesis}",
               "targets": tasks.XNLI_LABELS[int(row["label"])]}


def wikiann_items(split: str, lang: str, data_dir=None) -> Iterable[tuple[list[str], list[str]]]:
    for row in tasks._tfds_rows(f"wikiann/{lang}", split, data_dir):
        words = [w.decode("utf-8") for w in row["tokens"]]
        yield words[:len(row["tags"])], [tasks.WIKIANN_TAGS[int(t)] for t in row["tags"][:len(words)]]


def register_tfds_tasks(vocab_path, xnli_langs: Sequence[str] = (), wikiann_langs: Sequence[str] = (),
                        data_dir=None) -> list[str]:
    """XNLI (validation/test; train on MNLI) and WikiANN tasks per language."""
    voc = vocab.load(vocab_path)
    mf, names = vocab.model_path(voc), []
    for lang in xnli_langs:
        read = functools.partial(lambda s, lang: xnli_examples(s, lang, data_dir), lang=lang)
        name = f"seqpt_xnli_{lang}"
        tasks.LABELS[name] = tasks.XNLI_LABELS
        names.append(_register(name, voc, feeding.CLASSIFY, read,
                               functools.partial(_classify_source, read, tasks.XNLI_LABELS, mf),
                               ("validation", "test")))
    for lang in wikiann_langs:
        items = functools.partial(lambda s, lang: wikiann_items(s, lang, data_dir), lang=lang)
        read = lambda s, items=items: ({"inputs": " ".join(w), "targets": " ".join(t)} for w, t in items(s))
        name = f"seqpt_wikiann_{lang}"
        tasks.LABELS[name] = tasks.WIKIANN_TAGS
        names.append(_register(name, voc, feeding.TAG, read,
                               functools.partial(_tag_source, items, tasks.WIKIANN_TAGS, mf),
                               records.SPLITS))
    return names
