"""A run is one value, started one way (issue 21): the places that started runs or rebuilt the
trainer's setup had diverged. One test per divergence, each failing on the code before the
launcher, the corpus-location rule and `loop.setup`:

- an experiment arm's MODEL_DIR has `seqpt train`'s whole layout, so `seqpt finetune --init ARM`
  finds its vocabulary without --vocab;
- SEQPT_DATA_DIR is where `seqpt train`, `vocab` and `finetune` look for the corpus;
- `seqpt bench phases` times the step training runs for seq2seq_masked_encoder.gin, and
  `--plan` counts that arm as the trainer books it;
- the init evaluation takes its run's config instead of reading whatever gin parsed last.
"""

from __future__ import annotations

import json

import pytest

from data_fixtures import make_corpus
from seqpt_jax import cli
from seqpt_jax.data import vocab
from seqpt_jax.errors import UserError

FAST = ["--gin.Options.batch_size=8", "--gin.Options.max_length=16", "--gin.Options.epochs=1",
        "--gin.Options.in_language=False", "--gin.Options.progress=False"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A SEQPT_DATA_DIR holding a corpus and a vocabulary trained on it."""
    root = tmp_path_factory.mktemp("seqpt_data")
    make_corpus(root / "corpus", langs=["en", "de"])
    vocab.train(root / "corpus", 300, root / "sp.model")
    return root


@pytest.mark.slow  # one arm of 4 steps and a one-epoch fine-tuning: ~20 s CPU
def test_finetune_inits_from_an_experiment_arm_without_vocab(data_dir, tmp_path):
    from seqpt_jax.experiment import runner
    out = tmp_path / "exp"
    runner.Runner("growth", "test", 1, out, corpus=str(data_dir / "corpus"), vocab=str(data_dir / "sp.model"),
                  progress=False, only=["source"], log=lambda s: None).run()
    arm = out / "source" / "seed0" / "train"
    for name in ("config.gin", "run.json", "vocab.json", "model.json", "summary.json"):  # `seqpt train`'s layout
        assert (arm / name).is_file(), name
    rc = cli.main(["finetune", "--task", "section", "--init", str(arm), "--corpus", str(data_dir / "corpus"),
                   "--langs", "en,de", "--out", str(tmp_path / "ft"), *FAST])
    assert rc == 0
    assert json.loads((tmp_path / "ft" / "results.json").read_text())["init"] == str(arm)


def test_train_reads_the_corpus_under_SEQPT_DATA_DIR(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQPT_DATA_DIR", str(data_dir))
    run = tmp_path / "run"
    rc = cli.main(["train", "--gin_file=models/bert_tiny.gin", "--gin_file=runs/pretrain_mlm.gin",
                   "--gin_file=hw/cpu.gin", f"--gin.MODEL_DIR={run}", f"--gin.VOCAB={data_dir / 'sp.model'}",
                   "--gin.TRAIN_STEPS=2", "--gin.BATCH_SIZE=8", "--gin.INPUT_LENGTH=16",
                   "--gin.loop.train.eval_every=0", "--gin.loop.train.progress=False"])
    assert rc == 0
    assert json.loads((run / "summary.json").read_text())["steps"] == 2


def test_vocab_train_reads_the_corpus_under_SEQPT_DATA_DIR(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEQPT_DATA_DIR", str(data_dir))
    assert cli.main(["vocab", "train", "--size", "300", "--out", str(tmp_path / "v.model"), "--max-chars",
                     "20000"]) == 0
    assert (tmp_path / "v.model").is_file()


def test_finetune_looks_for_the_corpus_under_SEQPT_DATA_DIR(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEQPT_DATA_DIR", str(tmp_path / "elsewhere"))
    rc = cli.main(["finetune", "--task", "section", "--preset", "bert-tiny", "--out", str(tmp_path / "o")])
    assert rc == 2
    assert str(tmp_path / "elsewhere" / "corpus") in capsys.readouterr().err


MASKED = ["models/t5_tiny.gin", "runs/seq2seq_masked_encoder.gin", "hw/cpu.gin"]


def test_bench_phases_times_the_encoder_mlm_step_that_training_runs():
    from seqpt_jax.bench import phases
    built = phases.build(MASKED, ["models.preset.vocab_size = 128", "INPUT_LENGTH = 16",
                                  "TASK_FEATURE_LENGTHS = {'inputs': 16, 'targets': 8}", "BATCH_SIZE = 8"])
    assert "mlm_head" in built["state"].params                   # the head training adds
    (row,) = built["rows"]
    assert row["counted"] == pytest.approx(row["jaxpr"], rel=0.01)  # and the ledger counts it


def test_plan_counts_the_masked_encoder_arm_as_the_trainer_books_it():
    from seqpt_jax.data import mlm_positions
    from seqpt_jax.experiment import plan, spec
    from seqpt_jax.train import loop
    (row,) = plan.plan("sequential", "test", 1, only=["s2s_masked"])["arms"]
    spec.parse("sequential", "s2s_masked", "test", "hw/cpu.gin", ["models.preset.vocab_size = %VOCAB_SIZE"],
               spec.placeholder_bindings())
    trainer = loop.setup(spec.train_config())
    assert "mlm_head" in trainer.shapes
    lengths = spec.value("data.mixture_or_task.task_feature_lengths")
    head = mlm_positions.max_predictions(0.15, lengths["inputs"])   # the feed gathers the masked positions
    booked = trainer.phase_flops(trainer.phases[-1], lengths["inputs"], lengths["targets"], head)
    assert row["train_flops"] == pytest.approx(booked * trainer.config.schedule.steps, rel=1e-9)


def test_init_evaluation_takes_its_config_not_the_last_parsed_gin():
    import dataclasses
    import functools

    from seqpt_jax.experiment import runner, spec
    from seqpt_jax.train import data
    bind = ["models.preset.vocab_size = 64"]
    spec.parse("growth", "source", "test", "hw/cpu.gin", bind, spec.placeholder_bindings())
    source = dataclasses.replace(spec.train_config(), data=functools.partial(data.synthetic, vocab_size=64,
                                                                             length=32))
    spec.parse("growth", "scratch", "test", "hw/cpu.gin", bind, spec.placeholder_bindings())  # parsed last
    res = runner.evaluate_init(source)
    assert res["model"].cfg.d_model == 16 and res["loss"] > 0   # the source's width (scale_test's SOURCE_D_MODEL)


def test_train_config_groups_name_every_argument_of_loop_train_once():
    import dataclasses
    import functools
    import inspect

    from seqpt_jax import models
    from seqpt_jax.train import data, loop
    from seqpt_jax.train.config import GROUPS, TrainConfig
    fields = [f.name for g in GROUPS.values() for f in dataclasses.fields(g)]
    params = [p for p in inspect.signature(loop.train).parameters if p not in ("model_dir", "model", "data", "then")]
    assert sorted(fields) == sorted(params) and len(set(fields)) == len(fields)
    model = models.EncoderMLM(models.preset("bert-tiny", vocab_size=101))
    config = loop.train("/unused", model, functools.partial(data.synthetic), steps=3, batch_size=8,
                        freeze=["^encoder/"], unfreeze_step=2, then=lambda c: c)
    assert isinstance(config, TrainConfig) and config.recipe.freeze == ("^encoder/",)
    assert config.schedule.steps == 3 and config.checkpointing.save_every == 100   # loop.train's default
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.schedule.steps = 4
    with pytest.raises(UserError, match="must divide by grad_accum"):   # checked when the value is made
        loop.train("/unused", model, data.synthetic, steps=3, batch_size=8, grad_accum=3, then=lambda c: c)
    trainer = loop.setup(config)
    assert [p.name for p in trainer.phases] == ["frozen", "full"] and trainer.kind == "encoder_mlm"


def test_evaluations_build_the_held_out_batches_once():
    """Every evaluation of a run uses the same validation batches; the trainer builds them once
    (building them cost the host ~25x the device's evaluation at --scale gpu), with the same result."""
    import dataclasses
    import functools

    import jax

    from seqpt_jax import models
    from seqpt_jax.train import data, loop
    made = []

    def counted(split, batch_size, seed, shard):
        made.append(split)
        return data.synthetic(split, batch_size, seed, shard, vocab_size=101, length=16)
    model = models.EncoderMLM(models.preset("bert-tiny", vocab_size=101))
    config = loop.train("/unused", model, counted, steps=3, batch_size=8, eval_batches=3, then=lambda c: c)
    trainer = loop.setup(config)
    params = trainer.initial_params()
    first = trainer.evaluate(params)
    assert [trainer.evaluate(params) for _ in range(2)] == [first, first] and made == ["validation"]
    fresh = loop.setup(dataclasses.replace(config, data=functools.partial(data.synthetic, vocab_size=101, length=16)))
    assert fresh.evaluate(jax.tree.map(lambda x: x, params)) == first
