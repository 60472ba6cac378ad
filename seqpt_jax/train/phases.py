"""A run cut into phases, in order: bert2BERT's sampled sub-models (one phase each, sharing the
stage's end), frozen steps, then the full model; or distillation from a teacher, then the full
model. Each phase is one compiled step (`loop.Trainer.step_fn`) and one price in the ledger
(`phase_flops`); a resumed run draws the same sub-model for a step (`phase_at`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import numpy as np

from seqpt_jax.errors import UserError
from seqpt_jax.train import freezing, perf
from seqpt_jax.train.config import TwoStage


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str
    end: int                                  # first step after this phase
    trainable: Any
    sub: freezing.SubModel | None = None
    distill: bool = False                     # the step also runs the teacher (train.distill)

    @property
    def group(self) -> str:
        """Sub-models sampled in one stage share a group ('stage1')."""
        return self.name.split("/")[0]


def phases(params, total_steps: int, freeze: Sequence[str] = (), unfreeze_step: int = 0,
           two_stage: TwoStage | None = None, distill_steps: int = 0) -> list[Phase]:
    """The run cut into phases, in order: the sampled sub-models of the two-stage stage (one
    phase each, sharing `end`), frozen steps, then the full model; with `distill_steps` (the
    full model only), the distillation phase, then the full model."""
    out, start = [], 0
    if distill_steps > 0:
        if (freeze and unfreeze_step > 0) or (two_stage is not None and two_stage.steps > 0):
            raise UserError("distillation does not combine with freezing or a two-stage stage yet; drop "
                            "loop.train.distill or the freeze / two_stage settings.")
        out.append(Phase("distill", distill_steps, freezing.all_trainable(params), distill=True))
    if two_stage is not None and two_stage.steps > 0:
        layers = params["encoder"]["layers"]
        depth = jax.tree.leaves(layers)[0].shape[0]
        start = two_stage.steps
        for sub in freezing.two_stage_sub_models(depth, two_stage.block, two_stage.train_embeddings,
                                                 two_stage.train_head):
            out.append(Phase(f"stage1/sub{sub.num_layers // two_stage.block}", start,
                             freezing.sub_model_trainable(params, sub), sub))
    if freeze and unfreeze_step > start:
        out.append(Phase("frozen", unfreeze_step, freezing.freeze_by_regex(params, freeze)))
    out.append(Phase("full", max(total_steps, 1), freezing.all_trainable(params)))
    return out


def sample_index(seed: int, step: int, n: int) -> int:
    """Uniform in [0, n), a function of (seed, step) only, so a resumed run draws the same."""
    return int(np.random.default_rng([seed, step, 2]).integers(n))


def phase_at(all_phases: list[Phase], step: int, seed: int = 0) -> Phase:
    """The phase of `step`; among sub-models sharing an end, the one sampled for this step."""
    phase = next((p for p in all_phases if step < p.end), all_phases[-1])
    if phase.sub is None:
        return phase
    here = [p for p in all_phases if p.sub is not None and p.group == phase.group]
    return here[sample_index(seed, step, len(here))]


def late_params(shapes, freeze: Sequence[str], unfreeze_step: int):
    """Bool tree: the params frozen until `unfreeze_step` (they get an optimizer of their own)."""
    if not freeze or unfreeze_step <= 0:
        return None
    return jax.tree.map(lambda t: not t, freezing.freeze_by_regex(shapes, freeze))


def phase_model(kind: str, cfg, model, phase: Phase):
    """(model, cfg, sub-model or None) of the step a phase runs."""
    if phase.sub is None:
        return model, cfg, None
    sub_cfg = freezing.sub_model_config(cfg, phase.sub)
    return model.clone(cfg=sub_cfg), sub_cfg, phase.sub  # keeps the model's flags (encoder_mlm_head)


def phase_flops(kind: str, cfg, shapes, phase: Phase, batch_size: int, enc: int, dec: int,
                head_positions: int | None = None, teacher: tuple | None = None) -> float:
    """The ledger's FLOPs of one step of `phase` (perf.train_flops on what the step runs;
    head_positions: rows' positions the MLM head runs on, default all). A distill phase adds
    the forward pass of `teacher` = (its config, its param shapes) on the same batch."""
    extra = 0.0
    if phase.distill:
        if teacher is None:
            raise ValueError("a distill phase's FLOPs need the teacher's (config, shapes)")
        t_cfg, t_shapes = teacher
        extra = perf.forward_flops(kind, t_cfg, t_shapes, batch_size, enc, dec, head_positions)
    if phase.sub is not None:
        cfg = freezing.sub_model_config(cfg, phase.sub)
        shapes = freezing.sub_model_view(shapes, phase.sub)
        trainable = freezing.uniform(freezing.sub_model_view(phase.trainable, phase.sub))
    else:
        trainable = phase.trainable
    return perf.train_flops(kind, cfg, shapes, trainable, batch_size, enc, dec, head_positions)["total"] + extra
