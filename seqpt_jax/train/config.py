"""A training run's settings as one frozen value, `TrainConfig`, in a few named groups.

`loop.train`'s keyword arguments (what gin binds as `loop.train.X`) are the only place the
settings are named with their defaults; `TrainConfig.of(**arguments)` sorts them into the groups
below by field name and checks them, so a config that exists is one the trainer accepts (one
line naming the setting and the fix otherwise, `validate`).

    schedule       steps, batch_size, seed, grad_accum
    optimization   optimizer, z_loss, mesh_shape, rules
    recipe         init, freeze, unfreeze_step, two_stage, encoder_mlm_weight, distill
    checkpointing  save_every, keep, keep_every, async_checkpoints
    evaluation     eval_every, eval_batches, log_every, progress
    hooks          on_step, on_ready (set by code: notebooks, tests, the launcher)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from seqpt_jax import models
from seqpt_jax.errors import UserError
from seqpt_jax.train import distill as distill_lib, validate
from seqpt_jax.train.optimizers import OptimizerConfig


@dataclasses.dataclass(frozen=True)
class TwoStage:
    """bert2BERT's first stage: for `steps` steps, each step trains a sub-model i drawn
    uniformly from 1..L/block (L: the encoder's layers): the bottom i * block layers with the
    head, updating only their top `block` layers (and the embeddings / head if asked)."""

    block: int
    steps: int
    train_embeddings: bool = False
    train_head: bool = False


@dataclasses.dataclass(frozen=True)
class Schedule:
    steps: int
    batch_size: int          # global; the data position counts batches
    seed: int                # init, dropout and data order
    grad_accum: int


@dataclasses.dataclass(frozen=True)
class Optimization:
    optimizer: OptimizerConfig
    z_loss: float
    mesh_shape: Sequence[int]
    rules: str               # logical-axis rules (partitioning.rules)


@dataclasses.dataclass(frozen=True)
class Recipe:
    init: Callable | None                  # (rng, abstract params) -> params; None: the model's own
    freeze: tuple                          # path regexes frozen (stop-gradient) before unfreeze_step
    unfreeze_step: int
    two_stage: TwoStage | None
    encoder_mlm_weight: float              # seq2seq: the encoder MLM loss's weight (0: no head)
    distill: distill_lib.Distill | None    # None also when its weight or steps are 0


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    save_every: int
    keep: int
    keep_every: int
    async_checkpoints: bool


@dataclasses.dataclass(frozen=True)
class Evaluation:
    eval_every: int
    eval_batches: int
    log_every: int
    progress: bool | None


@dataclasses.dataclass(frozen=True)
class Hooks:
    on_step: Callable[[int, Any], None] | None   # after every step (step, state)
    on_ready: Callable[[], None] | None          # once the state exists, before the first step


GROUPS = {"schedule": Schedule, "optimization": Optimization, "recipe": Recipe, "checkpointing": Checkpointing,
          "evaluation": Evaluation, "hooks": Hooks}


def kind_of(model) -> str:
    """The trainable kind of a model (models.KINDS), or a one-line UserError."""
    for name, cls in models.KINDS.items():
        if type(model) is cls:
            return name
    raise UserError(f"train needs an encoder_mlm or encoder_decoder model, got {type(model).__name__}.")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    model_dir: str
    model: Any               # a models.KINDS module, as the gin files build it
    data: Callable           # (split, batch_size, seed, shard) -> source (train.data)
    schedule: Schedule
    optimization: Optimization
    recipe: Recipe
    checkpointing: Checkpointing
    evaluation: Evaluation
    hooks: Hooks

    @classmethod
    def of(cls, model_dir, model, data, **settings) -> TrainConfig:
        """The config of `loop.train`'s arguments, each sorted into its group by name."""
        groups = {name: {f.name: settings.pop(f.name) for f in dataclasses.fields(group)}
                  for name, group in GROUPS.items()}
        if settings:
            raise TypeError(f"unknown training settings: {', '.join(sorted(settings))}")
        recipe = groups["recipe"]
        recipe["freeze"] = tuple(recipe["freeze"] or ())
        if recipe["distill"] is not None:
            recipe["distill"].validate()
            if not recipe["distill"].active:  # weight 0 / 0 steps: plain training, bit for bit
                recipe["distill"] = None
        return cls(model_dir, model, data, **{name: GROUPS[name](**kw) for name, kw in groups.items()})

    def __post_init__(self):
        s, c, e, o, r = self.schedule, self.checkpointing, self.evaluation, self.optimization, self.recipe
        validate.train_args(steps=s.steps, batch_size=s.batch_size, grad_accum=s.grad_accum, seed=s.seed,
                            save_every=c.save_every, keep=c.keep, keep_every=c.keep_every, eval_every=e.eval_every,
                            eval_batches=e.eval_batches, log_every=e.log_every, unfreeze_step=r.unfreeze_step,
                            z_loss=o.z_loss, min_steps=0)  # 0: init only; `loop.run` needs >= 1
        validate.optimizer(o.optimizer)
        if s.batch_size % s.grad_accum:
            raise UserError(f"batch_size {s.batch_size} must divide by grad_accum {s.grad_accum}.")
        kind = kind_of(self.model)
        if r.encoder_mlm_weight < 0 or (r.encoder_mlm_weight and kind != "encoder_decoder"):
            raise UserError(f"encoder_mlm_weight={r.encoder_mlm_weight} needs an encoder_decoder model and a "
                            f"weight >= 0; set loop.train.encoder_mlm_weight = 0 for {kind}.")
        if r.distill is not None and r.encoder_mlm_weight:
            raise UserError("distillation does not combine with the encoder MLM loss yet; set "
                            "loop.train.encoder_mlm_weight = 0 or drop loop.train.distill.")

    @property
    def kind(self) -> str:
        return kind_of(self.model)
