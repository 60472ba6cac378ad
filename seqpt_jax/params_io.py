"""The one checkpoint format and the one loader.

Format: a directory with `model.json` (model kind, `TransformerConfig`, and for a fine-tuned
model its task and labels) and an orbax `params/` tree. `seqpt convert`, `grow`, `warmstart`,
`extract` and `finetune` write it. Writes go to a temporary sibling and are renamed into
place, so an interrupted save never leaves a directory that looks complete.

Loader: `load(path) -> (kind, cfg, params)` reads that format, and also a `seqpt train`
MODEL_DIR (its `model.json` + the params of its latest good checkpoint). Every command that
takes a model path goes through it.
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
# Kinds of fine-tuned models, beside models.KINDS (their heads need the label count).
FINETUNED_KINDS = ("sequence_classifier", "token_classifier")


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


def save_params(path: str, kind: str, cfg: TransformerConfig, params, *, overwrite: bool = False,
                extra: dict | None = None) -> str:
    """Writes params (a pytree of arrays) with its kind and config (and `extra` entries of
    model.json, e.g. a fine-tuned model's task and labels); returns the path."""
    if kind not in (*KINDS, *FINETUNED_KINDS):
        raise UserError(f"Unknown model kind {kind!r}; use one of {', '.join((*KINDS, *FINETUNED_KINDS))}.")
    with atomic_directory(path, overwrite) as tmp:
        host = jax.tree.map(lambda x: np.asarray(jax.device_get(x)), params)
        ckptr = ocp.StandardCheckpointer()
        ckptr.save(os.path.join(tmp, "params"), host)
        ckptr.wait_until_finished()
        with open(os.path.join(tmp, MODEL_FILE), "w") as f:
            json.dump({**(extra or {}), "kind": kind, "config": cfg.to_dict()}, f, indent=2, sort_keys=True)
    return os.path.abspath(path)


def metadata(path: str) -> dict:
    """model.json of a params checkpoint or a `seqpt train` MODEL_DIR."""
    meta = os.path.join(path, MODEL_FILE)
    if not os.path.isfile(meta):
        raise UserError(f"{path} is not a seqpt_jax model ({MODEL_FILE} missing); point at a `seqpt train` "
                        "MODEL_DIR or a directory written by `seqpt convert/grow/warmstart/extract/finetune`.")
    with open(meta) as f:
        return json.load(f)


def read_model(path: str) -> tuple[str, TransformerConfig]:
    """(kind, config) of a params checkpoint or a `seqpt train` MODEL_DIR."""
    d = metadata(path)
    return d["kind"], TransformerConfig.from_dict(d["config"])


def load(path: str, shardings=None, step: int | None = None) -> tuple[str, TransformerConfig, dict]:
    """(kind, config, params) of a params checkpoint (convert/grow/warmstart/extract/finetune
    output) or a `seqpt train` MODEL_DIR (latest good step, or `step`). `shardings`: optional
    pytree of shardings to restore into; else numpy arrays on the host."""
    from seqpt_jax.train import checkpoints
    kind, cfg = read_model(path)
    target = os.path.join(os.path.abspath(path), "params")
    if not os.path.isdir(target):
        if not os.path.isdir(os.path.join(path, checkpoints.SUBDIR)):
            raise UserError(f"{path} has {MODEL_FILE} but neither params/ nor {checkpoints.SUBDIR}/; point at a "
                            "complete `seqpt train` MODEL_DIR or params checkpoint.")
        return kind, cfg, checkpoints.restore_params(path, step, shardings)
    if step is not None:
        raise UserError(f"{path} is a params checkpoint with one step; drop the step.")
    ckptr = ocp.StandardCheckpointer()
    with checkpoints.quiet_orbax():
        if shardings is None:
            params = ckptr.restore(target)
        else:
            meta = ckptr.metadata(target)
            tree = meta.item_metadata if hasattr(meta, "item_metadata") else meta
            tree = getattr(tree, "tree", tree)  # orbax >= 0.11 wraps the metadata dict
            abstract = jax.tree.map(lambda m, s: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=s),
                                    tree, shardings)
            params = ckptr.restore(target, abstract)
    return kind, cfg, params
