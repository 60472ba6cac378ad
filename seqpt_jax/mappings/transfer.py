"""Take subtrees from a checkpoint, keep the rest of a fresh init, and check shapes: the one
merge behind warm start, extraction, fine-tuning transfer and the trainer's init hooks.

    params = take(fresh, checkpoint)                        # every subtree both have
    params = take(fresh, enc_params, ("encoder", "token_embedder"))
    params = take(abstract, built, exact=True)              # a tree that must be `abstract`'s

Works on arrays, ShapeDtypeStructs and jit tracers alike (only shapes are compared).
"""

from __future__ import annotations

from typing import Sequence

from seqpt_jax.errors import UserError
from seqpt_jax.mappings import checks

FIX = ("build the model with the checkpoint's config: check the model gin or preset (kind, sizes, vocab_size) "
       "against its model.json")


def _same_shapes(got, want, key: str, what: str) -> None:
    got_flat, want_flat = checks.flat({key: got}), checks.flat({key: want})
    for path in sorted(set(got_flat) | set(want_flat)):
        name = "/".join(path)
        if path not in got_flat:
            raise UserError(f"{what} lacks {name}, which the model being built has; {FIX}.")
        if path not in want_flat:
            raise UserError(f"{what} has {name}, which the model being built lacks; {FIX}.")
        a, b = tuple(got_flat[path].shape), tuple(want_flat[path].shape)
        if a != b:
            raise UserError(f"{what}'s {name} has shape {a} but the model being built needs {b}; {FIX}.")


def take(fresh: dict, source: dict, keys: Sequence[str] | None = None, *, exact: bool = False,
         what: str = "the checkpoint") -> dict:
    """`fresh` with its top-level subtrees `keys` (default: every one `source` also has) replaced
    by `source`'s, each checked to have `fresh`'s structure and shapes. `exact`: `source` must
    be the whole tree (no subtree missing or extra)."""
    if exact:
        extra = sorted(set(source) - set(fresh))
        if extra:
            raise UserError(f"{what} has {extra[0]!r}, which the model being built lacks; {FIX}.")
        keys = list(fresh)
    keys = [k for k in fresh if k in source] if keys is None else list(keys)
    out = dict(fresh)
    for key in keys:
        if key not in source:
            raise UserError(f"{what} has no {key!r}, which the model being built takes from it; {FIX}.")
        _same_shapes(source[key], fresh[key], key, what)
        out[key] = source[key]
    return out
