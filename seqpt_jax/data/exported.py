"""An exported corpus: a portable, pre-tokenized copy of the embedded corpus that trains
without TensorFlow, seqio or TFDS (`seqpt corpus export`).

    DIR/manifest.json                      format, languages, token and document counts per
                                           split, mixing sizes, vocabulary fingerprint, tasks
    DIR/vocab/spm.model                    the vocabulary the tokens are in
    DIR/tokens/<lang>.<split>.tokens.npy   the documents' ids, each followed by EOS (uint16 when
                                           the vocabulary fits, else int32)
    DIR/tokens/<lang>.<split>.starts.npy   each document's first offset
    DIR/tasks/<task>/...                   the downstream files the experiments read, in the corpus's
                                           layout: English train/validation/test and every language's
                                           test (ja_ner materialised from its package)
    DIR/SOURCES.md                         the build's sources and licenses

With CORPUS_DIR at DIR, `train.data.mixture_or_task` feeds the embedded-corpus names
(seqpt_local_*) from here through the same numpy pipeline (`feeding`), with the same task names,
mixture rates and windows as from the corpus itself, so the batches are the same ones and
resume stays exact. mC4 and a user's seqio tasks are not exported; they keep seqio.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import zlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from seqpt_jax.data import feeding, mixing, names, preprocessors, records, sources, vocab
from seqpt_jax.errors import UserError

FORMAT, VERSION, MANIFEST = "seqpt-corpus-export", 1, "manifest.json"
VOCAB_FILE = "vocab/spm.model"
# The corpus tasks the experiments fine-tune on (experiment/downstream.py, generation.py).
TASKS = ("section", "ui_tagging", "synopsis")
HELD_OUT_SHARE = 10  # validation and test keep at most max_tokens / 10 tokens per language


def is_export(path) -> bool:
    return path is not None and (Path(path).expanduser() / MANIFEST).is_file()


def manifest(path) -> dict:
    """The manifest of the exported corpus at `path`, or a UserError."""
    file = Path(path).expanduser() / MANIFEST
    try:
        found = json.loads(file.read_text("utf-8"))
    except (OSError, ValueError):
        raise UserError(f"{file} cannot be read; export the corpus again with `seqpt corpus export`.") from None
    if found.get("format") != FORMAT or found.get("version") != VERSION:
        raise UserError(f"{path} is not a version-{VERSION} exported corpus; export it again with this "
                        f"seqpt (`seqpt corpus export`).")
    return found


# ----- writing ---------------------------------------------------------------------------------

def cap(store: sources.TokenStore, max_tokens: int) -> sources.TokenStore:
    """At most `max_tokens` tokens of whole documents (at least one), chosen by a hash of their
    ids, so the sample is deterministic and spread over the whole file; kept in file order."""
    ends = np.append(store.starts[1:], len(store.tokens))
    if ends[-1] <= max_tokens:
        return store
    docs = [store.tokens[a:b] for a, b in zip(store.starts, ends)]
    order = sorted(range(len(docs)), key=lambda i: (zlib.crc32(docs[i].tobytes()), i))
    sizes = (ends - store.starts)[order]
    keep = np.array(order)[:max(1, int(np.searchsorted(np.cumsum(sizes), max_tokens, side="right")))]
    kept = [docs[i] for i in sorted(keep)]
    lengths = np.array([len(d) for d in kept], np.int64)
    return sources.TokenStore(np.concatenate(kept), np.concatenate([[0], np.cumsum(lengths)[:-1]]))


def _token_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32


def _items(path: Path) -> list[str]:
    """A task file's items as text: JSON lines, or CoNLL blocks (a blank line between items)."""
    text = path.read_text("utf-8")
    if path.suffix == ".conll":
        return [block.strip("\n") + "\n\n" for block in text.split("\n\n") if block.strip()]
    return [line + "\n" for line in text.splitlines() if line.strip()]


def _used(task: str, name: str, langs: Sequence[str]) -> bool:
    """The files the experiments read: English train/validation/test (they fine-tune on English),
    and the test file of every exported language (zero-shot); synopsis is English only."""
    lang, split = name.split(".")[:2]
    return lang == "en" or (task != "synopsis" and split == "test" and lang in langs)


def _copy_tasks(corpus: Path, root: Path, langs: Sequence[str], max_examples: int | None) -> dict:
    """The used files of TASKS (at most `max_examples` items each, chosen by a hash of their
    text, kept in file order) and ja_ner's; returns {task: {file: items}}."""
    from seqpt_jax.evaluate import packaged
    out: dict = {}
    for task in TASKS:
        for path in sorted((corpus / "tasks" / task).glob("*")):
            if not _used(task, path.name, langs):
                continue
            items = _items(path)
            if max_examples and len(items) > max_examples:
                ranked = sorted(range(len(items)), key=lambda i: (zlib.crc32(items[i].encode("utf-8")), i))
                items = [items[i] for i in sorted(ranked[:max_examples])]
            (root / "tasks" / task).mkdir(parents=True, exist_ok=True)
            (root / "tasks" / task / path.name).write_text("".join(items), "utf-8")
            out.setdefault(task, {})[path.name] = len(items)
    for task in packaged.PACKAGED:  # shipped in a pip package, which the GPU machine may not have
        out[task] = packaged.materialise(task, root / "tasks" / task)
    return out


def export(corpus, vocab_path, out, langs: Sequence[str] | None = None, max_tokens: int | None = None,
           max_examples: int | None = None, log: Callable[[str], None] = print) -> dict:
    """Writes the exported corpus of `corpus` in `vocab_path`'s ids to `out` (see the module
    docstring). `max_tokens` caps each language's training tokens (validation and test at a tenth
    of it), `max_examples` each task file. Returns the manifest."""
    from seqpt_jax.data.corpus import output
    corpus, out = Path(corpus).expanduser(), Path(out).expanduser()
    if out.exists() and any(out.iterdir()) and not is_export(out):
        raise UserError(f"{out} exists and is not an exported corpus; pass another --out.")
    for flag, value in (("--max-tokens", max_tokens), ("--max-examples", max_examples)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be positive, got {value}.")
    langs = list(langs or records.languages(corpus))
    for lang in langs:
        records.text_file(corpus, lang, "train")  # one clear error per language without text
    model_file = str(Path(vocab_path).expanduser())
    info = vocab.token_info(model_file)
    dtype = _token_dtype(info.vocab_size)
    tmp = output.staging_dir(out)
    (tmp / "tokens").mkdir()
    (tmp / "vocab").mkdir()
    shutil.copyfile(model_file, tmp / VOCAB_FILE)
    tokens: dict = {}
    documents: dict = {}
    full_train: dict = {}
    for lang in langs:
        for split in records.SPLITS:
            path = records.text_dir(corpus) / f"{lang}.{split}.jsonl"
            if not path.is_file() or path.stat().st_size == 0:
                continue
            store = sources.corpus_tokens(corpus, lang, split, model_file)
            if split == "train":
                full_train[lang] = len(store.tokens)
            limit = max_tokens if split == "train" else max(max_tokens // HELD_OUT_SHARE, 1) if max_tokens else None
            store = cap(store, limit) if limit else store
            np.save(tmp / "tokens" / f"{lang}.{split}.tokens.npy", store.tokens.astype(dtype))
            starts_dtype = np.int32 if len(store.tokens) < 2 ** 31 else np.int64
            np.save(tmp / "tokens" / f"{lang}.{split}.starts.npy", store.starts.astype(starts_dtype))
            tokens.setdefault(lang, {})[split] = int(len(store.tokens))
            documents.setdefault(lang, {})[split] = int(len(store))
        log(f"  {lang}: " + ", ".join(f"{s} {n:,}" for s, n in tokens[lang].items()) + " tokens")
    # The rates the corpus's own mixture uses, scaled by the share of each language kept.
    sizes = {lang: float(size) * tokens[lang]["train"] / full_train[lang]
             for lang, size in records.mixing_sizes(corpus, langs).items()}
    task_files = _copy_tasks(corpus, tmp, langs, max_examples)
    if (corpus / "SOURCES.md").is_file():
        shutil.copyfile(corpus / "SOURCES.md", tmp / "SOURCES.md")
    found = {"format": FORMAT, "version": VERSION, "source": str(corpus), "languages": langs,
             "vocab": {"file": VOCAB_FILE, "fingerprint": sources.vocab_fingerprint(model_file),
                       "vocab_size": info.vocab_size, "extra_ids": info.extra_ids},
             "dtype": np.dtype(dtype).name, "max_tokens": max_tokens, "max_examples": max_examples, "tokens": tokens,
             "documents": documents,
             "mixing_sizes": sizes, "tasks": task_files,
             "sources": "SOURCES.md" if (tmp / "SOURCES.md").is_file() else None,
             "bytes": size_of(tmp)}  # every file but the manifest
    (tmp / MANIFEST).write_text(json.dumps(found, indent=1, ensure_ascii=False) + "\n", "utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return found


def size_of(root) -> int:
    """Bytes of every file under `root` (what a copy moves)."""
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


# ----- reading: the feed's view ------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def store(root: str, lang: str, split: str) -> sources.TokenStore:
    """One language's split as the TokenStore the corpus path builds (ids as int32)."""
    base = Path(root) / "tokens" / f"{lang}.{split}"
    try:
        return sources.TokenStore(np.load(f"{base}.tokens.npy"), np.load(f"{base}.starts.npy"))
    except FileNotFoundError:
        raise UserError(f"exported corpus {root} has no {split} tokens for {lang!r}; export it again "
                        f"with that language.") from None
    except ValueError as e:
        raise UserError(f"{base}.*.npy is damaged ({e}); copy the exported corpus again.") from None


def _windows(root: str, lang: str, split: str, length: int, pack: bool) -> sources.Windows:
    return sources.Windows(store(root, lang, split), length, pack)


def check_vocab(root, vocab_path) -> str:
    """The export's vocabulary file; `vocab_path` (if given) must be the same vocabulary."""
    found = manifest(root)
    own = str(Path(root).expanduser() / found["vocab"]["file"])
    from seqpt_jax.paths import is_remote
    if vocab_path and not is_remote(vocab_path) and not Path(vocab_path).expanduser().is_file():
        raise UserError(f"vocabulary file {vocab_path} not found; the exported corpus brings its own: {own}.")
    if vocab_path and sources.vocab_fingerprint(str(vocab_path)) != found["vocab"]["fingerprint"]:
        raise UserError(f"exported corpus {root} is tokenized with another vocabulary than VOCAB {vocab_path}; "
                        f"set --gin.VOCAB={own}.")
    return own


def fast_specs(root, name: str, vocab_path=None,
               alpha: float = mixing.DEFAULT_ALPHA) -> list[tuple[feeding.TaskSpec, float]]:
    """(spec, rate) pairs of the embedded-corpus task or mixture `name`, read from the export at
    `root`: the specs `tasks.fast_specs` makes of the same seqio tasks over the corpus."""
    root = str(Path(root).expanduser())
    found = manifest(root)
    model_file = check_vocab(root, vocab_path)
    lang, objective = names.objective_of(name, names.LOCAL)
    langs = found["languages"]
    if lang is not None:
        langs = [l for l in langs if names.task_name(names.LOCAL, l, objective) == name]
        if not langs:
            raise UserError(f"exported corpus {root} has no language for task {name!r} (it has "
                            f"{', '.join(found['languages'])}); export it with that language.")
    rates = (mixing.temperature_rates({l: found["mixing_sizes"][l] for l in langs}, alpha)
             if lang is None else {langs[0]: 1.0})
    info = vocab.token_info(model_file)
    kind = feeding.ENCODER if objective in preprocessors.ENCODER_OBJECTIVES else feeding.ENCDEC
    return [(feeding.TaskSpec(names.task_name(names.LOCAL, l, objective), kind,
                              functools.partial(_windows, root, l), info, objective, {}), rates[l])
            for l in langs]
