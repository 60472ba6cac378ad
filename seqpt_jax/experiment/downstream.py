"""Downstream rows of an experiment: every encoder arm that declares `'downstream': True`, and
a randomly initialised encoder of the same shape, fine-tuned with the same budget on the
corpus's English section classification and UI-entity tagging, tested zero-shot on the other
languages (the demo's protocol: `demo.backend.finetune` on a `demo.recipe.make_slice` subset).

The scale gin switches it on and sizes it:
    DOWNSTREAM = True
    DOWNSTREAM_SEEDS = 1          # seeds fine-tuned (the first N)
    FINETUNE_EPOCHS = 1.0
    FINETUNE_LENGTH = 64
    FINETUNE_TRAIN = 1500         # English training examples per task
    FINETUNE_TEST = 300           # test examples per language
Pre-training that does not beat the random-init row has not worked yet.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from seqpt_jax.experiment import spec

RANDOM = "random_init"


def settings() -> dict | None:
    """The parsed scale's downstream settings, or None when it has none."""
    if not spec.macro("DOWNSTREAM", False):
        return None
    return {"seeds": int(spec.macro("DOWNSTREAM_SEEDS", 1)), "epochs": float(spec.macro("FINETUNE_EPOCHS", 1.0)),
            "length": int(spec.macro("FINETUNE_LENGTH", 64)), "train": int(spec.macro("FINETUNE_TRAIN", 1500)),
            "test": int(spec.macro("FINETUNE_TEST", 300))}


def demo_plan(s: dict):
    from seqpt_jax.demo.plan import Plan
    return dataclasses.replace(Plan(), train_mb=0.01, validation_mb=0.01, section_train=s["train"],
                               tagging_train=s["train"], test_per_lang=s["test"], finetune_epochs=s["epochs"],
                               finetune_length=s["length"])


def export(checkpoint: str, dst: Path) -> str:
    """A params_io checkpoint of a training MODEL_DIR's latest params (or `checkpoint` itself);
    of an ELECTRA run, its discriminator as an encoder_mlm (`mappings.electra_to_encoder`)."""
    from seqpt_jax import params_io
    if params_io.read_model(checkpoint)[0] == "electra":
        from seqpt_jax import mappings
        _, cfg, params = params_io.load(checkpoint)
        return params_io.save_params(str(dst), "encoder_mlm", cfg, mappings.electra_to_encoder(params, cfg),
                                     overwrite=True)
    if (Path(checkpoint) / "checkpoints").is_dir():
        kind, cfg, params = params_io.load(checkpoint)
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


def finetune(checkpoint: str, corpus: str, vocab_path: str, s: dict, work: Path, progress=None) -> dict:
    from seqpt_jax.demo import backend
    return backend.finetune(checkpoint, corpus, {"path": vocab_path}, demo_plan(s), work, progress)


def make_slice(corpus: str, dst: Path, s: dict) -> dict:
    from seqpt_jax.demo import recipe
    return recipe.make_slice(Path(corpus), dst, demo_plan(s))


def table(downstream: dict) -> dict:
    """{task: {arm: {"metric", "en": [per seed], "zero_shot": [per seed]}}} from the records."""
    out: dict = {}
    for arm, by_seed in downstream.items():
        for seed in sorted(by_seed):
            for task, res in by_seed[seed].get("tasks", {}).items():
                row = out.setdefault(task, {}).setdefault(arm, {"metric": res["metric"], "en": [], "zero_shot": []})
                scores = res["scores"]
                others = [v for lang, v in scores.items() if lang != "en" and v is not None]
                row["en"].append(scores.get("en"))
                row["zero_shot"].append(sum(others) / len(others) if others else None)
    return out
