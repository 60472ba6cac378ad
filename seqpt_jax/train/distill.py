"""Small-model assistance: distillation from a trained (smaller) teacher during the first steps.

SALT (Rawat et al. 2024, "A Little Help Goes a Long Way") trains a large model with a knowledge-
distillation term towards a small model's predictions for its first k steps, then with the plain
objective. Here, for the steps t < k of a run (the trainer's `distill` phase):

    loss_t = (1 - w_t) * CE(labels) + w_t * KD + z-loss,
    KD     = tau^2 * sum_v -p_T(v) log p_S(v),   p = softmax(logits / tau),
    w_t    = w * (1 - t / k)      ('linear', default)   or   w   ('constant': SALT's abrupt switch),

each a weighted sum over the positions the loss uses (MLM: the masked positions; seq2seq: the
decoder targets), normalised by their weight as every loss here is (`train.losses`). From step k
on, the run is plain training: the teacher is neither loaded nor run.
docs/mappings.md ("Small-model assistance") has the semantics.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from seqpt_jax.errors import UserError

SCHEDULES = ("linear", "constant")


@dataclasses.dataclass(frozen=True)
class Distill:
    """Distil from the model at `teacher` (a params checkpoint or a `seqpt train` MODEL_DIR of
    the same kind and vocabulary) for the first `steps` steps, with weight `weight` at step 0
    decaying by `schedule`; `temperature` softens both distributions."""

    teacher: str
    steps: int
    weight: float
    temperature: float = 1.0
    schedule: str = "linear"

    @property
    def active(self) -> bool:
        """Whether any step distils: weight 0 or 0 steps is plain training, bit for bit."""
        return self.steps > 0 and self.weight > 0

    def validate(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise UserError(f"distill steps must be an integer >= 0, got {self.steps!r}; set --gin.DISTILL_STEPS.")
        if not 0.0 <= float(self.weight) <= 1.0:
            raise UserError(f"distill weight must be in [0, 1] (loss = (1-w) CE + w KD), got {self.weight}; "
                            "set --gin.DISTILL_WEIGHT.")
        if not float(self.temperature) > 0:
            raise UserError(f"distill temperature must be > 0, got {self.temperature}; set "
                            "--gin.DISTILL_TEMPERATURE.")
        if self.schedule not in SCHEDULES:
            raise UserError(f"distill schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}; "
                            "set --gin.distill.Distill.schedule.")

    def record(self) -> dict:
        """What a resume must keep (run_dir's record)."""
        return {"teacher": self.teacher, "steps": self.steps, "weight": float(self.weight),
                "temperature": float(self.temperature), "schedule": self.schedule}


def weight_at(step, weight: float, steps: int, schedule: str = "linear"):
    """w_t (a float32 scalar; `step` may be traced): the KD weight of step t, 0 from step k on."""
    t = jnp.asarray(step, jnp.float32)
    w = weight * jnp.maximum(0.0, 1.0 - t / steps) if schedule == "linear" else jnp.full((), weight, jnp.float32)
    return jnp.where(t < steps, w, 0.0).astype(jnp.float32)


def soft_cross_entropy(student_logits: jax.Array, teacher_logits: jax.Array, weights: jax.Array,
                       temperature: float = 1.0) -> jax.Array:
    """tau^2 * sum over positions of weight * H(p_T, p_S) at temperature tau, in float32 (the
    gradient of KL(p_T || p_S); the two differ by the teacher's entropy, a constant)."""
    s = student_logits.astype(jnp.float32) / temperature
    t = teacher_logits.astype(jnp.float32) / temperature
    token = -jnp.sum(jax.nn.softmax(t, -1) * jax.nn.log_softmax(s, -1), -1)
    return temperature ** 2 * jnp.sum(token * weights.astype(jnp.float32))


def loss_weights(batch: dict) -> jax.Array:
    """The weights of the positions the loss uses (`losses.loss_for`'s)."""
    return batch["decoder_loss_weights"] if "decoder_target_tokens" in batch else batch["mlm_weights"]


def check_teacher(kind: str, cfg, teacher_kind: str, teacher_cfg, path: str) -> None:
    if teacher_kind != kind:
        raise UserError(f"the distillation teacher {path} is a {teacher_kind} model; the run trains a {kind}: "
                        "point --gin.TEACHER_CHECKPOINT at a model of the same kind.")
    if teacher_cfg.vocab_size != cfg.vocab_size:
        raise UserError(f"the distillation teacher {path} has vocabulary size {teacher_cfg.vocab_size}, the run "
                        f"{cfg.vocab_size}; distil from a model trained with the same VOCAB.")
