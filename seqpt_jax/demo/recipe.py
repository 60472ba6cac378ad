"""The demo's stages, in order, each resumable (stages.py): the whole sequential recipe.

    corpus -> data slice -> vocabulary -> MLM encoder (small)
      -> bert2BERT: AKI growth + two-stage training -> larger MLM encoder
      -> warm start: seq2seq from the small encoder, encoder frozen, then unfrozen
      -> seq2seq from scratch (same size and steps) -> its encoder extracted
      -> fine-tune every encoder on English, test zero-shot on the other languages
      -> summary table (markdown + JSON) and loss-vs-FLOPs plot

Training and fine-tuning go through a backend (backend.py: the trainer's and the
evaluator's Python APIs); mappings are the pure functions of `seqpt_jax.mappings`. FLOPs are
cumulative along the chain: a grown or warm-started model carries its parent's compute.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

from seqpt_jax.demo import report
from seqpt_jax.demo.plan import Plan
from seqpt_jax.demo.stages import StageRunner
from seqpt_jax.errors import UserError

ENCODERS = ("mlm_small", "mlm_grown", "extracted")  # the encoders fine-tuned downstream
TASKS = ("section", "ui_tagging")


@dataclasses.dataclass(frozen=True)
class Run:
    """One pre-training run, as the backend needs it."""

    name: str
    kind: str                    # encoder_mlm | encoder_decoder
    cfg: object                  # models.TransformerConfig
    objective: str               # mlm | span_corruption
    steps: int
    init: str | None = None      # a params_io checkpoint to start from
    freeze: tuple = ()           # path regexes frozen (stop-gradient) before unfreeze_step
    unfreeze_step: int = 0
    two_stage: tuple = ()        # bert2BERT sampled sub-models: (block, steps) -> loop.TwoStage


# ----- corpus and data slice ------------------------------------------------------------------

def find_corpus(corpus: str | None, plan: Plan, log: Callable) -> Path:
    """--corpus DIR if given (built there with the demo languages if empty), else the default
    corpus if it is built, else a demo-sized build of the demo languages beside it."""
    from seqpt_jax.data.corpus import default_dir, ensure_corpus
    if corpus:
        path = Path(corpus).expanduser()
        if (path / "text").is_dir() and any((path / "text").glob("*.train.jsonl")):
            return path
        return ensure_corpus(path, langs=list(plan.langs), max_mb=_build_mb(plan))
    if (default_dir() / "COMPLETE").is_file():
        return default_dir()
    path = default_dir().parent / "corpus-demo"
    log(f"  no corpus at {default_dir()}; building the demo languages ({','.join(plan.langs)}) "
        f"into {path} (the full corpus: `seqpt corpus build`)")
    return ensure_corpus(path, langs=list(plan.langs), max_mb=_build_mb(plan))


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
    langs = [l for l in plan.langs if (corpus / "text" / f"{l}.train.jsonl").is_file()]
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


# ----- the recipe -----------------------------------------------------------------------------

class Demo:
    """`Demo(out, plan, backend).run()` runs every stage not done yet and writes the summary."""

    def __init__(self, out: str | Path, plan: Plan, backend, corpus: str | None = None,
                 log: Callable[[str], None] = print):
        self.out, self.plan, self.backend, self.corpus, self.log = Path(out).expanduser(), plan, backend, corpus, log
        self.runner = StageRunner(self.out, log=log, total=8 + len(ENCODERS))

    def _cfg(self, size: dict, vocab_size: int):
        from seqpt_jax import models
        # scan_unroll=0: hw/cpu.gin's setting (layers unrolled), as the demo runs on CPU.
        return models.preset("bert-tiny", vocab_size=vocab_size,
                             max_length=max(self.plan.length, self.plan.finetune_length),
                             dropout_rate=0.0, scan_unroll=0, **size)

    def _pretrain(self, run: Run, parent: str | None, work: Path) -> dict:
        res = self.backend.pretrain(run, work, self.data, self.vocab)
        base = self.runner.results[parent]["flops_total"] if parent else 0.0
        return {"model": run.name, "kind": run.kind, "objective": run.objective, "parent": parent,
                "steps": run.steps, "params": res["params"], "checkpoint": res["checkpoint"],
                "flops": res["flops"], "flops_total": base + res["flops"], "val_loss": res["val_loss"],
                "curve": [[base + f, loss] for f, loss in res["curve"]],
                "config": dataclasses.asdict(run.cfg), **res.get("extra", {})}

    def _mapped(self, work: Path, src: str, fn: Callable, kind: str, cfg) -> str:
        """Applies a mapping to a checkpoint once; the result is saved atomically as work/init."""
        from seqpt_jax import params_io
        path = work / "init"
        if not (path / params_io.MODEL_FILE).is_file():
            _, src_cfg, params = params_io.load(src)
            params_io.save_params(str(path), kind, cfg, fn(params, src_cfg), overwrite=True)
        return str(path)

    def _check_plan(self) -> None:
        """A rerun must use the plan the finished stages were made with (no silent mixing)."""
        path, plan = self.out / "plan.json", json.loads(json.dumps(self.plan.to_dict()))
        if path.is_file():
            if json.loads(path.read_text("utf-8")) != plan:
                raise UserError(f"{self.out} holds a demo run with another plan (--minutes or sizes); "
                                "rerun with the same settings to continue, or choose another --out.")
        else:
            from seqpt_jax.demo.stages import write_json_atomic
            write_json_atomic(path, plan)

    def run(self) -> dict:
        import jax

        from seqpt_jax import mappings, models, params_io
        p, r, key = self.plan, self.runner, jax.random.key(0)
        self._check_plan()
        src = r.run("corpus", lambda w: {"corpus": str(find_corpus(self.corpus, p, self.log))},
                    "find or build the embedded corpus")["corpus"]
        data = r.run("data", lambda w: make_slice(Path(src), w / "corpus", p),
                     f"slice {p.train_mb:g} MB/language of text and the downstream subsets")
        self.data = data
        voc = r.run("vocab", lambda w: self.backend.vocab(data["corpus"], data["langs"], p, w),
                    f"SentencePiece vocabulary, {p.vocab_size} pieces")
        self.vocab = voc
        small, large = self._cfg(p.small, voc["vocab_size"]), self._cfg(p.large, voc["vocab_size"])

        r.run("mlm_small", lambda w: self._pretrain(
            Run("mlm_small", "encoder_mlm", small, "mlm", p.mlm_steps), None, w),
            f"pre-train a small MLM encoder ({p.mlm_steps} steps)")

        def grown(w: Path) -> dict:
            init = self._mapped(w, r.results["mlm_small"]["checkpoint"], lambda x, c: mappings.grow(
                x, c, large, method="aki", rng=key), "encoder_mlm", large)
            # bert2BERT stage 1: l_b = the small model's depth; sub-models i = 1..L/l_b sampled per step.
            two_stage = (p.small["num_encoder_layers"], p.grow_stage_steps)
            return self._pretrain(Run("mlm_grown", "encoder_mlm", large, "mlm", p.grow_steps, init,
                                      two_stage=two_stage), "mlm_small", w)
        r.run("mlm_grown", grown, f"bert2BERT: AKI growth to {large.num_encoder_layers}x{large.d_model}, "
              f"two-stage training ({p.grow_steps} steps)")

        def warm(w: Path) -> dict:
            from seqpt_jax.train import freezing
            init = self._mapped(w, r.results["mlm_small"]["checkpoint"], lambda x, c: mappings.encoder_to_seq2seq(
                x, c, small, rng=key), "encoder_decoder", small)
            return self._pretrain(Run("s2s_warm", "encoder_decoder", small, "span_corruption", p.warm_steps,
                                      init, freeze=freezing.ENCODER_SIDE, unfreeze_step=p.warm_frozen_steps),
                                  "mlm_small", w)
        r.run("s2s_warm", warm, f"warm-start seq2seq from the MLM encoder: frozen {p.warm_frozen_steps} "
              f"steps, then unfrozen (to {p.warm_steps})")
        r.run("s2s_scratch", lambda w: self._pretrain(
            Run("s2s_scratch", "encoder_decoder", small, "span_corruption", p.scratch_steps), None, w),
            f"seq2seq from scratch ({p.scratch_steps} steps)")

        def extract(w: Path) -> dict:
            scratch = r.results["s2s_scratch"]
            path = self._mapped(w, scratch["checkpoint"], lambda x, c: mappings.seq2seq_to_encoder(
                x, c, small, rng=key), "encoder_mlm", small)
            return {"model": "extracted", "kind": "encoder_mlm", "objective": "mlm", "parent": "s2s_scratch",
                    "params": models.count_params(params_io.load(path)[2]),
                    "checkpoint": path, "flops": 0.0, "flops_total": scratch["flops_total"], "val_loss": None,
                    "curve": [], "note": "encoder of s2s_scratch (MLM head fresh); its compute is s2s_scratch's"}
        r.run("extracted", extract, "extract the encoder of the seq2seq model trained from scratch")

        downstream = {}
        for name in ENCODERS:
            ckpt = r.results[name]["checkpoint"]
            downstream[name] = r.run(f"finetune_{name}", lambda w, ckpt=ckpt, name=name: {
                "model": name, **self.backend.finetune(ckpt, data["corpus"], voc, p, w)},
                f"fine-tune {name} on en {'/'.join(TASKS)}, test zero-shot")
        runs = [r.results[n] for n in ("mlm_small", "mlm_grown", "s2s_warm", "s2s_scratch", "extracted")]
        # Not a stage: always rewritten from the stage results (cheap, and never stale).
        return {**report.write(self.out, runs, downstream), "ran": list(r.ran), "stages": r.results}
