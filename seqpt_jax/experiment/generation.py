"""Downstream generation rows of an experiment: every seq2seq arm that declares
`'generation': True`, and a randomly initialised seq2seq model of the same shape, fine-tuned
with the same budget on the corpus's English package-synopsis task (a package's description
-> its one-line synopsis, both written by the package's maintainers) and scored by chrF on
held-out packages. This is the generation half of Soltan et al.'s claim (c): a warm start
reaches the scratch seq2seq's downstream generation scores.

Sized by the scale gin with the downstream settings (experiment/downstream.py) plus
    GENERATION_EPOCHS = 3.0       # synopsis fine-tuning epochs
    GENERATION_TARGET_LENGTH = 32 # synopsis tokens (targets and greedy decoding)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from seqpt_jax.experiment import spec

TASK = "synopsis"
RANDOM = "random_init_s2s"


def settings(downstream: dict) -> dict:
    """The downstream settings plus the generation-specific ones of the parsed scale."""
    return {**downstream, "epochs": float(spec.macro("GENERATION_EPOCHS", 3.0)),
            "target_length": int(spec.macro("GENERATION_TARGET_LENGTH", 32))}


def pretraining_seeds(pretraining: int, s: dict) -> range:
    """The pre-training seeds whose seq2seq models are fine-tuned on synopses, once each (one
    fine-tuning seed: chrF is compared on means, not on paired intervals)."""
    return range(min(pretraining, s["seeds"]))


def _sample(rows: list[dict], n: int) -> list[dict]:
    """At most n rows, by a content hash: deterministic, independent of file order."""
    ranked = sorted(rows, key=lambda r: hashlib.sha1(json.dumps(r, sort_keys=True).encode("utf-8")).digest())
    return ranked[:n]


def make_subset(corpus: str, dst: Path, s: dict) -> dict:
    """English synopsis train / test subsets in the corpus layout (tasks/synopsis/en.*.jsonl).
    Packages are split by source item when the corpus is built, so no test package is trained on."""
    src = Path(corpus) / "tasks" / TASK
    out = {}
    for split, n in (("train", s["train"]), ("test", s["test"])):
        with open(src / f"en.{split}.jsonl", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        unique = list({(r["source"], r["target"]): r for r in rows}.values())  # DDTP repeats descriptions
        rows = _sample(unique, n)
        path = dst / "tasks" / TASK / f"en.{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
        out[split] = len(rows)
    return {"corpus": str(dst), "examples": out}


def finetune_together(checkpoints: list[str], corpus: str, vocab_path: str, s: dict, progress=None) -> list[dict]:
    """Fine-tunes seq2seq checkpoints of one kind and config on English synopses, trained together
    as replicas of one program (`protocol.run_replicas`, fine-tuning seed 0 each); chrF (and BLEU)
    on the test split, one record per checkpoint in the schema of experiment/downstream.py's
    records: {"tasks": {TASK: {...}}}."""
    from seqpt_jax import params_io
    from seqpt_jax.data import vocab as vocab_lib
    from seqpt_jax.evaluate import finetune as ft, protocol, tasks
    from seqpt_jax.experiment.subsets import same_shape

    loaded = [params_io.load(c) for c in checkpoints]
    kind, cfg = same_shape(checkpoints, loaded)
    options = ft.Options(epochs=s["epochs"], batch_size=32, max_length=s["length"],
                         target_length=s["target_length"], learning_rate=5e-4, in_language=False,
                         progress=progress)
    results = protocol.run_replicas(tasks.from_corpus(TASK, corpus, ["en"]), kind, cfg,
                                    [params for _, _, params in loaded], vocab_lib.load(vocab_path), options,
                                    (options.seed,))
    out = []
    for (result,) in results:
        run = result["runs"][0]
        test = run["test"]["en"]
        out.append({"tasks": {TASK: {"metric": "chrf", "scores": {"en": test["chrf"]}, "bleu": {"en": test["bleu"]},
                                     "n": {"en": test["n"]}, "steps": run["steps"], "final_loss": run["final_loss"],
                                     "samples": test.get("samples", [])}}})
    return out
