"""Downstream rows of an experiment: every encoder arm that declares `'downstream': True`, and
a randomly initialised encoder of the same shape, fine-tuned with the same budget on the
corpus's English section classification and UI-entity tagging, tested zero-shot on the other
languages (the demo's protocol: `subsets.finetune` on a `subsets.make_slice` subset),
and on Japanese named entities (`evaluate.packaged`, real labels from a package; Japanese only,
so its zero-shot column is None). Each task also has a majority-label row (MAJORITY): the score
of predicting the most frequent training label (tag) everywhere, computed on the same tests.

The scale gin switches it on and sizes it:
    DOWNSTREAM = True
    DOWNSTREAM_SEEDS = 3          # fine-tuning seeds per pre-training seed (every one is fine-tuned)
    FINETUNE_EPOCHS = 1.0
    FINETUNE_NER_EPOCHS = 10.0    # ja_ner: 450 training sentences, so more passes
    FINETUNE_LENGTH = 64
    FINETUNE_TRAIN = 1500         # training examples per task (ja_ner has 450)
    FINETUNE_TEST = 300           # test examples per language (ja_ner has 50)
Pre-training that does not beat the random-init row has not worked yet. Claims pair arms by
pre-training seed (the random init of seed k is drawn from seed k), each the mean over its
fine-tuning seeds (claims.per_seed).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from seqpt_jax.experiment import spec

RANDOM = "random_init"
MAJORITY = "majority_baseline"
TASKS = ("section", "ui_tagging", "ja_ner")


def settings() -> dict | None:
    """The parsed scale's downstream settings, or None when it has none."""
    if not spec.macro("DOWNSTREAM", False):
        return None
    return {"seeds": int(spec.macro("DOWNSTREAM_SEEDS", 3)), "epochs": float(spec.macro("FINETUNE_EPOCHS", 1.0)),
            "length": int(spec.macro("FINETUNE_LENGTH", 64)), "train": int(spec.macro("FINETUNE_TRAIN", 1500)),
            "test": int(spec.macro("FINETUNE_TEST", 300)),
            "ner_epochs": float(spec.macro("FINETUNE_NER_EPOCHS", 10.0))}


def demo_plan(s: dict):
    from seqpt_jax.experiment.subsets import Plan
    return dataclasses.replace(Plan(), train_mb=0.01, validation_mb=0.01, section_train=s["train"],
                               tagging_train=s["train"], test_per_lang=s["test"], finetune_epochs=s["epochs"],
                               finetune_length=s["length"])


def export(checkpoint: str, dst: Path, step: int | None = None) -> str:
    """A params_io checkpoint of a training MODEL_DIR's params at `step` (default: the latest),
    or `checkpoint` itself; of an ELECTRA run, its discriminator as an encoder_mlm
    (`mappings.electra_to_encoder`)."""
    from seqpt_jax import params_io
    if params_io.read_model(checkpoint)[0] == "electra":
        from seqpt_jax import mappings
        _, cfg, params = params_io.load(checkpoint, step=step)
        return params_io.save_params(str(dst), "encoder_mlm", cfg, mappings.electra_to_encoder(params, cfg),
                                     overwrite=True)
    if (Path(checkpoint) / "checkpoints").is_dir():
        kind, cfg, params = params_io.load(checkpoint, step=step)
        return params_io.save_params(str(dst), kind, cfg, params, overwrite=True)
    return checkpoint


def random_like(checkpoint: str, seed: int, dst: Path) -> str:
    """A random init of the same kind and config as `checkpoint` (the baseline row); of an
    ELECTRA run, of its discriminator's encoder_mlm shape."""
    import jax

    from seqpt_jax import models, params_io
    kind, cfg = params_io.read_model(checkpoint)
    kind = "encoder_mlm" if kind == "electra" else kind
    params = models.init(models.build(kind, cfg), jax.random.key(seed))
    return params_io.save_params(str(dst), kind, cfg, params, overwrite=True)


def finetune(checkpoint: str, corpus: str, vocab_path: str, s: dict, work: Path, progress=None,
             tasks: tuple = TASKS, seeds: int = 1) -> dict:
    """`subsets.finetune` with fine-tuning seeds 0 .. seeds-1, all trained together per task:
    the first's result, and every seed's under "finetunes" ([{"seed", "tasks"}])."""
    return finetune_together([checkpoint], corpus, vocab_path, s, [work], progress, tasks, seeds)[0]


def finetune_together(checkpoints: list[str], corpus: str, vocab_path: str, s: dict, works: list[Path],
                      progress=None, tasks: tuple = TASKS, seeds: int = 1) -> list[dict]:
    """`finetune` of checkpoints of one kind and config (an experiment's encoders of a pre-training
    seed and their random init) at once: per task, every checkpoint x fine-tuning seed is a replica
    of one training program (`subsets.finetune_together`); one record per checkpoint, its files
    under its folder in `works`. A tiny model's fine-tune is latency-bound on an accelerator, so
    R replicas cost about one run there."""
    from seqpt_jax.experiment import subsets
    ks = tuple(range(seeds))
    dirs = [[work / f"ft{k}" if seeds > 1 else work for k in ks] for work in works]
    for sub in (d for per in dirs for d in per):
        sub.mkdir(parents=True, exist_ok=True)
    runs = subsets.finetune_together(checkpoints, corpus, {"path": vocab_path}, demo_plan(s), dirs, progress,
                                     tasks=tasks, epochs={"ja_ner": s["ner_epochs"]}, seeds=ks)
    if tasks == TASKS:  # the XTREME tasks whose data is present ($SEQPT_XTREME_DIR) join the table
        for per_seed, xtreme in zip(runs, xtreme_runs(checkpoints, vocab_path, s, dirs, progress, seeds=ks)):
            for run, extra in zip(per_seed, xtreme):
                run["tasks"].update(extra)
    return [{"tasks": per_seed[0]["tasks"], "finetunes": [{"seed": k, **run} for k, run in zip(ks, per_seed)]}
            for per_seed in runs]


def make_slice(corpus: str, dst: Path, s: dict) -> dict:
    """The demo's slice, plus the packaged ja_ner split (capped like the corpus tasks)."""
    from seqpt_jax.experiment import subsets
    from seqpt_jax.evaluate import packaged
    out = subsets.make_slice(Path(corpus), dst, demo_plan(s))
    shipped = Path(corpus) / "tasks" / "ja_ner"  # an exported corpus carries it (no package needed)
    out["tasks"]["ja_ner"] = packaged.materialise("ja_ner", Path(out["corpus"]) / "tasks" / "ja_ner",
                                                  {"train": s["train"], "test": s["test"]},
                                                  source=shipped if shipped.is_dir() else None)
    return out


# ------------------------------------------------------------------------------ XTREME rows (optional)

XTREME_ENV = "SEQPT_XTREME_DIR"  # DIR/<task>/ holds a task's files as `seqpt finetune --data` reads them
_SAID: set = set()


def xtreme_tasks() -> dict:
    """{name: Task} of the XTREME tasks whose files are under $SEQPT_XTREME_DIR/<name>/; one line
    (once per process) for each that is skipped, or for all when the variable is unset."""
    import os

    from seqpt_jax.errors import UserError
    from seqpt_jax.evaluate import tasks as ev_tasks
    root, out = os.environ.get(XTREME_ENV), {}
    if not root:
        if not _SAID:
            _SAID.add("unset")
            print(f"downstream: XTREME tasks ({', '.join(ev_tasks.XTREME_TASKS)}) skipped: ${XTREME_ENV} is not set "
                  "(docs/experiments.md, XTREME tasks).")
        return out
    for name in ev_tasks.XTREME_TASKS:
        try:
            out[name] = ev_tasks.from_xtreme(name, data_dir=os.path.join(root, name))
        except UserError as e:
            if name not in _SAID:
                _SAID.add(name)
                print(f"downstream: {name} skipped ({e})")
    return out


def finetune_xtreme(checkpoint: str, vocab_path: str, s: dict, work: Path, progress=None, seed: int = 0) -> dict:
    """The XTREME tasks present (`xtreme_tasks`), in `finetune`'s record schema: English fine-tuning
    on the first s["train"] examples, zero-shot tests on the first s["test"] of every language;
    `seed` the fine-tuning seed."""
    return xtreme_runs([checkpoint], vocab_path, s, [[work]], progress, seeds=(seed,))[0][0]


def xtreme_runs(checkpoints: list[str], vocab_path: str, s: dict, works: list[list[Path]], progress=None,
                seeds: tuple = (0,)) -> list[list[dict]]:
    """`finetune_xtreme` of checkpoints of one kind and config with each fine-tuning seed of
    `seeds`, every checkpoint x seed trained together per task; [checkpoint][seed] {task: record},
    whose results files go to works[checkpoint][seed]."""
    from seqpt_jax import params_io
    from seqpt_jax.data import vocab as vocab_lib
    from seqpt_jax.evaluate import finetune as ft, protocol
    from seqpt_jax.experiment.subsets import record, same_shape
    out = [[{} for _ in seeds] for _ in checkpoints]
    present = xtreme_tasks()
    if not present:
        return out
    loaded = [params_io.load(c) for c in checkpoints]
    kind, cfg = same_shape(checkpoints, loaded)
    vocab = vocab_lib.load(vocab_path)
    for name, task in present.items():
        epochs = s["ner_epochs"] if task.kind == "tagging" else s["epochs"]
        opts = ft.Options(epochs=epochs, max_length=s["length"], target_length=s["length"], learning_rate=5e-4,
                          in_language=False, max_train=s["train"], max_eval=s["test"], progress=progress)
        results = protocol.run_replicas(task, kind, cfg, [params for _, _, params in loaded], vocab, opts, seeds)
        for per_seed, work_of, out_of in zip(results, works, out):
            for result, work, tasks_out in zip(per_seed, work_of, out_of):
                (work / f"{name}.json").write_text(json.dumps(result, ensure_ascii=False))
                tasks_out[name] = record(result, task.kind, epochs)
    return out


def table(downstream: dict) -> dict:
    """{task: {arm: {"metric", "lang", "en": [...], "zero_shot": [...], "seeds": [...]}}} from the
    records: one entry per pre-training seed x fine-tuning seed, "seeds" naming the former.

    "en" holds the score in the language fine-tuned on, `lang` (English but for ja_ner, kept
    under "en" so every task has one schema); "zero_shot" the mean over the other test
    languages, None where there are none. Tagging rows add "token_accuracy" (fine-tuned
    language). MAJORITY is the majority-label baseline: one value, as every arm and seed
    shares the training labels and tests."""
    out: dict = {}
    for arm, by_seed in downstream.items():
        for seed in sorted(by_seed):
            rec = by_seed[seed]
            for run in rec.get("finetunes") or [{"tasks": rec.get("tasks", {})}]:
                for task, res in run["tasks"].items():
                    lang = res.get("lang", "en")
                    rows = [(arm, res)] + ([(MAJORITY, res["majority"])] if res.get("majority") else [])
                    for name, r in rows:
                        row = out.setdefault(task, {}).setdefault(name, {"metric": res["metric"], "lang": lang,
                                                                         "en": [], "zero_shot": [], "seeds": []})
                        if name == MAJORITY and row["en"]:
                            continue  # the same training labels for every arm and seed: one value
                        scores = r["scores"]
                        others = [v for l, v in scores.items() if l != lang and v is not None]
                        row["en"].append(scores.get(lang))
                        row["zero_shot"].append(sum(others) / len(others) if others else None)
                        row["seeds"].append(seed)
                        if "token_accuracy" in r:
                            row.setdefault("token_accuracy", []).append(r["token_accuracy"].get(lang))
    return out
