"""Optimizers and learning-rate schedules (optax), with path-based masks and multipliers.

Paths are '/'-joined parameter names (`encoder/layers/mlp/wi/kernel`); every mask or
multiplier is a list of regexes searched (`re.search`) in those paths, so gin files say
`decay_exclude = ['bias$', 'scale$']` or `lr_multipliers = {'^encoder/': 0.1}`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from seqpt_jax.errors import UserError

# Norm scales/biases, biases and position tables are not decayed (BERT / T5X practice).
DEFAULT_DECAY_EXCLUDE = ("bias$", "scale$", "norm/", "relpos_bias/")


def path_of(key_path) -> str:
    """'encoder/layers/mlp/wo/kernel' for a jax key path."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in key_path)


def path_tree(tree):
    """A tree like `tree` whose leaves are their '/'-joined paths."""
    return jax.tree_util.tree_map_with_path(lambda p, _: path_of(p), tree)


def regex_mask(tree, patterns: Sequence[str]):
    """Bool tree: True where a leaf's path matches any of `patterns`."""
    compiled = [re.compile(p) for p in patterns]
    return jax.tree.map(lambda p: any(c.search(p) for c in compiled), path_tree(tree))


def make_schedule(peak: float, total_steps: int, warmup_steps: int = 0, decay: str = "linear",
                  end_fraction: float = 0.0) -> optax.Schedule:
    """Linear warmup to `peak`, then `decay` in linear | cosine | rsqrt | constant."""
    warmup_steps = max(int(warmup_steps), 0)
    if decay not in ("linear", "cosine", "rsqrt", "constant"):
        raise UserError(f"unknown decay {decay!r}; use linear, cosine, rsqrt or constant.")
    rest = max(int(total_steps) - warmup_steps, 1)
    end = peak * end_fraction
    if decay == "linear":
        after = optax.linear_schedule(peak, end, rest)
    elif decay == "cosine":
        after = optax.cosine_decay_schedule(peak, rest, alpha=end_fraction)
    elif decay == "rsqrt":  # T5: peak * sqrt(warmup / step) after warmup.
        w = max(warmup_steps, 1)
        after = lambda count: peak * jnp.sqrt(w / (count + w))  # noqa: E731
    else:
        after = optax.constant_schedule(peak)
    if not warmup_steps:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup_steps), after], [warmup_steps])


def scale_by_path(multipliers: dict[str, float]) -> optax.GradientTransformation:
    """Multiplies each leaf's update by the multiplier of the first matching regex (else 1)."""
    compiled = [(re.compile(p), float(m)) for p, m in (multipliers or {}).items()]

    def factor(path: str) -> float:
        return next((m for c, m in compiled if c.search(path)), 1.0)

    def update(updates, state, params=None):
        del params
        factors = jax.tree.map(factor, path_tree(updates))
        return jax.tree.map(lambda u, f: u if f == 1.0 else u * f, updates, factors), state

    return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def multipliers_for(patterns: Sequence[str], factor: float) -> dict:
    """`lr_multipliers` giving every path matching one of `patterns` the factor (e.g. the
    encoder side of a warm start: `freezing.ENCODER_SIDE`)."""
    return {p: float(factor) for p in patterns}


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """What a run's optimizer is; gin binds this dataclass."""

    name: str = "adamw"                  # adamw | adafactor
    learning_rate: float = 1e-3
    warmup_steps: int = 0
    decay: str = "linear"                # linear | cosine | rsqrt | constant
    end_fraction: float = 0.0
    weight_decay: float = 0.01
    decay_exclude: tuple = DEFAULT_DECAY_EXCLUDE
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    clip_norm: float | None = 1.0
    lr_multipliers: dict | None = None  # {path regex: factor}, e.g. {'^encoder/': 0.1}
    # Params frozen until an unfreeze step get an optimizer of their own (state and step count
    # from the unfreeze step on) with this warmup on their own count (None: warmup_steps).
    late_warmup_steps: int | None = None
    # AdamW's first-moment dtype: 'bfloat16' halves that state's memory and HBM traffic (an
    # option; not measured to pay, so no hw gin sets it). None: the params' dtype (float32).
    mu_dtype: str | None = None


def late_schedule(schedule: optax.Schedule, start: int, warmup_steps: int) -> optax.Schedule:
    """The rate of params that start training at step `start`, on their own count c:
    `schedule(start + c) * min(1, (c + 1) / warmup_steps)` (factor 1 when warmup_steps is 0)."""
    warmup = max(int(warmup_steps), 0)

    def rate(count):
        factor = jnp.minimum(1.0, (count + 1.0) / warmup) if warmup else 1.0
        return schedule(count + start) * factor

    return rate


def _core(cfg: OptimizerConfig, schedule, decay_mask) -> optax.GradientTransformation:
    if cfg.name == "adamw":
        return optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                           mask=decay_mask, mu_dtype=None if cfg.mu_dtype is None else jnp.dtype(cfg.mu_dtype))
    if cfg.name == "adafactor":
        return optax.adafactor(schedule, weight_decay_rate=cfg.weight_decay or None,
                               weight_decay_mask=decay_mask)
    raise UserError(f"unknown optimizer {cfg.name!r}; use adamw or adafactor.")


LATE, ALWAYS = "late", "always"


def make_optimizer(cfg: OptimizerConfig, params, total_steps: int, late=None,
                   late_start: int = 0) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optimizer, schedule) for params of this tree structure.

    late: a bool tree, True for params frozen until step `late_start`. They get an optimizer
    of their own (`optax.multi_transform` groups 'always' / 'late'); the train step keeps a
    group's whole state while none of its params trains, so the late group's moments and
    step count start at 0 at `late_start`, with `late_schedule`'s warmup. Clipping is global.
    """
    schedule = make_schedule(cfg.learning_rate, total_steps, cfg.warmup_steps, cfg.decay, cfg.end_fraction)
    decay_mask = jax.tree.map(lambda x: not x, regex_mask(params, cfg.decay_exclude))
    core = _core(cfg, schedule, decay_mask)
    if late is not None and any(jax.tree.leaves(late)) and late_start > 0:
        warmup = cfg.warmup_steps if cfg.late_warmup_steps is None else cfg.late_warmup_steps
        late_tx = _core(cfg, late_schedule(schedule, late_start, warmup), decay_mask)
        labels = jax.tree.map(lambda t: LATE if t else ALWAYS, late)
        core = optax.multi_transform({ALWAYS: core, LATE: late_tx}, labels)
    chain = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm else []
    chain.append(core)
    if cfg.lr_multipliers:
        chain.append(scale_by_path(cfg.lr_multipliers))
    return optax.chain(*chain), schedule
