"""What the experiments' runs share with the demo: a training run's loss curve, read back from
its TensorBoard events (eval/loss against train/cumulative_flops, so a run that was killed and
resumed still has its whole curve), and the cross-lingual fine-tuning protocol
(`evaluate.protocol.run`) that `experiment.downstream` runs on every encoder.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from seqpt_jax.demo.plan import Plan


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


def finetune(checkpoint: str, corpus: str, voc: dict, plan: Plan, work: Path,
             progress: bool | None = None, tasks: tuple | None = None, epochs: dict | None = None,
             seed: int = 0) -> dict:
    """Fine-tuning in each task's source language (English for the corpus tasks) and zero-shot
    tests on every other language, per task (`tasks`, default the demo's). `epochs` overrides
    plan.finetune_epochs per task; `seed` the fine-tuning seed. Each task also reports its
    majority-label baseline."""
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
                         progress=progress, seed=seed)
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
