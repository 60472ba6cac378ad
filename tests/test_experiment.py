"""seqpt experiment: arms read from gin, --plan, a real run at --scale test (killed and
resumed), the report's schema and claims, and the paper-scale gins' shapes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from data_fixtures import make_corpus
from seqpt_jax.commands import experiment as experiment_cmd
from seqpt_jax.errors import UserError
from seqpt_jax.experiment import plan, report, runner, spec
from seqpt_jax.train.preemption import EXIT_CODES, Stopped


def test_every_arm_declares_its_role_and_dependencies_come_first():
    for experiment in ("growth", "sequential"):
        arms = spec.read_arms(experiment, "test")
        names = [a.name for a in arms]
        assert set(names) == set(spec.arm_names(experiment))
        for i, arm in enumerate(arms):
            for dep in arm.needs.values():
                assert names.index(dep) < i, f"{arm.name} runs before {dep}, which it needs"
            if arm.role in ("recipe", "control"):
                assert arm.compare and spec.read_arm(experiment, arm.compare, "test").role == "scratch"
    grown = {a.name: a for a in spec.read_arms("growth", "test")}
    assert grown["stack"].needs == {"SMALL_CHECKPOINT": "source_shallow"} and grown["fpi"].source == "source"
    assert grown["random"].source is None  # a random init pays for no source


def test_plan_counts_phases_with_the_trainers_ledger():
    p = plan.plan("growth", "test", seeds=3)
    rows = {r["arm"]: r for r in p["arms"]}
    full = rows["scratch"]["train_flops"] / rows["scratch"]["steps"]
    assert rows["aki"]["train_flops"] == pytest.approx(rows["scratch"]["train_flops"])
    two = rows["aki_two_stage"]
    assert [ph["phase"] for ph in two["phases"]] == ["stage1", "full"]  # sampled sub-models: one stage
    assert two["train_flops"] < rows["scratch"]["train_flops"]          # sub-model stages cost less
    assert two["phases"][-1]["flops_per_step"] == pytest.approx(full)
    assert rows["source"]["params"] < rows["scratch"]["params"]
    dist = rows["distill"]  # AKI + distillation from the source for DISTILL_STEPS = 2 of 6 steps
    assert [(ph["phase"], ph["steps"]) for ph in dist["phases"]] == [("distill", 2), ("full", 4)]
    teacher_forward = dist["phases"][0]["flops_per_step"] - full  # the source's forward pass per step
    assert teacher_forward == pytest.approx(rows["source"]["eval_pass_flops"] / 2)  # EVAL_BATCHES = 2
    assert dist["train_flops"] == pytest.approx(rows["aki"]["train_flops"] + 2 * teacher_forward)
    per_seed = sum(r["train_flops"] + r["eval_flops"] for r in p["arms"])
    assert p["total_flops"] == pytest.approx(3 * per_seed)
    assert p["total_seconds"] == pytest.approx(p["total_flops"] / 30e9)  # THROUGHPUT of scale_test.gin
    two = plan.plan("sequential", "test", 2)   # an arm's row is the same for any number of seeds
    warm = {r["arm"]: r for r in two["arms"]}
    assert warm["warm_frozen25"]["train_flops"] < warm["warm_frozen0"]["train_flops"]  # frozen = no encoder backward
    assert warm["enc_scratch"]["train_flops"] == 0 and warm["enc_scratch"]["eval_flops"] > 0
    electra, mlm = warm["electra"], warm["mlm"]   # sized like mlm: its encoder, steps and tokens
    assert electra["kind"] == "electra" and electra["role"] == "encoder"
    assert (electra["layers"], electra["d_model"], electra["steps"], electra["tokens"]) == \
        (mlm["layers"], mlm["d_model"], mlm["steps"], mlm["tokens"])
    curve = two["downstream"]["curve"]   # keep_every 2 of 4 steps, 2 seeds
    assert curve == {"task": "ja_ner", "every": 2, "seeds": 2, "checkpoints": {"mlm": 2, "electra": 2}}
    assert "= 10 fine-tunes" in plan.text(two)


def test_plan_command_prints_and_refuses_unknown_names(capsys):
    # the command module directly: cli.main would import TensorFlow first (the run path needs it)
    assert experiment_cmd.main(["run", "growth", "--scale", "test", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "aki_two_stage" in out and "total for 1 seed(s)" in out
    # --arms plans what it would run: those arms and what they need, nothing else
    assert experiment_cmd.main(["run", "sequential", "--scale", "test", "--arms", "electra", "--plan"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()
            if line.split() and line.split()[0] in {"mlm", "electra", "s2s_scratch", "warm_frozen25"}]
    assert rows == ["mlm", "electra"]
    with pytest.raises(UserError, match="--arms: nope not in experiment 'growth'"):
        experiment_cmd.main(["run", "growth", "--scale", "test", "--arms", "nope", "--plan"])
    with pytest.raises(UserError, match="unknown experiment 'nope'"):
        experiment_cmd.main(["run", "nope", "--plan"])
    with pytest.raises(UserError, match="has no scale 'huge'"):
        experiment_cmd.main(["run", "growth", "--scale", "huge", "--plan"])
    with pytest.raises(UserError, match="no experiment.json"):
        experiment_cmd.main(["report", "/nonexistent-run-folder"])


def test_shards_split_the_seeds_and_bad_shards_are_refused(tmp_path):
    """--shard I/N: N processes on one --out run every seed once between them."""
    mine = [runner.Runner("growth", "test", 5, tmp_path, shard=(i, 2)).my_seeds for i in (0, 1)]
    assert mine == [[0, 2, 4], [1, 3]]
    assert runner.Runner("growth", "test", 3, tmp_path).my_seeds == [0, 1, 2]
    with pytest.raises(UserError, match="--shard 2/2 names no shard"):
        runner.Runner("growth", "test", 3, tmp_path, shard=(2, 2))
    with pytest.raises(UserError, match="is not I/N"):
        experiment_cmd.main(["run", "growth", "--scale", "test", "--shard", "1-3", "--out", str(tmp_path)])


@pytest.mark.parametrize("experiment", ["growth", "sequential"])
def test_paper_scale_gins_build_their_shapes_without_allocating(experiment):
    import jax

    from seqpt_jax import models
    for arm in spec.read_arms(experiment, "paper"):
        spec.parse(experiment, arm.name, "paper", "hw/cpu.gin", ["models.preset.vocab_size = %VOCAB_SIZE"],
                   spec.placeholder_bindings())
        model = spec.train_value("model")
        shapes = models.param_shapes(model)                  # jax.eval_shape: no arrays made
        assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(shapes))
        cfg = model.cfg
        if experiment == "growth" and arm.name not in ("source", "source_shallow"):
            assert (cfg.num_encoder_layers, cfg.d_model, cfg.num_heads, cfg.d_ff) == (12, 768, 12, 3072)
            assert models.count_params(shapes) == models.count_params(
                models.param_shapes(models.EncoderMLM(models.preset("bert-base"))))
        if experiment == "growth" and arm.name == "source":
            assert (cfg.num_encoder_layers, cfg.d_model) == (12, 512)   # bert2BERT's S(12,512)
        if experiment == "sequential" and arm.name == "electra":  # ELECTRA-Base's 1/3-wide generator
            assert shapes["generator"]["encoder"]["layers"]["attention"]["query"]["kernel"].shape == (12, 256, 4, 64)
            base = models.param_shapes(models.EncoderMLM(models.preset("mt5-base")))["encoder"]
            assert jax.tree.map(lambda x: x.shape, shapes["discriminator"]["encoder"]) == \
                jax.tree.map(lambda x: x.shape, base)                 # the mlm arm's encoder
        if experiment == "sequential" and arm.name == "s2s_scratch":
            base = models.preset("mt5-base")
            assert models.count_params(shapes) == models.count_params(
                models.param_shapes(models.EncoderDecoder(base)))


class Killer:
    """Sends SIGTERM to this process once, inside `arm`'s training, after `step` steps (the
    trainer stops at the next step with a checkpoint, as when a machine is preempted)."""

    def __init__(self, arm: str, step: int):
        self.arm, self.step, self.fired = arm, step, False

    def __call__(self, arm: str, seed: int):
        if arm != self.arm or self.fired:
            return None

        def on_step(step, state):
            if step == self.step:
                self.fired = True
                os.kill(os.getpid(), signal.SIGTERM)
        return on_step


@pytest.mark.slow  # ~45 s CPU: three real training runs + a resume (2.5 min wall at load 9)
def test_growth_runs_is_killed_resumes_and_reports(tmp_path, capsys):
    """The real trainer: source -> scratch -> FPI (SIGTERM at step 3: saved, not recorded as done,
    resumed), then the report."""
    corpus = str(make_corpus(tmp_path / "corpus"))
    out = tmp_path / "out"
    kill = Killer("fpi", 3)
    first = runner.Runner("growth", "test", 1, out, corpus=corpus, progress=False, on_step=kill, only=["fpi"])
    assert first.selected == ["source", "scratch", "fpi"]
    with pytest.raises(Stopped, match="stopped by SIGTERM after step") as stopped:
        first.run()
    assert kill.fired and EXIT_CODES[stopped.value.reason] == 143          # what `seqpt experiment run` exits with
    assert (out / "source/seed0/DONE").is_file() and (out / "scratch/seed0/DONE").is_file()
    assert not (out / "fpi/seed0/DONE").exists()                          # stopped early: not done
    assert (out / "fpi/seed0/train/checkpoints/4").is_dir()              # saved at the stop
    capsys.readouterr()

    lines: list = []
    again = runner.Runner("growth", "test", 1, out, corpus=corpus, progress=False, only=["fpi"], log=lines.append)
    result = again.run()
    assert result["ran"] == ["fpi/seed0"]                                 # finished arms skipped
    assert any("source/seed0: done already" in l for l in lines) and any("(resuming)" in l for l in lines)
    assert "resumed from step 4" in capsys.readouterr().out

    written = report.write(out)
    rep = json.loads(Path(written["json"]).read_text())
    fpi, source, scratch = rep["arms"]["fpi"], rep["arms"]["source"], rep["arms"]["scratch"]
    for arm in (fpi, source, scratch):
        assert arm["seeds"] == [0] and len(arm["final_val_loss"]) == 1
    assert rep["target"]["scratch"] == pytest.approx(scratch["final_val_loss"][0])
    assert len(fpi["flops_to_target"]) == 1 and fpi["reached"] in ("0/1", "1/1")
    assert fpi["source_flops"] == [pytest.approx(source["train_flops"][0])]
    assert fpi["curves"][0][0][0] == 0.0                                  # the step-0 evaluation
    # FPI preserves the source's function: it starts at the source's final loss (same held-out batches)
    assert fpi["init_val_loss"][0] == pytest.approx(source["final_val_loss"][0], abs=0.05)
    vocab_size = json.loads((out / "vocab" / "DONE").read_text())["vocab_size"]   # the trained one's
    rows = plan.plan("growth", "test", 1, vocab_size=vocab_size, only=["fpi"])["arms"]   # the arms run here
    planned = {r["arm"]: r["train_flops"] for r in rows}
    for name in ("source", "scratch", "fpi"):                              # --plan = the trainer's ledger
        assert rep["arms"][name]["train_flops"][0] == pytest.approx(planned[name], rel=1e-9)
    claims = {c["claim"].split(" (")[0]: c for c in rep["claims"]}
    assert claims["FPI starts at the source's loss"]["holds"] is True
    assert all(c["holds"] in (True, False, None) and c["evidence"] for c in rep["claims"])
    assert "arms not run" in claims["ordering AKI + two-stage >= AKI >= FPI > DirectCopy"]["evidence"]
    # one seed: every claim that needs a spread cannot tell (only FPI's step-0 check is a per-seed fact)
    spread = [c for c in rep["claims"] if not c["claim"].startswith("FPI starts")]
    assert spread and all(c["holds"] is None for c in spread), spread
    every = claims["every growth arm reaches the scratch target with fewer target FLOPs than scratch"]
    assert "fewer than 3 seeds" in every["evidence"]
    # the eval noise's per-batch losses are the trainer's last evaluation: a fresh one of the saved params equals them
    from seqpt_jax import params_io
    records = runner.load_records(out)["records"]
    for name in ("scratch", "fpi"):                                        # fpi: evaluated by the resumed process
        config = again._configure(again.arms[name], 0, out / name / "seed0" / "train")
        fresh = runner.evaluate_params(config, params_io.load(str(out / name / "seed0" / "train"))[2])
        assert records[name][0]["final_batch_losses"] == pytest.approx(fresh["batch_losses"], rel=1e-6)
        assert len(fresh["batch_losses"]) == config.evaluation.eval_batches
    # FPI's copied units are no longer copies after training (Net2Net noise): hidden and MLP
    trained = params_io.load(str(out / "fpi/seed0/train"))[2]
    for units in (trained["encoder"]["layers"]["mlp"]["wi"]["kernel"][0], trained["token_embedder"]["embedding"]):
        cols = np.asarray(units).reshape(-1, units.shape[-1]).T
        assert len(np.unique(cols, axis=0)) == len(cols)
    assert len(fpi["final_batch_losses"][0]) == 2                     # per batch (EVAL_BATCHES): the eval noise
    assert Path(written["plot"]).stat().st_size > 5000
    assert "## Claims" in Path(written["markdown"]).read_text()

    with pytest.raises(UserError, match="another --out"):
        runner.Runner("growth", "demo" if "demo" in spec.scales("growth") else "cpu", 1, out, corpus=corpus).run()


@pytest.mark.slow  # ~70-100 s CPU: five real training runs, an extraction and eight fine-tunings
def test_sequential_warm_start_extraction_downstream_rows_and_masked_encoder_curve(tmp_path):
    """One sequential run at --scale test: the warm start, the extraction and the downstream rows;
    and s2s_masked's loss is decoder CE + the encoder MLM term from its first point on: its random
    init starts well above s2s_scratch's (same shapes but the head, same batches)."""
    corpus = make_corpus(tmp_path / "corpus")
    block = "Open\tO\nthe\tO\nFile\tB-UI\nmenu\tI-UI\n.\tO\n\nPress\tO\nEnter\tB-UI\n\n"
    for split in ("train", "validation", "test"):   # the fixture tags only de/ru; add English
        (corpus / "tasks" / "ui_tagging" / f"en.{split}.conll").write_text(block * 6, "utf-8")
    out = tmp_path / "out"
    run = runner.Runner("sequential", "test", 1, out, corpus=str(corpus), progress=False,
                        only=["warm_frozen25", "enc_scratch", "s2s_masked"])
    assert run.selected == ["mlm", "s2s_masked", "s2s_scratch", "warm_frozen25", "enc_scratch"]
    run.run()
    rep = json.loads(Path(report.write(out)["json"]).read_text())
    arms = rep["arms"]
    warm, enc = arms["warm_frozen25"], arms["enc_scratch"]
    assert warm["source_flops"] == [pytest.approx(arms["mlm"]["train_flops"][0])]
    assert "saving_both" in warm and warm["compare"] == "s2s_scratch"
    assert enc["train_flops"] == [0.0] and enc["curves"][0][0][0] == 0.0 and enc["compare"] == "mlm"
    assert enc["source_flops"] == [pytest.approx(arms["s2s_scratch"]["train_flops"][0])]
    vocab_size = json.loads((out / "vocab" / "DONE").read_text())["vocab_size"]
    rows = plan.plan("sequential", "test", 1, vocab_size=vocab_size, only=run.selected)["arms"]   # the arms run
    planned = {r["arm"]: r["train_flops"] for r in rows}
    for name in ("mlm", "s2s_scratch", "s2s_masked", "warm_frozen25", "enc_scratch"):   # --plan = the trainer's ledger
        assert arms[name]["train_flops"][0] == pytest.approx(planned[name], rel=1e-9)
    # s2s_masked: decoder CE + the encoder MLM term from step 0 on (the ledger's count of it: above)
    assert arms["s2s_masked"]["init_val_loss"][0] > arms["s2s_scratch"]["init_val_loss"][0] + 1.0
    assert set(rep["downstream"]) == {"section", "ui_tagging", "ja_ner", "synopsis"}
    for name in ("section", "ui_tagging", "ja_ner"):
        task = rep["downstream"][name]
        assert set(task) == {"mlm", "enc_scratch", "random_init", "majority_baseline"}
        assert all(0.0 <= row["en"][0] <= 1.0 for row in task.values())
    ner = rep["downstream"]["ja_ner"]                                      # Japanese only: no zero-shot
    assert all(row["lang"] == "ja" and row["zero_shot"] == [None] for row in ner.values())
    assert ner["majority_baseline"]["en"] == [0.0] and 0.5 < ner["majority_baseline"]["token_accuracy"][0] < 1.0
    for name in ("mlm", "enc_scratch", "random_init", "s2s_scratch", "random_init_s2s"):  # one program each
        together = json.loads((out / "downstream" / name / "seed0" / "DONE").read_text())["together"]
        assert together["stages"] == 3 and together["programs"] == 1, name  # encoders alike, seq2seq alike
    gen = rep["downstream"]["synopsis"]                                   # seq2seq arms + their random init
    assert set(gen) == {"s2s_scratch", "warm_frozen25", "random_init_s2s"}
    assert all(row["metric"] == "chrf" and 0.0 <= row["en"][0] <= 100.0 for row in gen.values())
    claims = {c["claim"][:3]: c for c in rep["claims"]}
    assert claims["(a)"]["holds"] is None and "fewer than 3 seeds" in claims["(a)"]["evidence"]   # one seed
    assert claims["(b)"]["holds"] is None                                  # no variant was run
    assert "s2s_scratch" in claims["(c'"]["evidence"] and "random init" in claims["(c'"]["evidence"]
    assert any(c["claim"].startswith("pre-training beats a random init") for c in rep["claims"])
    # The downstream curve: mlm's kept checkpoints (keep_every = 2 of 4 steps) on ja_ner, after a random init.
    curve = rep["downstream_curve"]["arms"]["mlm"]
    assert curve["steps"] == [[2, 4]] and curve["curves"][0][0][0] == 0.0
    assert curve["curves"][0][-1][0] == pytest.approx(arms["mlm"]["train_flops"][0])
    assert curve["final_score"][0] == pytest.approx(ner["mlm"]["en"][0])  # the same checkpoint, fine-tuned alike
    assert (out / "downstream_vs_flops.png").is_file()


def test_arms_isolate_one_recipe_each():
    """Freezing is the only difference between the claims' warm arms and scratch (encoder LR x1.0);
    the multiplier is its own ablation on '^encoder/' alone; continued MLM warms up briefly; the cpu
    scale evaluates >= 64 held-out batches and trains the growth arms at bert2BERT's dropout 0.1."""
    for name in ("warm_frozen0", "warm_frozen25", "warm_frozen50", "warm_frozen100"):
        spec.read_arm("sequential", name, "cpu")
        assert set(spec.train_value("optimizer").lr_multipliers.values()) == {1.0}, name
    spec.read_arm("sequential", "warm_frozen25_encoder_lr", "cpu")
    assert spec.train_value("optimizer").lr_multipliers == {"^encoder/": 0.1}
    for scale in ("cpu", "demo"):
        spec.read_arm("sequential", "enc_continued", scale)
        assert spec.train_value("optimizer").warmup_steps <= spec.train_value("steps") // 5
    for experiment in ("growth", "sequential"):
        spec.read_arm(experiment, "scratch" if experiment == "growth" else "s2s_scratch", "cpu")
        assert spec.train_value("eval_batches") >= 64
    import gin
    for name in ("scratch", "fpi"):
        spec.read_arm("growth", name, "cpu")
        assert gin.query_parameter("models.preset.dropout_rate").scoped_configurable_fn() == 0.1
