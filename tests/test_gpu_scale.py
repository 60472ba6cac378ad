"""--scale gpu: the plans' wall time on an H200 and tokens per parameter, and the size of the
exported corpus it trains on (docs/experiments.md: `seqpt corpus export --max-tokens 1000000
--max-examples 2000` of the default 15-language corpus)."""

import numpy as np
import pytest

from seqpt_jax.data import exported
from seqpt_jax.experiment import plan



def _plan(experiment):
    return plan.plan(experiment, "gpu", seeds=3, hw="hw/gpu.gin")


def test_growth_fits_nine_minutes_on_an_h200_with_every_target_at_20_tokens_per_parameter():
    p = _plan("growth")
    wall = p["wall"]
    assert wall["seconds"] <= 9 * 60, plan.text(p)
    assert wall["seconds"] == pytest.approx(sum(wall["parts"].values()))
    assert wall["parts"]["compile"] > 0 and wall["feed_workers"] >= 1      # compiles and the feed are counted
    targets = [r for r in p["arms"] if r["role"] in ("scratch", "recipe", "control")]
    assert len(targets) >= 8 and all(r["tokens_per_param"] >= 20 for r in targets), plan.text(p)
    assert p["seeds"] >= 3
    assert "expected wall time on one H200" in plan.text(p) and "tokens per parameter" in plan.text(p)


def test_sequential_pretrains_every_model_at_20_tokens_per_parameter_and_counts_its_fine_tunes():
    p = _plan("sequential")
    # the targets: the MLM encoder and the seq2seq models the recipes are compared on. s2s_masked's
    # untied encoder MLM head adds 1M parameters at equal steps (16.8 tokens/param, printed by the plan);
    # enc_continued is a top-up of mlm.
    targets = [r for r in p["arms"] if r["arm"] == "mlm" or r["role"] in ("scratch", "recipe")]
    assert len(targets) >= 6 and all(r["tokens_per_param"] >= 20 for r in targets), plan.text(p)
    d = p["downstream"]
    # every pre-training seed's encoders x fine-tuning seeds trained together: a run per task and seed
    assert p["wall"]["finetunes"] >= len(d["tasks"]) * d["pretraining_seeds"]
    assert p["wall"]["parts"]["finetune"] > p["wall"]["finetunes"] * p["wall"]["finetune_s"]  # + their FLOPs
    assert d["pretraining_seeds"] >= 3 and d["finetune_seeds"] >= 3 and d["train"] >= 2000


def test_the_exported_corpus_for_the_gpu_scale_fits_48_mb():
    """Token shards: 15 languages x at most 1.0 M training tokens (validation and test a tenth each)
    in uint16 (the 8,100-id vocabulary fits); 12 MB left for document offsets, task files (at most
    2,000 examples each) and the vocabulary, which the manifest's `bytes` measures at export."""
    languages, max_tokens, vocab_size = 15, 1_000_000, plan.plan("growth", "gpu", 1, "hw/gpu.gin")["arms"][0]["vocab_size"]
    assert exported._token_dtype(vocab_size) == np.uint16
    tokens = languages * max_tokens * (1 + 2 / exported.HELD_OUT_SHARE)
    assert tokens * 2 <= 36e6
    for experiment in ("growth", "sequential"):   # the corpus is seen a few times over, not hundreds
        most = max(r["tokens"] for r in _plan(experiment)["arms"])
        assert most / (languages * max_tokens) < 8


def test_the_plan_counts_the_fine_tuning_runs_the_runner_makes():
    """runner._together trains a pre-training seed's encoders (and their random init) x fine-tuning
    seeds on one task as one run, and its generation rows (each seq2seq arm and its random init)
    as one run; the plan counts those runs, and the replicas' FLOPs grow with the encoders."""
    down = {"encoders": ["mlm", "random_init"], "tasks": ["section"], "pretraining_seeds": 3, "finetune_seeds": 3,
            "generation": ["s2s_scratch"], "encoder_params": 1e6, "generation_params": 2e6,
            "generation_settings": {"epochs": 1.0, "target_length": 8},
            "train": 100, "test": 10, "epochs": 1.0, "ner_epochs": 2.0, "length": 16}
    assert plan.finetune_count(down) == 1 * 3 + 3
    more = {**down, "encoders": ["mlm", "electra", "random_init"]}
    assert plan.finetune_count(more) == plan.finetune_count(down)
    encoders_only = plan.finetune_flops({**down, "generation": []})
    assert plan.finetune_flops({**more, "generation": []}) == pytest.approx(1.5 * encoders_only)
    # section: 100 examples x 16 tokens x 6 per parameter, a validation pass and 15 zero-shot tests
    assert encoders_only == pytest.approx(2 * 3 * 3 * 1e6 * 16 * (6 * 100 + 2 * 10 * (1 + 15)))


def test_plan_measure_times_each_shape_and_a_fine_tune_and_plans_the_wall_from_them():
    """`--plan --measure`: the wall time comes from this machine's timings (here the CPU), not the
    scale gin's assumptions: every arm of one shape shares one timing, compiles are the measured
    mean, fine-tunes the measured seconds."""
    p = plan.plan("sequential", "test", seeds=3, only=["mlm"], measure=True)
    m, w = p["measured"], p["wall"]
    assert m["backend"] == "cpu" and [s["arms"] for s in m["shapes"]] == [["mlm"]]
    shape = m["shapes"][0]
    assert shape["step_s"] > 0 and shape["eval_step_s"] > 0 and shape["flops_per_step"] > 0 and len(m["compile_s"]) == 2
    mlm = p["arms"][0]
    assert mlm["seconds_per_seed"] == pytest.approx(mlm["train_flops"] / shape["flops_per_step"] * shape["step_s"]
                                                    + mlm["eval_passes"] * mlm["eval_batches"] * shape["eval_step_s"])
    assert w["measured"] and w["compile_s"] == pytest.approx(np.mean(m["compile_s"])) and m["finetune_s"] > 0
    assert w["parts"]["finetune"] == pytest.approx(w["finetunes"] * m["finetune_s"])
    assert w["seconds"] == pytest.approx(sum(w["parts"].values()))
    assert "measured on this cpu" in plan.text(p) and "feed not modelled" in plan.text(p)
