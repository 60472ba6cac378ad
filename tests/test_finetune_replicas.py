"""Fine-tuning seeds trained together as replicas (finetune.train_replicas, protocol.run_seeds,
downstream.finetune): each replica reports exactly what a serial fine-tune with its seed reports."""

import dataclasses
import json
import random

import jax
import numpy as np
import pytest

from seqpt_jax import models, params_io
from seqpt_jax.data import vocab as vocab_lib
from seqpt_jax.evaluate import decoding, finetune, protocol, tasks
from test_finetune import _classification, _tagged, _write_conll, _write_jsonl, setup  # noqa: F401

SEEDS = (0, 1, 2)


def assert_close(got, want, where="result"):
    """Equal structure and values; floats within float32 reordering (vmap batches the matmuls)."""
    if isinstance(want, dict):
        assert got.keys() == want.keys(), where
        for k in want:
            assert_close(got[k], want[k], f"{where}[{k!r}]")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6), where
    else:
        assert got == want, where


def _tiny(kind: str):
    """A 1-layer t5 classifier or tagger with dropout on, and 40 synthetic examples it can learn."""
    cfg = models.TransformerConfig(family="t5", vocab_size=64, d_model=16, num_heads=2, head_dim=8, d_ff=32,
                                   num_encoder_layers=1, num_decoder_layers=0, dropout_rate=0.1)
    rng = np.random.default_rng(0)
    tokens = rng.integers(2, 64, (40, 12)).astype(np.int32)
    arrays = ({"encoder_input_tokens": tokens, "labels": tokens[:, 0] % 3} if kind == "classification" else
              {"encoder_input_tokens": tokens, "labels": tokens % 3, "label_weights": np.ones_like(tokens)})
    model = finetune.build_model(kind, cfg, 3)
    inits = [models.init(model, jax.random.key(s), {"encoder_input_tokens": tokens[:1]}) for s in SEEDS]
    return model, arrays, inits


# Scripted validation scores per seed and epoch; with patience 2, seed 0 stops after epoch 4 (best 2),
# seed 1 runs all 6 (best 6), seed 2 stops after epoch 3 (best 1).
SCRIPT = {0: [0.1, 0.5, 0.3, 0.2, 0.4, 0.6], 1: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], 2: [0.5, 0.1, 0.1, 0.6, 0.7, 0.8]}


@pytest.mark.parametrize("kind", ["classification", "tagging"])
@pytest.mark.parametrize("select", [True, False])
def test_replicas_train_like_serial_runs_with_their_own_stops_and_kept_epochs(kind, select):
    model, arrays, inits = _tiny(kind)
    options = finetune.Options(epochs=6, batch_size=16, learning_rate=3e-3, patience=2, select_on_validation=select,
                               progress=False)
    epoch = {"replicas": 0}

    def validate_replicas(replicas):
        assert len(replicas) == len(SEEDS)
        epoch["replicas"] += 1
        return [SCRIPT[s][epoch["replicas"] - 1] for s in SEEDS]

    params, losses, curves = finetune.train_replicas(model, inits, kind, arrays, options, SEEDS,
                                                     validate=validate_replicas)
    assert [len(l) for l in losses] == [12, 18, 9]  # 3 steps an epoch (16 + 16 + 8 rows); each replica's stop
    for seed, init in zip(SEEDS, inits):
        scripted = iter(SCRIPT[seed])
        alone, alone_losses, alone_curve = finetune.train(model, init, kind, arrays,
                                                          dataclasses.replace(options, seed=seed),
                                                          validate=lambda p, s=scripted: next(s))
        assert losses[seed] == pytest.approx(alone_losses, rel=1e-5)
        assert curves[seed] == alone_curve
        for got, want in zip(jax.tree.leaves(params[seed]), jax.tree.leaves(alone)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(finetune.predict_labels(model, params[seed], arrays, 16),
                                      finetune.predict_labels(model, alone, arrays, 16))


def test_replicas_decode_like_each_model_alone():
    """Generation scores every replica with one vmapped decode (greedy and beam search)."""
    cfg = models.TransformerConfig(family="t5", vocab_size=64, d_model=16, num_heads=2, head_dim=8, d_ff=32,
                                   num_encoder_layers=1, num_decoder_layers=1)
    model = finetune.build_model("generation", cfg, 0)
    tokens = np.random.default_rng(0).integers(2, 64, (20, 10)).astype(np.int32)
    inits = [models.init(model, jax.random.key(s)) for s in SEEDS]
    for beam in (1, 2):
        options = finetune.Options(batch_size=20, target_length=6, beam_size=beam)
        together = finetune.generate_replicas(model, finetune.stack(inits), {"encoder_input_tokens": tokens}, options)
        for r, params in enumerate(inits):
            inputs = {"encoder_input_tokens": tokens}
            alone = (decoding.greedy(model, params, inputs, max_length=6) if beam == 1 else
                     decoding.beam_search(model, params, inputs, max_length=6, beam_size=2)[0][:, 0])
            np.testing.assert_array_equal(together[r], alone)


@pytest.mark.parametrize("kind", ["classification", "tagging"])
def test_run_seeds_reports_what_a_serial_run_of_each_seed_reports(setup, tmp_path, kind):  # noqa: F811
    """Real validation (best epoch kept) and dropout (the checkpoint's 0.1): every seed's results
    dict equals `run` with that seed."""
    rng = random.Random(3)
    if kind == "classification":
        files = [_write_jsonl(tmp_path / f"{split}.jsonl", _classification(rng, n))
                 for split, n in (("train", 40), ("validation", 12), ("test", 12))]
    else:
        files = [_write_conll(tmp_path / f"{split}.conll", _tagged(rng, n))
                 for split, n in (("train", 40), ("validation", 12), ("test", 12))]
    task = tasks.from_files(kind, *files)
    vocab = vocab_lib.load(setup["vocab"])
    init_kind, cfg, init = params_io.load(setup["ckpt"])
    options = finetune.Options(epochs=5, batch_size=16, max_length=16, target_length=8, learning_rate=3e-3,
                               progress=False)
    together = protocol.run_seeds(task, init_kind, cfg, init, vocab, options, SEEDS)
    assert cfg.dropout_rate > 0 and len(together) == len(SEEDS)
    for seed, result in zip(SEEDS, together):
        alone = protocol.run(task, init_kind, cfg, init, vocab, dataclasses.replace(options, seed=seed))
        assert len(alone["runs"][0]["validation_curve"]) == 5
        assert_close(result, alone, f"seed {seed}")
    assert together[0]["runs"][0]["first_loss"] != together[1]["runs"][0]["first_loss"]  # seeds differ


def test_downstream_fine_tunes_all_seeds_in_one_training_per_task(setup, tmp_path, monkeypatch):  # noqa: F811
    """downstream.finetune(seeds=3) trains each task once, all seeds as replicas; its records and
    per-seed results files equal serial fine-tunes of each seed."""
    from seqpt_jax.experiment import downstream as ds, subsets
    rng = random.Random(4)
    root = tmp_path / "corpus" / "tasks"
    (root / "section").mkdir(parents=True)
    (root / "ui_tagging").mkdir()
    for split, n in (("train", 40), ("validation", 8), ("test", 8)):
        _write_jsonl(root / "section" / f"en.{split}.jsonl", _classification(rng, n))
        _write_conll(root / "ui_tagging" / f"en.{split}.conll", _tagged(rng, n))
    _write_jsonl(root / "section" / "de.test.jsonl", _classification(rng, 8))
    corpus, names = str(tmp_path / "corpus"), ("section", "ui_tagging")
    s = {"train": 40, "test": 8, "epochs": 3.0, "ner_epochs": 1.0, "length": 16}
    calls, train_replicas = [], finetune.train_replicas

    def counted(model, params, kind, arrays, options, seeds, desc="fine-tune", validate=None):
        calls.append((desc, seeds))
        return train_replicas(model, params, kind, arrays, options, seeds, desc, validate)
    monkeypatch.setattr(finetune, "train_replicas", counted)

    work = tmp_path / "work"
    res = ds.finetune(setup["ckpt"], corpus, setup["vocab"], s, work, progress=False, tasks=names, seeds=3)
    assert calls == [("section [en]", SEEDS), ("ui_tagging [en]", SEEDS)]
    assert [run["seed"] for run in res["finetunes"]] == list(SEEDS) and res["tasks"] is res["finetunes"][0]["tasks"]
    for k in SEEDS:
        serial = tmp_path / f"serial{k}"
        serial.mkdir()
        (alone,) = subsets.finetune(setup["ckpt"], corpus, {"path": setup["vocab"]}, ds.demo_plan(s), [serial],
                                    progress=False, tasks=names, epochs={"ja_ner": 1.0}, seeds=(k,))
        assert_close(res["finetunes"][k]["tasks"], alone["tasks"], f"seed {k}")
        for name in names:
            assert_close(json.loads((work / f"ft{k}" / f"{name}.json").read_text()),
                         json.loads((serial / f"{name}.json").read_text()), f"seed {k} {name}.json")
    assert calls[2:] == [(f"{name} [en]", (k,)) for k in SEEDS for name in names]


def test_downstream_fine_tunes_several_checkpoints_together_as_serial_runs_would(setup, tmp_path, monkeypatch):  # noqa: F811
    """downstream.finetune_together: per task, one training of every checkpoint x fine-tuning seed
    (an experiment's encoders and their random init); each checkpoint's record and results files
    equal its own downstream.finetune."""
    from seqpt_jax.experiment import downstream as ds
    rng = random.Random(5)
    root = tmp_path / "corpus" / "tasks" / "section"
    root.mkdir(parents=True)
    for split, n in (("train", 40), ("validation", 8), ("test", 8)):
        _write_jsonl(root / f"en.{split}.jsonl", _classification(rng, n))
    corpus, names = str(tmp_path / "corpus"), ("section",)
    s = {"train": 40, "test": 8, "epochs": 2.0, "ner_epochs": 1.0, "length": 16}
    ckpts = [setup["ckpt"], ds.random_like(setup["ckpt"], 7, tmp_path / "random")]
    calls, train_replicas = [], finetune.train_replicas

    def counted(model, params, kind, arrays, options, seeds, desc="fine-tune", validate=None):
        calls.append((desc, seeds))
        return train_replicas(model, params, kind, arrays, options, seeds, desc, validate)
    monkeypatch.setattr(finetune, "train_replicas", counted)

    works = [tmp_path / "a", tmp_path / "b"]
    together = ds.finetune_together(ckpts, corpus, setup["vocab"], s, works, progress=False, tasks=names, seeds=2)
    assert calls == [("section [en]", (0, 1, 0, 1))]
    assert together[0]["finetunes"][0]["tasks"] != together[1]["finetunes"][0]["tasks"]  # the inits differ
    for ckpt, work, got in zip(ckpts, works, together):
        alone = ds.finetune(ckpt, corpus, setup["vocab"], s, tmp_path / "alone" / work.name, progress=False,
                            tasks=names, seeds=2)
        assert_close(got, alone, f"{ckpt}")
        for k in (0, 1):
            assert_close(json.loads((work / f"ft{k}" / "section.json").read_text()),
                         json.loads((tmp_path / "alone" / work.name / f"ft{k}" / "section.json").read_text()))
