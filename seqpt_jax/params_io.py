"""Standalone parameter checkpoints: a directory with `model.json` and an orbax `params/` tree.

This is the exchange format between `seqpt convert`, `grow`, `warmstart`, `extract` and the
trainer's init hook. `model.json` records the model kind and its `TransformerConfig`, so a
checkpoint is self-describing. Writes go to a temporary sibling and are renamed into place,
so an interrupted save never leaves a directory that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

import jax
import numpy as np
import orbax.checkpoint as ocp

from seqpt_jax.errors import UserError
from seqpt_jax.models import KINDS, TransformerConfig

MODEL_FILE = "model.json"


@contextlib.contextmanager
def atomic_directory(path: str, overwrite: bool = False):
    """Yields a temporary sibling of `path` to fill; renamed to `path` only if the block succeeds."""
    path = os.path.abspath(path)
    if os.path.exists(path) and not overwrite:
        raise UserError(f"{path} already exists; choose another --out or remove it first.")
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=parent)
    except OSError as e:
        raise UserError(f"cannot write under {parent}: {e.strerror}; choose a writable --out.") from e
    try:
        yield tmp
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def save_params(path: str, kind: str, cfg: TransformerConfig, params, *, overwrite: bool = False) -> str:
    """Writes params (a pytree of arrays) with its kind and config; returns the path."""
    if kind not in KINDS:
        raise UserError(f"Unknown model kind {kind!r}; use one of {', '.join(KINDS)}.")
    with atomic_directory(path, overwrite) as tmp:
        host = jax.tree.map(lambda x: np.asarray(jax.device_get(x)), params)
        ckptr = ocp.StandardCheckpointer()
        ckptr.save(os.path.join(tmp, "params"), host)
        ckptr.wait_until_finished()
        with open(os.path.join(tmp, MODEL_FILE), "w") as f:
            json.dump({"kind": kind, "config": cfg.to_dict()}, f, indent=2, sort_keys=True)
    return os.path.abspath(path)


def read_model(path: str) -> tuple[str, TransformerConfig]:
    """(kind, config) of a checkpoint written by `save_params`."""
    meta = os.path.join(path, MODEL_FILE)
    if not os.path.isfile(meta):
        raise UserError(f"{path} is not a seqpt_jax parameter checkpoint ({MODEL_FILE} missing); "
                        f"point at a directory written by `seqpt convert/grow/warmstart/extract`.")
    with open(meta) as f:
        d = json.load(f)
    return d["kind"], TransformerConfig.from_dict(d["config"])


def load_params(path: str, sharding=None) -> tuple[str, TransformerConfig, dict]:
    """(kind, config, params). `sharding`: optional pytree of shardings to restore into."""
    kind, cfg = read_model(path)
    ckptr = ocp.StandardCheckpointer()
    target = os.path.join(os.path.abspath(path), "params")
    if sharding is None:
        params = ckptr.restore(target)
    else:
        meta = ckptr.metadata(target)
        tree = meta.item_metadata if hasattr(meta, "item_metadata") else meta
        tree = getattr(tree, "tree", tree)  # orbax >= 0.11 wraps the metadata dict
        abstract = jax.tree.map(lambda m, s: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=s),
                                tree, sharding)
        params = ckptr.restore(target, abstract)
    return kind, cfg, params
