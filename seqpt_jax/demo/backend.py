"""The demo's backend: the vocabulary trainer, the trainer (`train.loop.train`) and the
cross-lingual fine-tuning protocol (`evaluate.protocol.run`), called through their Python APIs.

Each method returns plain JSON-able dicts for the stage markers. The loss curve of a run is
read back from its TensorBoard events (eval/loss against train/cumulative_flops), so a run that
was killed and resumed still has its whole curve.
"""

from __future__ import annotations

import functools
import glob
import os
from pathlib import Path

from seqpt_jax.demo.plan import Plan


def vocab(corpus: str, langs: list[str], plan: Plan, work: Path) -> dict:
    from seqpt_jax.data import vocab as vocab_lib
    path = work / "spm.model"
    voc = vocab_lib.train(corpus, plan.vocab_size, path, langs=langs, max_chars=plan.vocab_chars,
                          threads=os.cpu_count() or 2)
    return {"path": str(path), "vocab_size": int(voc.vocab_size)}


def _scalars(logdir: str) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} from every event file under logdir (later files win)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    out: dict[str, dict[int, float]] = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*")), key=os.path.getmtime):
        for event in EventFileLoader(path).Load():
            for v in event.summary.value:  # the loader migrates simple_value to a scalar tensor
                if v.HasField("simple_value"):
                    value = v.simple_value
                elif v.HasField("tensor") and v.tensor.float_val:
                    value = v.tensor.float_val[0]
                else:
                    continue
                out.setdefault(v.tag, {})[int(event.step)] = float(value)
    return out


def curve(logdir: str) -> list[list[float]]:
    """[[cumulative FLOPs, validation loss], ...] in step order. FLOPs at an eval step come from
    the training log of that step (the loop logs both at the last step and at multiples)."""
    tags = _scalars(logdir)
    flops, losses = tags.get("train/cumulative_flops", {}), tags.get("eval/loss", {})
    logged = sorted(flops)
    points = []
    for step in sorted(losses):
        if step in flops:
            f = flops[step]
        else:  # linear between the nearest logged steps (constant FLOPs per step within a phase)
            below = max((s for s in logged if s < step), default=None)
            above = min((s for s in logged if s > step), default=None)
            if below is None or above is None:
                continue
            f = flops[below] + (flops[above] - flops[below]) * (step - below) / (above - below)
        points.append([f, losses[step]])
    return points


def _data_factory(run, data: dict, voc: dict, plan: Plan):
    from seqpt_jax.data import preprocessors
    from seqpt_jax.train import data as data_lib
    lengths = {"inputs": plan.length}
    if run.kind == "encoder_decoder":
        lengths["targets"] = preprocessors.span_corruption_lengths(plan.length)[1]
    # The slice holds only the demo's languages, so its seqpt_local_* mixture is theirs.
    return functools.partial(data_lib.mixture_or_task, name=f"seqpt_local_{run.objective}",
                             task_feature_lengths=lengths, corpus_dir=data["corpus"], vocab_path=voc["path"])


def pretrain(run, work: Path, data: dict, voc: dict, plan: Plan, progress: bool | None = None) -> dict:
    """Trains `run` in work/train (resuming there), exports work/params; returns the figures."""
    from seqpt_jax import models, params_io
    from seqpt_jax.train import loop, state as state_lib
    from seqpt_jax.train.optimizers import OptimizerConfig
    model_dir = str(work / "train")
    model = models.build(run.kind, run.cfg)
    summary = loop.train(
        model_dir, model, _data_factory(run, data, voc, plan), steps=run.steps, batch_size=plan.batch_size,
        optimizer=OptimizerConfig(learning_rate=plan.learning_rate, warmup_steps=max(1, run.steps // 10)),
        save_every=max(10, plan.eval_every), keep=1, eval_every=plan.eval_every,
        eval_batches=plan.eval_batches, log_every=max(1, plan.eval_every // 2),
        freeze=run.freeze, unfreeze_step=run.unfreeze_step,
        two_stage=loop.TwoStage(*run.two_stage) if run.two_stage else None,
        init=state_lib.from_param_checkpoint(run.init) if run.init else None, progress=progress)
    _, _, params = params_io.load(model_dir)
    path = params_io.save_params(str(work / "params"), run.kind, run.cfg, params, overwrite=True)
    points = curve(os.path.join(model_dir, "tb"))
    return {"params": models.count_params(params), "checkpoint": path, "flops": float(summary["train_flops"]),
            "val_loss": points[-1][1] if points else None, "curve": points,
            "extra": {"train_loss_first": summary.get("first_loss"), "train_loss_last": summary.get("last_loss"),
                      "phases": summary.get("phases")}}


def finetune(checkpoint: str, corpus: str, voc: dict, plan: Plan, work: Path,
             progress: bool | None = None, tasks: tuple | None = None, epochs: dict | None = None) -> dict:
    """Fine-tuning in each task's source language (English for the corpus tasks) and zero-shot
    tests on every other language, per task (`tasks`, default the demo's). `epochs` overrides
    plan.finetune_epochs per task. Each task also reports its majority-label baseline."""
    import dataclasses

    from seqpt_jax import params_io
    from seqpt_jax.data import vocab as vocab_lib
    from seqpt_jax.evaluate import finetune as ft, protocol, tasks as ev_tasks
    from seqpt_jax.demo.recipe import TASKS
    from seqpt_jax.demo.stages import write_json_atomic
    kind, cfg, params = params_io.load(checkpoint)
    vocabulary = vocab_lib.load(voc["path"])
    options = ft.Options(epochs=plan.finetune_epochs, batch_size=32, max_length=plan.finetune_length,
                         target_length=plan.finetune_length, learning_rate=5e-4, in_language=False,
                         progress=progress)
    out = {}
    for name in tasks or TASKS:
        task = ev_tasks.from_corpus(name, corpus)
        opts = dataclasses.replace(options, epochs=(epochs or {}).get(name, options.epochs))
        result = protocol.run(task, kind, cfg, params, vocabulary, opts)
        write_json_atomic(work / f"{name}.json", result)
        run = result["runs"][0]
        metric = result["primary_metric"]
        test = run["test"]
        out[name] = {"metric": metric, "lang": run["train_lang"], "scores": {l: r[metric] for l, r in test.items()},
                     "n": {l: r["n"] for l, r in test.items()}, "steps": run["steps"],
                     "epochs": opts.epochs, "final_loss": run["final_loss"]}
        if task.kind == "tagging":
            out[name]["token_accuracy"] = {l: r["token_accuracy"] for l, r in test.items()}
        if all(r.get("majority") for r in test.values()):
            out[name]["majority"] = {"label": next(iter(test.values()))["majority"]["label"],
                                     "scores": {l: r["majority"][metric] for l, r in test.items()}}
            if task.kind == "tagging":
                out[name]["majority"]["token_accuracy"] = {l: r["majority"]["token_accuracy"]
                                                           for l, r in test.items()}
    return {"tasks": out}


class Backend:
    """The real backend, as the recipe calls it."""

    def __init__(self, plan: Plan, progress: bool | None = None):
        self.plan, self.progress = plan, progress

    def vocab(self, corpus, langs, plan, work):
        return vocab(corpus, langs, plan, work)

    def pretrain(self, run, work, data, voc):
        return pretrain(run, work, data, voc, self.plan, self.progress)

    def finetune(self, checkpoint, corpus, voc, plan, work):
        return finetune(checkpoint, corpus, voc, plan, work, self.progress)
