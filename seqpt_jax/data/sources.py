"""Token sources: tokenized documents held as one flat array, cut into fixed windows.
Everything here is indexable, so a batch can be
built from (seed, step, counters) alone — the basis of exact resume in feeding.py.

A window is the raw token span one training example is made from: `length` tokens of the
concatenated documents (each followed by EOS) when packing, or one document piece per
window without packing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from seqpt_jax.data import records, vocab
from seqpt_jax.errors import UserError


class TokenStore:
    """Documents as one flat int32 array (each followed by EOS) plus their start offsets."""

    def __init__(self, tokens: np.ndarray, starts: np.ndarray):
        self.tokens = np.asarray(tokens, np.int32)
        self.starts = np.asarray(starts, np.int64)

    @classmethod
    def from_token_lists(cls, docs: Iterable[Sequence[int]], eos_id: int = vocab.EOS_ID) -> "TokenStore":
        arrays = [np.append(np.asarray(d, np.int32), np.int32(eos_id)) for d in docs if len(d)]
        if not arrays:
            return cls(np.zeros(0, np.int32), np.zeros(0, np.int64))
        lengths = np.array([len(a) for a in arrays], np.int64)
        return cls(np.concatenate(arrays), np.concatenate([[0], np.cumsum(lengths)[:-1]]))

    @classmethod
    def from_texts(cls, texts: Iterable[str], sp, chunk: int = 4096) -> "TokenStore":
        """Tokenizes in chunks (SentencePiece encodes a list in C++ threads)."""
        docs, batch = [], []
        for text in texts:
            batch.append(text)
            if len(batch) == chunk:
                docs += sp.encode(batch)
                batch = []
        docs += sp.encode(batch) if batch else []
        return cls.from_token_lists(docs, sp.eos_id() if sp.eos_id() >= 0 else vocab.EOS_ID)

    def __len__(self) -> int:
        return len(self.starts)

    def save(self, path: Path) -> None:
        save_npz(path, tokens=self.tokens, starts=self.starts)

    @classmethod
    def load(cls, path: Path) -> "TokenStore":
        """A cache file, or a UserError naming it when it is damaged (a full disk, a copy cut short)."""
        try:
            with np.load(path) as z:
                return cls(z["tokens"], z["starts"])
        except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError) as e:
            raise UserError(f"token cache {path} is corrupt ({type(e).__name__}); delete it (rm {path}) "
                            f"and rerun: it is rebuilt from the corpus.") from None


def save_npz(path: Path, **arrays) -> None:
    """Write-then-rename, so a reader never sees half a file (a killed writer leaves at most a
    temporary sibling, removed where it can be)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def vocab_fingerprint(model_file: str) -> str:
    from seqpt_jax.paths import is_remote, local
    if is_remote(model_file):  # gs://... (VOCAB on a TPU VM)
        from etils import epath
        return hashlib.sha1(epath.Path(model_file).read_bytes()).hexdigest()[:12]
    return hashlib.sha1(Path(local(model_file)).read_bytes()).hexdigest()[:12]


def corpus_tokens(corpus, lang: str, split: str, model_file: str,
                  cache: bool = True) -> TokenStore:
    """The tokenized text of one language and split, cached beside the corpus per vocabulary.

    Skipped records are reported once, when the cache is built. An unwritable corpus
    directory just means no cache.
    """
    text_path = records.text_file(corpus, lang, split)
    cache_path = (Path(corpus).expanduser() / "cache" / f"tokens-{vocab_fingerprint(model_file)}"
                  / f"{lang}.{split}.npz")
    if cache and cache_path.is_file() and cache_path.stat().st_mtime >= text_path.stat().st_mtime:
        return TokenStore.load(cache_path)
    skipped = records.SkipCounter()
    store = TokenStore.from_texts(records.read_texts(corpus, lang, split, skipped),
                                  vocab.processor(model_file))
    skipped.report(str(text_path))
    if not len(store):
        raise UserError(f"{text_path} has no usable records; rebuild the corpus or drop {lang!r}.")
    if cache:
        try:
            store.save(cache_path)
        except OSError:
            pass
    return store


class Windows:
    """Fixed windows over a TokenStore: `length` tokens from the concatenated stream when
    `pack` (documents share windows; segment ids mark their boundaries), else one piece of one
    document per window. `get(i)` -> (ids, segment_ids), unpadded."""

    def __init__(self, store: TokenStore, length: int, pack: bool = True):
        if not len(store):
            raise UserError("cannot make training windows from an empty source.")
        self.store, self.length, self.pack = store, length, pack
        n = len(store.tokens)
        if pack:
            count = max(n // length, 1)  # the tail shorter than a window is dropped
            self.bounds = np.stack([np.arange(count) * length,
                                    np.minimum(np.arange(1, count + 1) * length, n)], 1)
        else:
            ends = np.append(store.starts[1:], n)
            pieces = [np.arange(s, e, length) for s, e in zip(store.starts, ends)]
            begin = np.concatenate(pieces)
            doc_end = np.repeat(ends, [len(p) for p in pieces])
            self.bounds = np.stack([begin, np.minimum(begin + length, doc_end)], 1)

    def __len__(self) -> int:
        return len(self.bounds)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.bounds[i]
        ids = self.store.tokens[a:b]
        starts = self.store.starts
        first = np.searchsorted(starts, a, side="right")  # documents beginning after a
        seg = np.ones(b - a, np.int32)
        inside = starts[first:np.searchsorted(starts, b)] - a
        if len(inside):
            bump = np.zeros(b - a, np.int32)
            bump[inside] = 1
            seg += np.cumsum(bump)
        return ids, seg
