"""The experiments' downstream data and protocol: the corpus (found, or a demo-sized build of
the demo languages on a fresh machine), the downstream slice (`make_slice`: English training
subsets and capped tests per language, in the corpus's layout) sized by a `Plan`, and the
cross-lingual fine-tuning protocol on it (`finetune`: `evaluate.protocol.run`) that
`experiment.downstream` runs on every encoder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

from seqpt_jax.errors import UserError

TASKS = ("section", "ui_tagging")

# en is fine-tuned on; the other six are zero-shot, in five scripts (Latin, Cyrillic, kana,
# Han, Hangul). Each has DDTP translations (sections) and LibreOffice help (UI tagging).
DEMO_LANGS = ("en", "de", "fr", "ru", "ja", "zh", "ko")


@dataclasses.dataclass(frozen=True)
class Plan:
    langs: tuple = DEMO_LANGS
    # The corpus slice (per language), and the downstream subsets.
    train_mb: float = 1.0
    validation_mb: float = 0.1
    section_labels: int = 8           # the most frequent English package sections
    section_train: int = 2000
    tagging_train: int = 1500
    test_per_lang: int = 300
    finetune_epochs: float = 1.0
    finetune_length: int = 64


# ----- corpus and data slice ------------------------------------------------------------------

def find_corpus(corpus: str | None, plan: Plan, log: Callable, progress: bool | None = None) -> Path:
    """--corpus DIR if given (built there with the demo languages if empty), else the default
    corpus if it is built, else a demo-sized build of the demo languages beside it.
    progress=False (--no-progress): no progress bar while building."""
    from seqpt_jax.data.corpus import default_dir, ensure_corpus
    if corpus:
        path = Path(corpus).expanduser()
        if (path / "text").is_dir() and any((path / "text").glob("*.train.jsonl")):
            return path
        return ensure_corpus(path, langs=list(plan.langs), max_mb=_build_mb(plan), progress=progress is not False)
    if (default_dir() / "COMPLETE").is_file():
        return default_dir()
    path = default_dir().parent / "corpus-demo"
    log(f"  no corpus at {default_dir()}; building the demo languages ({','.join(plan.langs)}) "
        f"into {path} (the full corpus: `seqpt corpus build`)")
    return ensure_corpus(path, langs=list(plan.langs), max_mb=_build_mb(plan), progress=progress is not False)


def _build_mb(plan: Plan) -> float:
    return 40.0 * max(1.0, plan.train_mb)


def _sample(rows: list, n: int, key: Callable = json.dumps) -> list:
    """At most n rows, chosen by a content hash: deterministic and independent of file order."""
    if len(rows) <= n:
        return rows
    ranked = sorted(rows, key=lambda r: hashlib.sha1(key(r).encode("utf-8")).digest())
    return ranked[:n]


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_jsonl(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _take_text(rows: list[dict], mb: float) -> list[dict]:
    budget, used, out = mb * 1e6, 0, []
    for row in _sample(rows, len(rows), key=lambda r: r.get("id", r["text"])):
        size = len(row["text"].encode("utf-8"))
        if used + size > budget and out:
            break
        out.append(row)
        used += size
    return out


def _conll_blocks(path: Path) -> list[str]:
    """Sentences of a CoNLL file, without comment lines ("# id = ..."), which not every reader skips."""
    blocks = []
    for block in path.read_text("utf-8", errors="replace").split("\n\n"):
        lines = [l for l in block.split("\n") if l.strip() and not (l.startswith("#") and "\t" not in l)]
        if lines:
            blocks.append("\n".join(lines))
    return blocks


def make_slice(corpus: Path, dst: Path, plan: Plan) -> dict:
    """The demo's corpus: per language a bounded sample of the text, and downstream subsets
    (the `section_labels` most frequent English sections; test sets capped per language).
    Same layout as the corpus, so the data and evaluate modules read it unchanged."""
    from seqpt_jax.data import exported
    langs = [l for l in plan.langs if l in exported.manifest(corpus)["languages"]] if exported.is_export(corpus) \
        else [l for l in plan.langs if (corpus / "text" / f"{l}.train.jsonl").is_file()]
    if "en" not in langs:
        raise UserError(f"{corpus} has no English text; the demo fine-tunes on English. Rebuild "
                        "it with `seqpt corpus build` (English is always included).")
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    stats: dict = {}
    for lang in langs:
        for split, mb in (("train", plan.train_mb), ("validation", plan.validation_mb)):
            src = corpus / "text" / f"{lang}.{split}.jsonl"
            rows = _take_text(_jsonl(src), mb) if src.is_file() else []
            _write_jsonl(tmp / "text" / f"{lang}.{split}.jsonl", rows)
            stats.setdefault(lang, {})[split] = {"documents": len(rows),
                                                 "characters": sum(len(r["text"]) for r in rows)}
    tasks: dict = {}
    sec = corpus / "tasks" / "section"
    if (sec / "en.train.jsonl").is_file():
        english = _jsonl(sec / "en.train.jsonl")
        counts: dict = {}
        for r in english:
            counts[r["label"]] = counts.get(r["label"], 0) + 1
        keep = set(sorted(counts, key=lambda l: (-counts[l], l))[:plan.section_labels])
        for lang in langs:
            for split, n in (("train", plan.section_train), ("validation", plan.test_per_lang),
                             ("test", plan.test_per_lang)):
                if split != "test" and lang != "en":
                    continue  # zero-shot: only English trains
                path = sec / f"{lang}.{split}.jsonl"
                rows = [r for r in _jsonl(path) if r["label"] in keep] if path.is_file() else []
                if rows:
                    _write_jsonl(tmp / "tasks" / "section" / path.name, _sample(rows, n))
                    tasks.setdefault("section", {})[f"{lang}.{split}"] = min(n, len(rows))
    tag = corpus / "tasks" / "ui_tagging"
    for lang in langs:
        for split, n in (("train", plan.tagging_train), ("validation", plan.test_per_lang),
                         ("test", plan.test_per_lang)):
            path = tag / f"{lang}.{split}.conll"
            if (split != "test" and lang != "en") or not path.is_file():
                continue
            blocks = _sample(_conll_blocks(path), n, key=str)
            if blocks:
                out = tmp / "tasks" / "ui_tagging" / path.name
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text("\n\n".join(blocks) + "\n\n", "utf-8")
                tasks.setdefault("ui_tagging", {})[f"{lang}.{split}"] = len(blocks)
    (tmp / "stats.json").write_text(json.dumps(stats, indent=1), "utf-8")
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return {"corpus": str(dst), "source": str(corpus), "langs": langs, "text": stats, "tasks": tasks}


def finetune(checkpoint: str, corpus: str, voc: dict, plan: Plan, works: list[Path],
             progress: bool | None = None, tasks: tuple | None = None, epochs: dict | None = None,
             seeds: tuple = (0,)) -> list[dict]:
    """Fine-tuning in each task's source language (English for the corpus tasks) and zero-shot
    tests on every other language, per task (`tasks`, default the demo's), with each fine-tuning
    seed of `seeds` (trained together: `protocol.run_seeds`); one {"tasks"} per seed, whose
    results files go to its folder in `works`. `epochs` overrides plan.finetune_epochs per task.
    Each task also reports its majority-label baseline."""
    return finetune_together([checkpoint], corpus, voc, plan, [works], progress, tasks, epochs, seeds)[0]


def finetune_together(checkpoints: list[str], corpus: str, voc: dict, plan: Plan, works: list[list[Path]],
                      progress: bool | None = None, tasks: tuple | None = None, epochs: dict | None = None,
                      seeds: tuple = (0,)) -> list[list[dict]]:
    """`finetune` of several checkpoints of one kind and config (`same_shape`), every one with
    every seed, each task's replicas trained together (`protocol.run_replicas`): [checkpoint][seed]
    {"tasks"}, results files to works[checkpoint][seed]."""
    from seqpt_jax import params_io
    from seqpt_jax.data import vocab as vocab_lib
    from seqpt_jax.evaluate import finetune as ft, protocol, tasks as ev_tasks
    from seqpt_jax.experiment.stages import write_json_atomic
    loaded = [params_io.load(c) for c in checkpoints]
    kind, cfg = same_shape(checkpoints, loaded)
    vocabulary = vocab_lib.load(voc["path"])
    options = ft.Options(epochs=plan.finetune_epochs, batch_size=32, max_length=plan.finetune_length,
                         target_length=plan.finetune_length, learning_rate=5e-4, in_language=False,
                         progress=progress)
    out = [[{} for _ in seeds] for _ in checkpoints]
    for name in tasks or TASKS:
        task = ev_tasks.from_corpus(name, corpus)
        opts = dataclasses.replace(options, epochs=(epochs or {}).get(name, options.epochs))
        results = protocol.run_replicas(task, kind, cfg, [params for _, _, params in loaded], vocabulary, opts, seeds)
        for per_seed, work_of, out_of in zip(results, works, out):
            for result, work, tasks_out in zip(per_seed, work_of, out_of):
                write_json_atomic(work / f"{name}.json", result)
                tasks_out[name] = record(result, task.kind, opts.epochs)
    return [[{"tasks": tasks_out} for tasks_out in out_of] for out_of in out]


def same_shape(checkpoints: list[str], loaded: list[tuple]) -> tuple:
    """The (kind, config) every loaded checkpoint shares; replicas must share one program."""
    kinds = {(kind, cfg) for kind, cfg, _ in loaded}
    if len(kinds) != 1:
        raise ValueError(f"checkpoints fine-tuned together must share kind and config: {checkpoints}")
    return next(iter(kinds))


def record(result: dict, kind: str, epochs: float) -> dict:
    """A task's row of the downstream records from its protocol results: the first run's test
    scores per language, its training, and its majority-label baseline."""
    run = result["runs"][0]
    metric = result["primary_metric"]
    test = run["test"]
    out = {"metric": metric, "lang": run["train_lang"], "scores": {l: r[metric] for l, r in test.items()},
           "n": {l: r["n"] for l, r in test.items()}, "steps": run["steps"],
           "epochs": epochs, "final_loss": run["final_loss"]}
    if kind == "tagging":
        out["token_accuracy"] = {l: r["token_accuracy"] for l, r in test.items()}
    if all(r.get("majority") for r in test.values()):
        out["majority"] = {"label": next(iter(test.values()))["majority"]["label"],
                           "scores": {l: r["majority"][metric] for l, r in test.items()}}
        if kind == "tagging":
            out["majority"]["token_accuracy"] = {l: r["majority"]["token_accuracy"] for l, r in test.items()}
    return out
