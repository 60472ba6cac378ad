"""The trainer: `train(model_dir, model, data, ...)` (what gin binds as `loop.train.X`) makes a
frozen `TrainConfig`, `setup(config)` builds what the steps need (a `Trainer`), and `run(config)`
is the loop, read top to bottom:

    set-up      mesh, parameter shapes and shardings, optimizer, phases (setup)
    data        the source, its first batch, the run's record (run.json, `run_dir.RECORDED`)
    state       the last checkpoint, or the init hook's params
    the loop    per step: its phase's compiled step, loss checked one step behind (the device is
                never stalled), tokens / FLOPs / throughput, logs, evaluation, checkpoints, stop
    summary     summary.json

Phases (`train.phases`): bert2BERT sub-models sampled per step, then frozen, then unfrozen; or
distillation from a teacher, then plain training. The loss is always checked right before a
save, so a NaN never reaches a checkpoint. MODEL_DIR is locked for the run; a resume must keep
the recorded settings. SIGTERM / SIGINT stop after the current step with a checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from typing import Any, Callable, Sequence

import jax
import numpy as np

from seqpt_jax import models, params_io
from seqpt_jax.errors import UserError
from seqpt_jax.train import (checkpoints, data as data_lib, distill as distill_lib, metrics as metrics_lib,
                             partitioning, perf, preemption, run_dir, state as state_lib, step as step_lib, validate)
from seqpt_jax.train.config import TrainConfig, TwoStage, kind_of
from seqpt_jax.train.optimizers import OptimizerConfig, make_optimizer
from seqpt_jax.train.phases import (Phase, late_params, phase_at, phase_flops, phase_model, phases,  # noqa: F401
                                    sample_index)


class Diverged(UserError):
    """The loss became NaN or inf; the last good checkpoint is kept."""

    exit_code = 3


def train(model_dir: str, model, data: Callable, *, steps: int, batch_size: int,
          optimizer: OptimizerConfig = OptimizerConfig(), mesh_shape: Sequence[int] = (-1, 1, 1),
          rules: str = "dp", grad_accum: int = 1, z_loss: float = 0.0, seed: int = 0,
          save_every: int = 100, keep: int = 3, keep_every: int = 0, async_checkpoints: bool = True,
          eval_every: int = 0, eval_batches: int = 2, log_every: int = 10,
          freeze: Sequence[str] = (), unfreeze_step: int = 0, two_stage: TwoStage | None = None,
          init: state_lib.InitFn | None = None, encoder_mlm_weight: float = 0.0,
          distill: distill_lib.Distill | None = None, progress: bool | None = None,
          on_step: Callable[[int, Any], None] | None = None,
          on_ready: Callable[[], None] | None = None,
          then: Callable[[TrainConfig], Any] | None = None) -> dict:
    """Trains `model` for `steps` optimizer steps; returns the run summary (also summary.json).

    data: a source factory `(split, batch_size, seed, shard) -> source` (see `train.data`).
    init: the init hook `(rng, abstract params with shardings) -> params` (default: the model's
      initialisers; `state.from_param_checkpoint(path)` or a mapping for warm starts).
    freeze / unfreeze_step: path regexes frozen (stop-gradient) for steps < unfreeze_step; those
      params get an optimizer state and step count of their own from unfreeze_step on.
    two_stage: bert2BERT's sampled sub-model stage, run first.
    encoder_mlm_weight: > 0 (seq2seq only) adds an MLM head on the encoder (`mlm_head/`) and
      its loss on `mlm_targets`/`mlm_weights`: loss = (sum decoder CE + w sum encoder MLM CE)
      / decoder target tokens (seq2seq_masked_encoder.gin). 0: plain seq2seq, no head.
    distill: small-model assistance (`train.distill`): for the first `distill.steps` steps (the
      `distill` phase) the loss adds a KD term towards the teacher model's predictions; the
      teacher is loaded only while that phase runs. Weight 0 or 0 steps: plain training.
    keep / keep_every: the newest `keep` checkpoints are kept; keep_every > 0 also saves and
      keeps every multiple of it (a run to evaluate along the way, e.g. downstream against FLOPs).
    on_step(step, state): called after every step (e.g. notebooks, tests).
    then: what to do with the config (default `run`); the launcher passes `lambda c: c` to read
      the config gin binds without training.

    A resume must keep the recorded settings (`run_dir.RECORDED`). SIGTERM / SIGINT stop after
    the current step with a checkpoint; the summary then has `stopped` (the signal) and
    `stopped_at` (`preemption`).
    """
    arguments = dict(locals())
    del arguments["then"]
    return (then or run)(TrainConfig.of(**arguments))


# ---------------------------------------------------------------------------------------------
# Set-up: everything the steps need, built from the config alone (no data, no checkpoint).

@dataclasses.dataclass(frozen=True)
class Trainer:
    config: TrainConfig
    kind: str
    model: Any               # as trained: a seq2seq model has its encoder MLM head iff that loss is on
    mesh: Any
    table: Any               # logical-axis rules
    shapes: Any              # parameter ShapeDtypeStructs
    shardings: Any
    tx: Any
    lr_schedule: Callable
    phases: list

    @property
    def cfg(self):
        return self.model.cfg

    @functools.cached_property
    def teacher(self) -> tuple | None:
        """(Distill, teacher model) of a distilling run (reads the teacher's model.json), else None."""
        spec = self.config.recipe.distill
        return build_teacher(self.kind, self.cfg, spec) if spec is not None else None

    def phase_at(self, step: int) -> Phase:
        return phase_at(self.phases, step, self.config.schedule.seed)

    def step_fn(self, phase: Phase):
        """The compiled train step of `phase` (a distill phase loads the teacher's params)."""
        step_model, _, sub = phase_model(self.kind, self.cfg, self.model, phase)
        teacher = load_teacher(self.teacher, self.mesh, self.table) if phase.distill else None
        o = self.config.optimization
        return step_lib.make_train_step(step_model, self.tx, self.lr_schedule, phase.trainable, self.mesh,
                                        self.table, grad_accum=self.config.schedule.grad_accum, z_loss=o.z_loss,
                                        encoder_mlm_weight=self.config.recipe.encoder_mlm_weight, sub_model=sub,
                                        teacher=teacher)

    def phase_flops(self, phase: Phase, enc: int, dec: int, head: int | None = None,
                    teacher: tuple | None = None) -> float:
        """The ledger's FLOPs of one step of `phase` on batches of these lengths (`teacher`: its
        (config, shapes); default this run's teacher, read from its checkpoint)."""
        if phase.distill and teacher is None:
            teacher = teacher_shapes(self.teacher[1])
        return phase_flops(self.kind, self.cfg, self.shapes, phase, self.config.schedule.batch_size, enc, dec,
                           head, teacher if phase.distill else None)

    def batch_flops(self, phase: Phase, batch: dict) -> float:
        enc = batch["encoder_input_tokens"].shape[1]
        dec = batch["decoder_input_tokens"].shape[1] if "decoder_input_tokens" in batch else 0
        head = batch["mlm_positions"].shape[1] if "mlm_positions" in batch else None
        return self.phase_flops(phase, enc, dec, head)

    def initial_params(self):
        """The params a fresh run starts from (the init hook, or the model's initialisers)."""
        init = self.config.recipe.init or state_lib.fresh_init(self.model)
        return state_lib.initial_params(init, self.shapes, self.shardings, self.config.schedule.seed)

    def new_state(self):
        init = self.config.recipe.init or state_lib.fresh_init(self.model)
        return state_lib.create(init, self.tx, self.shapes, self.shardings, self.mesh, self.config.schedule.seed)

    def abstract_state(self):
        return state_lib.abstract_state(self.tx, self.shapes, self.shardings, self.mesh)

    @functools.cached_property
    def eval_step(self):
        return step_lib.make_eval_step(self.model, self.mesh, self.table, self.config.optimization.z_loss,
                                       self.config.recipe.encoder_mlm_weight)

    @functools.cached_property
    def heldout(self) -> list[dict]:
        """This host's rows of the `eval_batches` validation batches, built once: every evaluation
        uses the same ones, and building them costs the host more than evaluating small models."""
        s = self.config.schedule
        source = self.config.data("validation", s.batch_size, s.seed, (jax.process_index(), jax.process_count()))
        return [next(source) for _ in range(self.config.evaluation.eval_batches)]

    def evaluate(self, params) -> dict:
        """Mean loss and accuracy over `eval_batches` validation batches (the same ones each time),
        and each batch's mean loss ("batch_losses": the eval noise of experiment.savings)."""
        total, batch_losses = None, []
        for batch in self.heldout:
            sums = self.eval_step(params, data_lib.to_global(batch, self.mesh))
            batch_losses.append(float(sums.loss) / max(float(sums.weight), 1.0))
            total = sums if total is None else type(sums)(*(a + b for a, b in zip(total, sums)))
        weight = max(float(total.weight), 1.0)
        return {"loss": float(total.loss) / weight, "accuracy": float(total.correct) / weight,
                "batch_losses": batch_losses}

    def record(self, first: dict) -> dict:
        """What run.json records and compares on resume (`run_dir.RECORDED` / `MAY_CHANGE`)."""
        r, s = self.config.recipe, self.config.schedule
        model = {k: v for k, v in self.cfg.to_dict().items() if k not in run_dir.MODEL_FIELDS_MAY_CHANGE}
        # the kind's settings beside its config (electra: generator width, RTD weight)
        model.update({k: getattr(self.model, k) for k in models.OPTIONS.get(self.kind, ())})
        schedule = {"freeze": list(r.freeze), "unfreeze_step": r.unfreeze_step if r.freeze else 0,
                    "two_stage": dataclasses.asdict(r.two_stage) if r.two_stage else None}
        if r.distill is not None:  # only then, so runs recorded before distillation existed still resume
            schedule["distill"] = r.distill.record()
        return {"kind": self.kind, "model": model, "batch_size": s.batch_size, "seed": s.seed,
                "optimizer": self.config.optimization.optimizer.name,
                "schedule": json.loads(json.dumps(schedule, default=list)),
                "data": run_dir.batch_signature(first, jax.process_count())}


def setup(config: TrainConfig) -> Trainer:
    """The trainer of `config`: what `run` and anything that prices, times or evaluates the
    run's steps (the experiment's plan and init evaluation, `seqpt bench`) share."""
    kind, model = config.kind, config.model
    r, s = config.recipe, config.schedule
    if kind == "encoder_decoder":  # the encoder MLM head exists exactly when its loss is on
        model = model.clone(encoder_mlm_head=r.encoder_mlm_weight > 0)
    mesh = partitioning.make_mesh(config.optimization.mesh_shape)
    table = partitioning.rules(config.optimization.rules)
    split_rows = mesh.shape["data"] * mesh.shape["fsdp"] * s.grad_accum
    if s.batch_size % split_rows:
        raise UserError(f"batch_size {s.batch_size} must divide by data x fsdp x grad_accum = {split_rows}.")
    shapes = models.param_shapes(model)
    shardings = partitioning.shardings(models.logical_axes(model), shapes, table, mesh)
    tx, lr_schedule = make_optimizer(config.optimization.optimizer, shapes, s.steps,
                                     late=late_params(shapes, r.freeze, r.unfreeze_step), late_start=r.unfreeze_step)
    all_phases = phases(shapes, s.steps, r.freeze, r.unfreeze_step, r.two_stage,
                        r.distill.steps if r.distill else 0)
    return Trainer(config, kind, model, mesh, table, shapes, shardings, tx, lr_schedule, all_phases)


# ---------------------------------------------------------------------------------------------
# The run.

def run(config: TrainConfig) -> dict:
    """Trains as `config` says; returns the run summary (also MODEL_DIR/summary.json)."""
    validate.steps(config.schedule.steps)
    model_dir = run_dir.resolve(config.model_dir)
    run_dir.check_writable(model_dir)
    with run_dir.locked(model_dir), contextlib.ExitStack() as cleanup:
        # ----- set-up ---------------------------------------------------------------------------
        trainer = setup(config)
        trainer.teacher  # noqa: B018 - a distilling run reads its teacher's model.json before anything else
        s, c, e = config.schedule, config.checkpointing, config.evaluation
        steps = s.steps

        # ----- data: the source, its first batch, the run's record --------------------------------
        source = config.data("train", s.batch_size, s.seed, (jax.process_index(), jax.process_count()))
        first = _peek(source)
        validate.batch_fits(first, trainer.cfg)
        record = trainer.record(first)
        run_dir.on_process_0(
            lambda: run_dir.check_record(model_dir, record, bool(checkpoints.committed_steps(model_dir))),
            "checking the run's recorded settings")

        # ----- state: the last checkpoint, else the init -------------------------------------------
        ckpt = checkpoints.Checkpointer(model_dir, keep=c.keep, keep_period=c.keep_every,
                                        async_save=c.async_checkpoints)
        cleanup.callback(ckpt.close)
        restored = ckpt.restore_latest(trainer.abstract_state())
        if restored is None:
            state, data_state, meta = trainer.new_state(), None, {"tokens": 0, "flops": 0.0, "first_loss": None}
        else:
            state, data_state, meta = restored
        start = int(state.step)
        if jax.process_index() == 0:
            run_dir.ensure_record(model_dir, record)
            run_dir.write_model(model_dir, trainer.kind, trainer.cfg)
        if config.hooks.on_ready is not None:
            config.hooks.on_ready()
        if data_state is not None:
            source.restore(data_state)
        feed = data_lib.Prefetcher(source)
        run_log = metrics_lib.RunLog(model_dir, steps, start, e.progress)
        cleanup.callback(run_log.close)
        if start:
            run_log.message(f"resumed from step {start} in {ckpt.directory}")
        if start >= steps:
            run_log.message(f"already at step {start}, at or past steps={steps}: nothing to train; raise "
                            f"TRAIN_STEPS to continue")
        stop_requests = cleanup.enter_context(preemption.StopRequests())

        # ----- the loop ---------------------------------------------------------------------------
        compiled: dict = {}       # phase name -> (step fn, FLOPs per step)
        peak, peak_note = perf.peak_flops_per_device()
        timer = perf.Throughput(len(jax.devices()), peak)
        timed = None              # the phase group being timed (sampled sub-models are timed together)
        pending = None            # (step, metrics) not yet checked for NaN
        last_loss, stop = None, None
        final_eval = None         # the evaluation at the last step, when the run makes one

        def check(step, metrics) -> float:
            loss = float(metrics["loss"])
            if not np.isfinite(loss):
                good = ckpt.steps()
                raise Diverged(f"loss became {loss} at step {step}; stopped without saving. The last good "
                               f"checkpoint is step {good[-1] if good else 'none'} in {ckpt.directory}; lower "
                               f"the learning rate or raise warmup_steps and rerun to resume from it.")
            return loss

        for step in range(start, steps):
            # one step: its phase's compiled function on the next batch
            phase = trainer.phase_at(step)
            local = next(feed)
            fresh = phase.name not in compiled
            if fresh:
                compiled[phase.name] = (trainer.step_fn(phase), trainer.batch_flops(phase, local))
                run_log.message(f"phase {phase.name} until step {phase.end}: "
                                f"{compiled[phase.name][1] / 1e9:.3f} GFLOP/step; peak {peak_note}")
            if fresh or phase.group != timed:
                timer.close()
            fn, flops = compiled[phase.name]
            state, metrics = fn(state, data_lib.to_global(local, trainer.mesh))

            # the previous step's loss, now that this one is queued
            if pending is not None:
                last_loss = check(*pending)
                if meta.get("first_loss") is None:
                    meta["first_loss"] = last_loss
            pending = (step + 1, metrics)

            # bookkeeping: tokens, the FLOPs ledger, throughput (the step that compiled is not timed)
            tokens = _batch_tokens(local, trainer.cfg.pad_id)
            meta["tokens"] += tokens
            meta["flops"] += flops
            by_phase = meta.setdefault("flops_by_phase", {})  # e.g. encoder frozen vs unfrozen
            by_phase[phase.name] = by_phase.get(phase.name, 0.0) + flops
            if fresh or phase.group != timed:
                timer.start(phase.group, metrics)
                timed = phase.group
            else:
                timer.add(tokens, flops, metrics)
            done = step + 1
            run_log.advance()

            # logs and evaluation (eval time is not training time)
            if done % e.log_every == 0 or done == steps:
                values = {k: float(v) for k, v in metrics.items()}
                values.update(timer.close())
                values["cumulative_flops"] = meta["flops"]
                run_log.log(done, values)
            if e.eval_every and (done % e.eval_every == 0 or done == steps):
                timer.close()
                scores = trainer.evaluate(state.params)
                run_log.log(done, {k: scores[k] for k in ("loss", "accuracy")}, prefix="eval")
                if done == steps:  # the final parameters' scores, per batch too (the eval noise)
                    final_eval = scores
                timer.start(phase.group)

            # checkpoints, after checking the loss (nor is saving training time)
            stop = stop_requests.at(done) if done < steps else None
            kept = c.keep_every and done % c.keep_every == 0
            if stop or kept or done % c.save_every == 0 or done == steps:
                timer.close()
                last_loss = check(*pending)
                pending = None
                meta["last_loss"] = last_loss
                ckpt.save(done, state, feed.state(), meta)
                timer.start(phase.group)
            if config.hooks.on_step is not None:
                config.hooks.on_step(done, state)
            if stop:
                run_log.message(f"stopped by {stop} after step {done}; checkpoint {done} saved in {ckpt.directory}")
                break

        # ----- summary ----------------------------------------------------------------------------
        timer.close()
        if pending is not None:
            last_loss = check(*pending)
        ckpt.wait()
        feed.close()
        summary = {"steps": steps, "kind": trainer.kind, "first_loss": meta.get("first_loss"),
                   "last_loss": last_loss, "tokens": meta["tokens"], "train_flops": meta["flops"],
                   "flops_by_phase": dict(meta.get("flops_by_phase", {})), "checkpoints": ckpt.steps(),
                   "phases": [p.name for p in trainer.phases], "throughput": timer.summary(),
                   "peak": peak_note, "stopped": stop, "stopped_at": int(state.step) if stop else None}
        run_log.message("done: " + json.dumps(summary))
        summary["final_eval"] = final_eval  # not in the log line: its batch_losses are long
    if jax.process_index() == 0:
        run_dir.write_summary(model_dir, summary)
    return summary


def _peek(source) -> dict:
    """The source's first batch, leaving the source where it was."""
    start = source.state()
    batch = next(source)
    source.restore(start)
    return batch


def _batch_tokens(batch: dict, pad_id: int) -> int:
    n = int(np.sum(batch["encoder_input_tokens"] != pad_id))
    if "decoder_target_tokens" in batch:
        n += int(np.sum(batch["decoder_target_tokens"] != 0))
    return n * jax.process_count()


# ---------------------------------------------------------------------------------------------
# Distillation's teacher.

def build_teacher(kind: str, cfg, distill: distill_lib.Distill) -> tuple:
    """(distill, the teacher's model) from its model.json, checked against the run's model; the
    teacher runs on this run's hardware settings (dtype, remat, scan unroll)."""
    t_kind, t_cfg = params_io.read_model(distill.teacher)
    distill_lib.check_teacher(kind, cfg, t_kind, t_cfg, distill.teacher)
    t_cfg = t_cfg.replace(**{f: getattr(cfg, f) for f in run_dir.MODEL_FIELDS_MAY_CHANGE})
    return distill, models.build(kind, t_cfg)


def teacher_shapes(teacher_model) -> tuple:
    """(config, param shapes) of a teacher model, what `phase_flops` counts its forward pass on."""
    return teacher_model.cfg, models.param_shapes(teacher_model)


def load_teacher(teacher: tuple, mesh, table) -> tuple:
    """(teacher model, its params sharded like a model of its own, Distill) for the distill step."""
    spec, t_model = teacher
    shapes = models.param_shapes(t_model)
    shardings = partitioning.shardings(models.logical_axes(t_model), shapes, table, mesh)
    _, _, params = params_io.load(spec.teacher, shardings=shardings)
    return t_model, params, spec


_kind = kind_of  # the trainer's kind check, by its old name
