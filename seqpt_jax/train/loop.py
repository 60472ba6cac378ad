"""The training loop: `train(model_dir, model, data, ...)`, the function `seqpt train` calls.

It resumes from MODEL_DIR when a checkpoint is there, builds one compiled step per *phase*
(bert2BERT sub-models sampled per step, then frozen, then unfrozen; or distillation from a
teacher, then plain training), and logs loss, learning rate, tokens/s, MFU and cumulative FLOPs.
Loss is checked one step behind (so the device is never stalled) and always right before a save,
so a NaN never reaches a checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Sequence

import jax
import numpy as np
from etils import epath

from seqpt_jax import models, params_io
from seqpt_jax.errors import UserError
from seqpt_jax.train import (checkpoints, data as data_lib, distill as distill_lib, freezing,
                             metrics as metrics_lib, partitioning, perf, preemption, run_dir, state as state_lib,
                             step as step_lib, validate)
from seqpt_jax.train.optimizers import OptimizerConfig, make_optimizer


class Diverged(UserError):
    """The loss became NaN or inf; the last good checkpoint is kept."""

    exit_code = 3


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


def _kind(model) -> str:
    for name, cls in models.KINDS.items():
        if type(model) is cls:
            return name
    raise UserError(f"train needs an encoder_mlm or encoder_decoder model, got {type(model).__name__}.")


def _batch_tokens(batch: dict, pad_id: int) -> int:
    n = int(np.sum(batch["encoder_input_tokens"] != pad_id))
    if "decoder_target_tokens" in batch:
        n += int(np.sum(batch["decoder_target_tokens"] != 0))
    return n * jax.process_count()


def train(model_dir: str, model, data: Callable, *, steps: int, batch_size: int,
          optimizer: OptimizerConfig = OptimizerConfig(), mesh_shape: Sequence[int] = (-1, 1, 1),
          rules: str = "dp", grad_accum: int = 1, z_loss: float = 0.0, seed: int = 0,
          save_every: int = 100, keep: int = 3, keep_every: int = 0, async_checkpoints: bool = True,
          eval_every: int = 0, eval_batches: int = 2, log_every: int = 10,
          freeze: Sequence[str] = (), unfreeze_step: int = 0, two_stage: TwoStage | None = None,
          init: state_lib.InitFn | None = None, encoder_mlm_weight: float = 0.0,
          distill: distill_lib.Distill | None = None, progress: bool | None = None,
          on_step: Callable[[int, Any], None] | None = None,
          on_ready: Callable[[], None] | None = None) -> dict:
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

    MODEL_DIR is locked for the run (`run_dir`); a resume must keep the recorded settings
    (`run_dir.RECORDED`). SIGTERM / SIGINT stop after the current step with a checkpoint; the
    summary then has `stopped` (the signal) and `stopped_at` (`preemption`).
    """
    validate.train_args(steps=steps, batch_size=batch_size, grad_accum=grad_accum, seed=seed,
                        save_every=save_every, keep=keep, keep_every=keep_every, eval_every=eval_every,
                        eval_batches=eval_batches, log_every=log_every, unfreeze_step=unfreeze_step, z_loss=z_loss)
    validate.optimizer(optimizer)
    model_dir = run_dir.resolve(model_dir)
    run_dir.check_writable(model_dir)
    lock = run_dir.acquire_lock(model_dir)
    try:
        return _train_locked(model_dir, model, data, steps=steps, batch_size=batch_size, optimizer=optimizer,
                             mesh_shape=mesh_shape, rules=rules, grad_accum=grad_accum, z_loss=z_loss, seed=seed,
                             save_every=save_every, keep=keep, keep_every=keep_every,
                             async_checkpoints=async_checkpoints,
                             eval_every=eval_every, eval_batches=eval_batches, log_every=log_every, freeze=freeze,
                             unfreeze_step=unfreeze_step, two_stage=two_stage, init=init,
                             encoder_mlm_weight=encoder_mlm_weight, distill=distill, progress=progress,
                             on_step=on_step, on_ready=on_ready)
    finally:
        if lock is not None:
            lock.release()


def _train_locked(model_dir, model, data, *, steps, batch_size, optimizer, mesh_shape, rules, grad_accum, z_loss,
                  seed, save_every, keep, keep_every, async_checkpoints, eval_every, eval_batches, log_every, freeze,
                  unfreeze_step, two_stage, init, encoder_mlm_weight, distill, progress, on_step, on_ready) -> dict:
    if batch_size % grad_accum:
        raise UserError(f"batch_size {batch_size} must divide by grad_accum {grad_accum}.")
    kind, cfg = _kind(model), model.cfg
    if encoder_mlm_weight < 0 or (encoder_mlm_weight and kind != "encoder_decoder"):
        raise UserError(f"encoder_mlm_weight={encoder_mlm_weight} needs an encoder_decoder model and a "
                        f"weight >= 0; set loop.train.encoder_mlm_weight = 0 for {kind}.")
    if kind == "encoder_decoder":  # the encoder MLM head exists exactly when its loss is on
        model = model.clone(encoder_mlm_head=encoder_mlm_weight > 0)
    if distill is not None:
        distill.validate()
        distill = distill if distill.active else None  # weight 0 / 0 steps: plain training, bit for bit
    teacher = None
    if distill is not None:
        if encoder_mlm_weight:
            raise UserError("distillation does not combine with the encoder MLM loss yet; set "
                            "loop.train.encoder_mlm_weight = 0 or drop loop.train.distill.")
        teacher = build_teacher(kind, cfg, distill)
    mesh, table = partitioning.make_mesh(mesh_shape), partitioning.rules(rules)
    split_rows = mesh.shape["data"] * mesh.shape["fsdp"] * grad_accum
    if batch_size % split_rows:
        raise UserError(f"batch_size {batch_size} must divide by data x fsdp x grad_accum = {split_rows}.")
    shapes, logical = models.param_shapes(model), models.logical_axes(model)
    param_shardings = partitioning.shardings(logical, shapes, table, mesh)
    tx, schedule = make_optimizer(optimizer, shapes, steps, late=late_params(shapes, freeze, unfreeze_step),
                                  late_start=unfreeze_step)
    shard = (jax.process_index(), jax.process_count())
    source = data("train", batch_size, seed, shard)
    first = _peek(source)
    validate.batch_fits(first, cfg)
    record = _record(kind, cfg, batch_size, seed, optimizer, freeze, unfreeze_step, two_stage, first, distill,
                     options={k: getattr(model, k) for k in models.OPTIONS.get(kind, ())})
    run_dir.on_process_0(lambda: run_dir.check_record(model_dir, record, bool(checkpoints.committed_steps(model_dir))),
                         "checking the run's recorded settings")
    ckpt = checkpoints.Checkpointer(model_dir, keep=keep, keep_period=keep_every, async_save=async_checkpoints)
    run_log = None
    try:
        restored = ckpt.restore_latest(state_lib.abstract_state(tx, shapes, param_shardings, mesh))
        if restored is None:
            state = state_lib.create(init or state_lib.fresh_init(model), tx, shapes, param_shardings,
                                     mesh, seed)
            data_state, meta = None, {"tokens": 0, "flops": 0.0, "first_loss": None}
        else:
            state, data_state, meta = restored
        start = int(state.step)
        if jax.process_index() == 0:
            run_dir.ensure_record(model_dir, record)
            (epath.Path(model_dir) / "model.json").write_text(
                json.dumps({"kind": kind, "config": cfg.to_dict()}, indent=2, sort_keys=True))
        if on_ready is not None:
            on_ready()
        if data_state is not None:
            source.restore(data_state)
        feed = data_lib.Prefetcher(source)
        run_log = metrics_lib.RunLog(model_dir, steps, start, progress)
        if start:
            run_log.message(f"resumed from step {start} in {ckpt.directory}")
        if start >= steps:
            run_log.message(f"already at step {start}, at or past steps={steps}: nothing to train; raise "
                            f"TRAIN_STEPS to continue")
        with preemption.StopRequests() as stop:
            summary = _run(dict(
                model=model, kind=kind, cfg=cfg, data=data, state=state, meta=meta, feed=feed, ckpt=ckpt,
                run_log=run_log, tx=tx, schedule=schedule, mesh=mesh, table=table, shapes=shapes, steps=steps,
                batch_size=batch_size, grad_accum=grad_accum, z_loss=z_loss,
                encoder_mlm_weight=encoder_mlm_weight, seed=seed, save_every=save_every, keep_every=keep_every,
                eval_every=eval_every, eval_batches=eval_batches, log_every=log_every, freeze=freeze,
                unfreeze_step=unfreeze_step, two_stage=two_stage, teacher=teacher, on_step=on_step,
                start=start, stop=stop))
    finally:
        ckpt.close()
        if run_log is not None:
            run_log.close()
    if jax.process_index() == 0:
        (epath.Path(model_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _peek(source) -> dict:
    """The source's first batch, leaving the source where it was."""
    start = source.state()
    batch = next(source)
    source.restore(start)
    return batch


def _record(kind, cfg, batch_size, seed, optimizer, freeze, unfreeze_step, two_stage, first, distill=None,
            options=None) -> dict:
    """What run_dir records and compares on resume (see run_dir.RECORDED / MAY_CHANGE)."""
    model = {k: v for k, v in cfg.to_dict().items() if k not in run_dir.MODEL_FIELDS_MAY_CHANGE}
    model.update(options or {})  # the kind's settings beside its config (electra: generator width, RTD weight)
    schedule = {"freeze": list(freeze), "unfreeze_step": unfreeze_step if freeze else 0,
                "two_stage": dataclasses.asdict(two_stage) if two_stage else None}
    if distill is not None:  # only then, so runs recorded before distillation existed still resume
        schedule["distill"] = distill.record()
    return {"kind": kind, "model": model, "batch_size": batch_size, "seed": seed, "optimizer": optimizer.name,
            "schedule": json.loads(json.dumps(schedule, default=list)),
            "data": run_dir.batch_signature(first, jax.process_count())}


def _lengths(batch: dict) -> tuple[int, int]:
    enc = batch["encoder_input_tokens"].shape[1]
    dec = batch["decoder_input_tokens"].shape[1] if "decoder_input_tokens" in batch else 0
    return enc, dec


def _run(r: dict) -> dict:
    state, meta, feed, ckpt, run_log = r["state"], r["meta"], r["feed"], r["ckpt"], r["run_log"]
    steps, kind, cfg = r["steps"], r["kind"], r["cfg"]
    teacher = r["teacher"]  # (Distill, teacher model) or None
    all_phases = phases(r["shapes"], steps, r["freeze"], r["unfreeze_step"], r["two_stage"],
                        teacher[0].steps if teacher else 0)
    compiled: dict = {}
    peak, peak_note = perf.peak_flops_per_device()
    n_dev = len(jax.devices())
    r["eval_fn"] = step_lib.make_eval_step(r["model"], r["mesh"], r["table"], r["z_loss"],
                                           r["encoder_mlm_weight"])
    pending = None  # (step, metrics) not yet checked for NaN
    timer = perf.Throughput(n_dev, peak)
    last_loss = None

    def check(step, metrics) -> float:
        loss = float(metrics["loss"])
        if not np.isfinite(loss):
            good = ckpt.steps()
            raise Diverged(f"loss became {loss} at step {step}; stopped without saving. The last good "
                           f"checkpoint is step {good[-1] if good else 'none'} in {ckpt.directory}; lower "
                           f"the learning rate or raise warmup_steps and rerun to resume from it.")
        return loss

    timed = None  # the phase group being timed (sampled sub-models are timed together)
    for step in range(r["start"], steps):
        phase = phase_at(all_phases, step, r["seed"])
        local = next(feed)
        fresh = phase.name not in compiled
        if fresh:
            step_model, step_cfg, sub = phase_model(kind, cfg, r["model"], phase)
            with_teacher = load_teacher(teacher, r["mesh"], r["table"]) if phase.distill else None
            fn = step_lib.make_train_step(step_model, r["tx"], r["schedule"], phase.trainable, r["mesh"],
                                          r["table"], grad_accum=r["grad_accum"], z_loss=r["z_loss"],
                                          encoder_mlm_weight=r["encoder_mlm_weight"], sub_model=sub,
                                          teacher=with_teacher)
            enc, dec = _lengths(local)
            head = local["mlm_positions"].shape[1] if "mlm_positions" in local else None
            flops = phase_flops(kind, cfg, r["shapes"], phase, r["batch_size"], enc, dec, head,
                                teacher_shapes(teacher[1]) if phase.distill else None)
            compiled[phase.name] = (fn, flops)
            run_log.message(f"phase {phase.name} until step {phase.end}: {flops / 1e9:.3f} GFLOP/step; "
                            f"peak {peak_note}")
        if fresh or phase.group != timed:
            timer.close()
        fn, flops = compiled[phase.name]
        state, metrics = fn(state, data_lib.to_global(local, r["mesh"]))
        if pending is not None:
            last_loss = check(*pending)
            if meta.get("first_loss") is None:
                meta["first_loss"] = last_loss
        pending = (step + 1, metrics)
        tokens = _batch_tokens(local, cfg.pad_id)
        meta["tokens"] += tokens
        meta["flops"] += flops
        by_phase = meta.setdefault("flops_by_phase", {})  # e.g. encoder frozen vs unfrozen
        by_phase[phase.name] = by_phase.get(phase.name, 0.0) + flops
        if fresh or phase.group != timed:  # the step that compiled is not timed
            timer.start(phase.group, metrics)
            timed = phase.group
        else:
            timer.add(tokens, flops, metrics)
        done = step + 1
        run_log.advance()
        if done % r["log_every"] == 0 or done == steps:
            values = {k: float(v) for k, v in metrics.items()}
            values.update(timer.close())
            values["cumulative_flops"] = meta["flops"]
            run_log.log(done, values)
        if r["eval_every"] and (done % r["eval_every"] == 0 or done == steps):
            timer.close()
            run_log.log(done, _evaluate(r, state.params), prefix="eval")
            timer.start(phase.group)  # eval is not training time
        stop = r["stop"].at(done) if done < steps else None
        kept = r["keep_every"] and done % r["keep_every"] == 0
        if stop or kept or done % r["save_every"] == 0 or done == steps:
            timer.close()
            last_loss = check(*pending)
            pending = None
            meta["last_loss"] = last_loss
            ckpt.save(done, state, feed.state(), meta)
            timer.start(phase.group)  # nor is saving
        if r["on_step"] is not None:
            r["on_step"](done, state)
        if stop:
            run_log.message(f"stopped by {stop} after step {done}; checkpoint {done} saved in {ckpt.directory}")
            break
    else:
        stop = None
    timer.close()
    if pending is not None:
        last_loss = check(*pending)
    ckpt.wait()
    feed.close()
    summary = {"steps": steps, "kind": kind, "first_loss": meta.get("first_loss"), "last_loss": last_loss,
               "tokens": meta["tokens"], "train_flops": meta["flops"],
               "flops_by_phase": dict(meta.get("flops_by_phase", {})), "checkpoints": ckpt.steps(),
               "phases": [p.name for p in all_phases], "throughput": timer.summary(),
               "peak": peak_note, "stopped": stop, "stopped_at": int(state.step) if stop else None}
    run_log.message("done: " + json.dumps(summary))
    return summary


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


def _evaluate(r: dict, params) -> dict:
    """Mean loss and accuracy over `eval_batches` validation batches (the same ones each time)."""
    source = r["data"]("validation", r["batch_size"], r["seed"], (jax.process_index(), jax.process_count()))
    fn, total = r["eval_fn"], None
    for _ in range(r["eval_batches"]):
        sums = fn(params, data_lib.to_global(next(source), r["mesh"]))
        total = sums if total is None else type(sums)(*(a + b for a, b in zip(total, sums)))
    weight = max(float(total.weight), 1.0)
    return {"loss": float(total.loss) / weight, "accuracy": float(total.correct) / weight}
