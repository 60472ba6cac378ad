"""A cache of the numpy pipeline's batches, for runs that read the same ones.

The arms of one experiment seed (experiment/runner.py) train one after another on the same
batches and evaluate on the same held-out ones (experiment/heldout.py): batch k is a pure
function of (task specs, split, batch size, lengths, seed, pack, shard) and the position before
it (feeding.py). `cached` wraps such a source: batch k is read from
ROOT/<key>/<step>.npz when an earlier run stored it, else built by the source and stored there
(a temporary file, then os.replace: a killed writer or two writers at once never leave half a
file; a damaged file is a miss, built again).

    source = batch_cache.cached(inner, args, root)   # args: feeding.Pipeline's; inner: its
                                                      # Pipeline or ParallelPipeline

A file also holds the position before and after its batch, so a hit moves the position without
building anything (the inner source is restored to it at the next miss: a ParallelPipeline starts
no worker while batches are hits), and a file stored from another position is a miss. `state()`
and `restore()` are the inner source's: a checkpoint written with or without the cache resumes
with exactly the next batch. The key names each task by its windows' source (corpus or export
folder, vocabulary file, language) and vocabulary, not by the corpus's contents: rebuilding a
corpus in place calls for a new ROOT.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from seqpt_jax.data import sources

FORMAT = 1
_PLAIN = (str, int, float, bool, type(None), os.PathLike)


def _hash(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _vocabulary(info) -> dict:
    """A TokenInfo's fields, its arrays by hash."""
    values = {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}
    return {k: hashlib.sha256(v.tobytes()).hexdigest() if isinstance(v, np.ndarray) else v for k, v in values.items()}


def _source_identity(fn) -> list | None:
    """A task's window factory by name and plain arguments (tasks.fast_specs and exported.fast_specs
    make partials of (folder, language[, vocabulary])); None for anything else, which has no
    identity that outlives the process."""
    if not isinstance(fn, functools.partial) or not all(
            isinstance(a, _PLAIN) for a in [*fn.args, *fn.keywords.values()]):
        return None
    return [f"{fn.func.__module__}.{fn.func.__qualname__}", [str(a) for a in fn.args],
            {k: str(v) for k, v in fn.keywords.items()}]


def key(args: tuple) -> str | None:
    """The hash of everything `feeding.Pipeline(*args)`'s batches depend on, or None when a task's
    windows cannot be named (no cache then)."""
    specs, split, batch_size, lengths, seed, pack, shard = args
    lengths = {"inputs": lengths} if isinstance(lengths, int) else dict(lengths)
    tasks = []
    for spec, rate in specs:
        source = _source_identity(spec.source)
        if source is None:
            return None
        tasks.append([spec.name, spec.kind, spec.objective, spec.options, float(rate), source, _vocabulary(spec.info)])
    return _hash([FORMAT, tasks, split, int(batch_size), lengths, int(seed), bool(pack), list(shard)])


def cached(inner, args: tuple, root):
    """`inner` (the source `args` make) reading and storing its batches under `root`; `inner` itself
    where `key` cannot name its tasks."""
    found = key(args)
    return inner if found is None else Cached(inner, Path(root).expanduser() / found)


def _position(state: dict) -> str:
    return json.dumps(state, sort_keys=True)


class Cached:
    """A source whose batch at each position is read from `folder` when stored there (module docstring)."""

    def __init__(self, inner, folder: Path):
        self.inner, self.folder = inner, folder
        self._state, self._synced = inner.state(), True  # synced: the inner source is at self._state

    def state(self) -> dict:
        return self._state

    def restore(self, state: dict) -> None:
        self.inner.restore(state)  # a position of another pipeline is its UserError
        self._state, self._synced = self.inner.state(), True

    def close(self) -> None:
        if hasattr(self.inner, "close"):
            self.inner.close()

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        path = self.folder / f"{int(self._state['step']):08d}.npz"
        before = _position(self._state)
        hit = _read(path, before)
        if hit is not None:
            batch, self._state = hit
            self._synced = False
            return batch
        if not self._synced:
            self.inner.restore(self._state)
        batch = next(self.inner)
        self._state, self._synced = self.inner.state(), True
        sources.save_npz(path, __before__=np.array(before), __after__=np.array(_position(self._state)), **batch)
        return batch


def _read(path: Path, before: str) -> tuple[dict, dict] | None:
    """(batch, position after it) stored at `path` from position `before`, else None."""
    try:
        with np.load(path) as z:
            if str(z["__before__"]) != before:
                return None
            return ({k: z[k] for k in z.files if not k.startswith("__")}, json.loads(str(z["__after__"])))
    except FileNotFoundError:
        return None
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError):  # damaged: built again, replaced
        return None
