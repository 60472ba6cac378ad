"""`seqpt experiment run`: every arm x seed as a resumable training run, dependencies first.

    out/experiment.json          what was asked (a rerun must ask the same)
    out/vocab/                   the SentencePiece vocabulary (a stage, unless --vocab is given)
    out/<arm>/seed<k>/train/     the arm's MODEL_DIR (`seqpt train`'s layout, train.run_dir.LAYOUT,
                                 written by the one launcher; resumes there)
    out/<arm>/seed<k>/DONE       its record: curve, FLOPs, losses (stages.StageRunner)
    out/batches/seed<k>/         seed k's training batches, built by its first arm that feeds them and
                                 read by the later ones (data.batch_cache); removed when its arms are done

`shard=(i, n)` (`--shard i/n`) runs only the seeds s with s % n == i, their arms and their
fine-tunes: n processes with i = 0..n-1 share one `out` (stages.StageRunner locks each stage, so
the vocabulary and the downstream subsets are built once) and together run every seed; on 2
cores, 3 one-seed processes keep both busy where one process keeps 1.1-1.5 busy (measured).

Each arm is started by `launcher` exactly as `seqpt train` starts a run
([arm.gin, scale_<s>.gin, hw gin] + bindings). A finished arm (DONE) is skipped; a killed one
resumes from its last checkpoint. Every arm also records its validation loss at step 0 — its
init — on the same held-out batches, so a curve starts where the arm really starts (a grown
model at its source's loss, a random init near log(vocab)).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from seqpt_jax import launcher
from seqpt_jax.errors import UserError
from seqpt_jax.experiment import spec
from seqpt_jax.experiment.stages import StageRunner, write_json_atomic


def evaluate_init(config) -> dict:
    """Validation loss of a run's initial params (the trainer's init, same rng, on the same
    held-out batches its evaluations use), and the params themselves."""
    from seqpt_jax.train import loop
    trainer = loop.setup(config)
    params = trainer.initial_params()
    return {**trainer.evaluate(params), "params": params, "model": trainer.model, "kind": trainer.kind}


def evaluate_params(config, params) -> dict:
    """A run's validation loss and accuracy of `params` on its held-out batches, and each
    batch's mean loss ("batch_losses": the eval noise of savings.eval_noise)."""
    from seqpt_jax.train import loop
    return loop.setup(config).evaluate(params)


class Runner:
    def __init__(self, experiment: str, scale: str, seeds: int, out: str | os.PathLike, *, hw: str = "hw/cpu.gin",
                 corpus: str | None = None, vocab: str | None = None, log: Callable[[str], None] = print,
                 progress: bool | None = None, on_step: Callable | None = None, only: list[str] | None = None,
                 shard: tuple[int, int] = (0, 1)):
        if seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {seeds}.")
        index, count = shard
        if not 0 <= index < count:
            raise UserError(f"--shard {index}/{count} names no shard; use I/N with 0 <= I < N, e.g. --shard 0/3.")
        self.experiment, self.scale, self.seeds, self.hw = experiment, scale, seeds, hw
        self.my_seeds = [s for s in range(seeds) if s % count == index]  # this process's seeds
        self.out = Path(out).expanduser()
        self.corpus, self.vocab, self.log, self.progress = corpus, vocab, log, progress
        self.on_step = on_step  # (arm, seed) -> callback(step, state) or None; tests kill runs with it
        arms = spec.read_arms(experiment, scale, hw)
        self.arms = {a.name: a for a in arms}
        self.order = list(self.arms)
        self.selected = spec.closure(experiment, arms, only) if only else list(self.order)
        self.stages = StageRunner(self.out, log=log)

    # ----- set-up ---------------------------------------------------------------------------

    def _check_request(self) -> None:
        """A rerun continues the same experiment, scale and hardware (no silent mixing)."""
        path = self.out / "experiment.json"
        asked = {"experiment": self.experiment, "scale": self.scale, "hw": self.hw}
        if path.is_file():
            had = json.loads(path.read_text("utf-8"))
            if {k: had.get(k) for k in asked} != asked:
                raise UserError(f"{self.out} holds experiment {had.get('experiment')} at --scale "
                                f"{had.get('scale')} ({had.get('hw')}); rerun with those to continue, or "
                                f"choose another --out.")
            asked["seeds"] = max(self.seeds, int(had.get("seeds", 0)))
        else:
            asked["seeds"] = self.seeds
            self.out.mkdir(parents=True, exist_ok=True)
        asked["arms"] = self.order
        write_json_atomic(path, asked)

    def _corpus_dir(self) -> str:
        from seqpt_jax.data import exported
        from seqpt_jax.data.corpus import default_dir
        if self.corpus:
            path = Path(self.corpus).expanduser()
            if not (path / "text").is_dir() and not exported.is_export(path):
                raise UserError(f"--corpus {path} has no text/ folder; give a folder `seqpt corpus build` or "
                                f"`seqpt corpus export` made.")
            return str(path)
        if not (default_dir() / "COMPLETE").is_file():
            raise UserError(f"no corpus at {default_dir()}; run `seqpt corpus build` first (about 11 minutes), "
                            f"or pass --corpus DIR.")
        return str(default_dir())

    def _vocab(self, corpus: str) -> str:
        from seqpt_jax.data import exported
        if exported.is_export(corpus):  # its tokens are in its own vocabulary
            return exported.check_vocab(corpus, self.vocab)
        if self.vocab:
            if not Path(self.vocab).is_file():
                raise UserError(f"--vocab {self.vocab} does not exist; train one with `seqpt vocab train`.")
            return self.vocab
        spec.parse(self.experiment, self.order[0], self.scale, self.hw, [], spec.placeholder_bindings())
        pieces = int(spec.macro("VOCAB_PIECES"))
        # VOCAB_CHARS: the characters sampled to train it (default: vocab.train's own)
        chars = {"max_chars": int(spec.macro("VOCAB_CHARS"))} if spec.macro("VOCAB_CHARS", None) else {}

        def train(work: Path) -> dict:
            from seqpt_jax.data import vocab as vocab_lib
            voc = vocab_lib.train(corpus, pieces, work / "spm.model", threads=os.cpu_count() or 2, **chars)
            return {"path": str(work / "spm.model"), "vocab_size": int(voc.vocab_size)}
        return self.stages.run("vocab", train, f"SentencePiece vocabulary, {pieces} pieces")["path"]

    # ----- arms -----------------------------------------------------------------------------

    def checkpoint(self, arm: str, seed: int) -> str:
        work = self.out / arm / f"seed{seed}"
        return str(work / ("params" if self.arms[arm].op == "init" else "train"))

    def _bindings(self, arm, seed: int, model_dir: Path) -> list[str]:
        b = [f"MODEL_DIR = {str(model_dir)!r}", f"VOCAB = {self.vocab_path!r}", f"SEED = {seed}",
             f"CORPUS_DIR = {self.corpus_dir!r}",
             f"data.mixture_or_task.batch_cache = {str(self._batches(seed))!r}"]
        b += [f"{macro_name} = {self.checkpoint(dep, seed)!r}" for macro_name, dep in arm.needs.items()]
        return b

    def _batches(self, seed: int) -> Path:
        return self.out / "batches" / f"seed{seed}"

    def _init_point(self, work: Path, config) -> dict:
        """The step-0 evaluation of the arm's init (cached: it never changes). Every curve starts
        there, so FLOPs-to-target can be read before the first evaluation of training."""
        path = work / "init_eval.json"
        if path.is_file():
            return json.loads(path.read_text("utf-8"))
        res = evaluate_init(config)
        point = {"loss": res["loss"], "accuracy": res["accuracy"]}
        write_json_atomic(path, point)
        return point

    def _configure(self, arm, seed: int, model_dir: Path, **overrides):
        return launcher.configure(spec.gin_files(self.experiment, arm.name, self.scale, self.hw),
                                  self._bindings(arm, seed, model_dir), **overrides)

    def _train(self, arm, seed: int, work: Path) -> dict:
        from seqpt_jax import models
        from seqpt_jax.experiment.curves import curve
        model_dir = work / "train"
        hook = self.on_step(arm.name, seed) if self.on_step else None
        config = self._configure(arm, seed, model_dir, progress=self.progress, on_step=hook)
        start = self._init_point(work, config)
        summary = launcher.launch(config)
        if summary.get("stopped"):  # saved, not finished: no DONE record; a rerun resumes it
            from seqpt_jax.train.preemption import Stopped
            self.log(f"{arm.name} (seed {seed}): stopped by {summary['stopped']} after step {summary['stopped_at']} "
                     f"of {summary['steps']}; rerun the same command to continue")
            raise Stopped(summary["stopped"], summary.get("stopped_at"))
        points = [[0.0, start["loss"]], *curve(str(model_dir / "tb"))]
        final = summary.get("final_eval")  # the trainer's last evaluation, per batch: the eval noise
        if final is None:  # this process did not evaluate the last step (it was trained before a restart)
            from seqpt_jax import params_io
            final = evaluate_params(config, params_io.load(str(model_dir))[2])
        return {"arm": arm.name, "seed": seed, "op": "train", "checkpoint": str(model_dir),
                "params": models.count_params(models.param_shapes(config.model)), "steps": summary["steps"],
                "train_flops": float(summary["train_flops"]), "flops_by_phase": summary.get("flops_by_phase", {}),
                "tokens": summary["tokens"], "phases": summary.get("phases"), "curve": points,
                "init_val_loss": start["loss"],
                "final_val_loss": points[-1][1] if points else None,
                "final_batch_losses": final["batch_losses"],
                "train_loss": [summary.get("first_loss"), summary.get("last_loss")],
                "throughput": summary.get("throughput")}

    def _init_only(self, arm, seed: int, work: Path) -> dict:
        """An `init` arm: the run's init hook applied and saved (e.g. an extracted encoder)."""
        from seqpt_jax import models, params_io
        res = evaluate_init(self._configure(arm, seed, work / "train"))
        path = params_io.save_params(str(work / "params"), res["kind"], res["model"].cfg, res["params"],
                                     overwrite=True)
        return {"arm": arm.name, "seed": seed, "op": "init", "checkpoint": path,
                "params": models.count_params(res["params"]), "steps": 0, "train_flops": 0.0, "tokens": 0,
                "curve": [[0.0, res["loss"]]], "init_val_loss": res["loss"], "final_val_loss": res["loss"],
                "final_batch_losses": res["batch_losses"]}

    def run(self) -> dict:
        self._check_request()
        self.corpus_dir = self._corpus_dir()
        self.vocab_path = self._vocab(self.corpus_dir)
        results = {}
        for seed in self.my_seeds:
            for name in self.selected:
                arm = self.arms[name]
                fn = self._init_only if arm.op == "init" else self._train
                what = ("apply the init and evaluate it" if arm.op == "init" else "train") + f" (seed {seed})"
                results[(name, seed)] = self.stages.run(f"{name}/seed{seed}",
                                                        lambda w, arm=arm, seed=seed, fn=fn: fn(arm, seed, w), what)
            shutil.rmtree(self._batches(seed), ignore_errors=True)  # every arm of the seed is done: disk back
        self._downstream()
        return {"out": str(self.out), "ran": list(self.stages.ran), "results": len(results)}

    def _downstream(self) -> None:
        """Fine-tunes the encoder arms that declare 'downstream' and a random init beside them."""
        from seqpt_jax.experiment import downstream as ds
        spec.parse(self.experiment, self.order[0], self.scale, self.hw, [], spec.placeholder_bindings())
        settings = ds.settings()
        encoders = [n for n in self.selected if self.arms[n].downstream]
        if not settings:
            return
        self._generation(settings)
        if not encoders:
            return
        data = self._downstream_data(settings)
        for seed in self.my_seeds:  # every pre-training seed, settings["seeds"] fine-tunings each
            self._together(self._arm_items(encoders, ds.RANDOM, seed), lambda ckpts, works: ds.finetune_together(
                ckpts, data["corpus"], self.vocab_path, settings, works, self.progress, seeds=settings["seeds"]),
                f"fine-tune on {' + '.join(ds.TASKS)} (seed {seed})")
        self._downstream_curve(settings, data)

    def _arm_items(self, names: list[str], random: str, seed: int) -> list[tuple]:
        """`_together`'s items for the arms `names` of pre-training seed `seed` and `random`, a
        random init of names[0]'s shape drawn from that seed; their records are {"arm", "seed", ...}."""
        from seqpt_jax.experiment import downstream as ds

        def item(name: str) -> tuple:
            def export(dst):
                return (ds.random_like(self.checkpoint(names[0], seed), seed, dst) if name == random
                        else ds.export(self.checkpoint(name, seed), dst))
            return f"downstream/{name}/seed{seed}", export, lambda res: {"arm": name, "seed": seed, **res}
        return [item(name) for name in [*names, random]]

    def _together(self, items: list[tuple], finetune: Callable, what: str) -> None:
        """Fine-tunes the checkpoints of `items` [(stage, export(dst) -> checkpoint, record(result)
        -> stage record)] whose stage is not done yet together: per task, every checkpoint (and
        fine-tuning seed) is a replica of one program, one program per model shape
        (`finetune(checkpoints, works) -> results`); then each stage records its result. A tiny
        model's fine-tune is latency-bound on an accelerator: R replicas cost about one run there.
        Killed before the records are written, the group starts over."""
        from seqpt_jax import params_io
        from seqpt_jax.experiment.stages import cpu_seconds
        pending = [item for item in items if not self.stages.done(item[0])]
        records = {}
        if pending:
            self.log(f"{what}: {len(pending)} checkpoint(s) together")
            wall, cpu = time.time(), cpu_seconds()
            works = [self.out / stage for stage, *_ in pending]
            ckpts = [export(work / "params") for (_, export, _), work in zip(pending, works)]
            shapes: dict = {}  # (kind, config) -> indices into pending: one program each
            for i, ckpt in enumerate(ckpts):
                shapes.setdefault(params_io.read_model(ckpt), []).append(i)
            results: list = [None] * len(pending)
            for group in shapes.values():
                for i, res in zip(group, finetune([ckpts[i] for i in group], [works[i] for i in group])):
                    results[i] = res
            shared = {"together": {"stages": len(pending), "programs": len(shapes),
                                   "wall_s": round(time.time() - wall, 2), "cpu_s": round(cpu_seconds() - cpu, 2)}}
            records = {stage: {**record(res), **shared} for (stage, _, record), res in zip(pending, results)}
        for stage, *_ in items:
            self.stages.run(stage, lambda work, stage=stage: records[stage], what)

    def _downstream_data(self, settings: dict) -> dict:
        from seqpt_jax.experiment import downstream as ds
        return self.stages.run("downstream/data", lambda w: ds.make_slice(self.corpus_dir, w / "corpus", settings),
                               "downstream subsets: English training, capped tests per language")

    def _downstream_curve(self, settings: dict, data: dict) -> None:
        """Each kept checkpoint of the arms that declare 'downstream_curve', every seed, fine-tuned
        on downstream_curve.TASK, and a random init of their shape as FLOPs 0 (downstream_curve.py)."""
        from seqpt_jax.experiment import downstream as ds, downstream_curve as dc
        from seqpt_jax.train import checkpoints
        arms = [n for n in self.selected if self.arms[n].downstream_curve]
        if not arms or not dc.every():
            return
        for seed in self.my_seeds:
            points = [(dc.RANDOM, 0)] + [(n, step) for n in arms
                                          for step in checkpoints.committed_steps(self.checkpoint(n, seed))]

            def item(name: str, step: int, seed: int = seed) -> tuple:
                model_dir = self.checkpoint(arms[0] if name == dc.RANDOM else name, seed)

                def export(dst):
                    return (ds.random_like(model_dir, seed, dst) if name == dc.RANDOM
                            else ds.export(model_dir, dst, step=step))

                def record(res: dict) -> dict:
                    res = res["tasks"][dc.TASK]
                    return {"arm": name, "seed": seed, "step": step, "task": dc.TASK, "metric": res["metric"],
                            "flops": 0.0 if name == dc.RANDOM else dc.flops_at(model_dir, step),
                            "score": res["scores"][res["lang"]], "result": res}
                return f"downstream_curve/{name}/seed{seed}/step{step}", export, record
            self._together([item(name, step) for name, step in points], lambda ckpts, works: ds.finetune_together(
                ckpts, data["corpus"], self.vocab_path, settings, works, self.progress, tasks=(dc.TASK,)),
                f"fine-tune every kept checkpoint on {dc.TASK} (seed {seed})")

    def _generation(self, downstream: dict) -> None:
        """Fine-tunes the seq2seq arms that declare 'generation' and a random init beside them."""
        from seqpt_jax.experiment import generation as gen
        s2s = [n for n in self.selected if self.arms[n].generation]
        if not s2s:
            return
        settings = gen.settings(downstream)
        data = self.stages.run("downstream/generation_data",
                               lambda w: gen.make_subset(self.corpus_dir, w / "corpus", settings),
                               "downstream generation subsets: English synopses")
        for seed in [s for s in gen.pretraining_seeds(self.seeds, settings) if s in self.my_seeds]:
            self._together(self._arm_items(s2s, gen.RANDOM, seed), lambda ckpts, works: gen.finetune_together(
                ckpts, data["corpus"], self.vocab_path, settings, self.progress),
                f"fine-tune on English synopses (seed {seed})")


def load_records(out: str | os.PathLike) -> dict:
    """{arm: {seed: record}} from every DONE marker under `out` (the report's only input)."""
    out = Path(out)
    asked_path = out / "experiment.json"
    if not asked_path.is_file():
        raise UserError(f"{out} holds no experiment (no experiment.json); run `seqpt experiment run` first.")
    asked = json.loads(asked_path.read_text("utf-8"))
    records: dict = {}
    for arm in asked["arms"]:
        for marker in sorted((out / arm).glob("seed*/DONE")):
            rec = json.loads(marker.read_text("utf-8"))
            records.setdefault(arm, {})[int(rec["seed"])] = rec
    downstream: dict = {}
    for marker in sorted((out / "downstream").glob("*/seed*/DONE")):
        rec = json.loads(marker.read_text("utf-8"))
        downstream.setdefault(rec["arm"], {})[int(rec["seed"])] = rec
    return {"asked": asked, "records": records, "downstream": downstream}
