"""A run's numbers, checked once before anything starts: one line naming the setting and the fix.

Gin passes whatever was written (`--gin.TRAIN_STEPS=abc` is the string 'abc'), so types are
checked here too. Names are the `loop.train` / `OptimizerConfig` parameters; the usual gin
macro that sets each is given in the message.
"""

from __future__ import annotations

import math
import numbers

from seqpt_jax.errors import UserError

MACROS = {"steps": "TRAIN_STEPS", "batch_size": "BATCH_SIZE", "learning_rate": "LEARNING_RATE",
          "warmup_steps": "WARMUP_STEPS"}


def _where(name: str, owner: str) -> str:
    macro = MACROS.get(name)
    return f"--gin.{macro}" if macro else f"--gin.{owner}.{name}"


def _integer(name: str, value, owner: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UserError(f"{owner}.{name} must be an integer, got {value!r}; set {_where(name, owner)}=N.")
    if value < minimum:
        need = "positive" if minimum == 1 else f">= {minimum}"
        raise UserError(f"{owner}.{name} must be {need}, got {value}; set {_where(name, owner)}=N.")


def _real(name: str, value, owner: str, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise UserError(f"{owner}.{name} must be a finite number, got {value!r}; set {_where(name, owner)}.")
    if value < 0 or (positive and value == 0):
        raise UserError(f"{owner}.{name} must be {'positive' if positive else '>= 0'}, got {value}; "
                        f"set {_where(name, owner)}.")


def train_args(*, steps, batch_size, grad_accum, seed, save_every, keep, eval_every, eval_batches,
               log_every, unfreeze_step, z_loss, keep_every=0, min_steps=1) -> None:
    """`min_steps` 0: steps = 0 is a config that is only initialised and evaluated (an experiment's
    init arm); training it needs `steps(...)`."""
    owner = "loop.train"
    init_only = min_steps == 0 and isinstance(steps, numbers.Integral) and steps == 0
    for name, value, minimum in [("steps", steps, 0 if init_only else 1), ("batch_size", batch_size, 1), ("grad_accum", grad_accum, 1),
                                 ("seed", seed, 0), ("save_every", save_every, 1), ("keep", keep, 1), ("keep_every", keep_every, 0),
                                 ("eval_every", eval_every, 0), ("eval_batches", eval_batches, 1),
                                 ("log_every", log_every, 1), ("unfreeze_step", unfreeze_step, 0)]:
        _integer(name, value, owner, minimum)
    _real("z_loss", z_loss, owner, positive=False)


def steps(value) -> None:
    """A run trains at least one step."""
    _integer("steps", value, "loop.train", 1)


def optimizer(cfg) -> None:
    owner = "optimizers.OptimizerConfig"
    _real("learning_rate", cfg.learning_rate, owner, positive=False)  # 0 is allowed: a frozen run
    _integer("warmup_steps", cfg.warmup_steps, owner, 0)
    for name in ("weight_decay", "end_fraction", "b1", "b2", "eps"):
        _real(name, getattr(cfg, name), owner, positive=False)
    if cfg.clip_norm is not None:
        _real("clip_norm", cfg.clip_norm, owner, positive=True)


def batch_fits(batch: dict, cfg) -> None:
    """Sequence lengths of the first batch against the model (learned positions have a maximum)."""
    for key, x in batch.items():
        if not key.endswith("_tokens"):  # token sequences; mlm_positions etc. index into them
            continue
        if x.ndim < 2 or x.shape[1] < 1:
            raise UserError(f"data feature {key!r} has no sequence positions (shape {tuple(x.shape)}); "
                            f"give it a positive length (e.g. --gin.INPUT_LENGTH=128).")
        room = cfg.max_length - cfg.position_offset
        if cfg.positions == "absolute" and x.shape[1] > room:
            raise UserError(f"data feature {key!r} is {x.shape[1]} tokens long but the model has {room} "
                            f"positions; lower the sequence length (--gin.INPUT_LENGTH) to at most {room}.")
