"""seqpt demo: resumable stages, the data slice, the summary table and plot, the recipe's
chaining (with a fake trainer), and one tiny end-to-end run with the real trainer."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from data_fixtures import make_corpus
from seqpt_jax.demo import recipe, report
from seqpt_jax.demo.plan import DEFAULT_MINUTES, Plan
from seqpt_jax.demo.stages import MARKER, StageRunner
from seqpt_jax.errors import UserError

TINY = dict(num_encoder_layers=1, num_decoder_layers=1, d_model=16, num_heads=2, head_dim=8, d_ff=32)
BIG = dict(num_encoder_layers=2, num_decoder_layers=2, d_model=32, num_heads=4, head_dim=8, d_ff=64)


def _counting(calls: list, name: str, value):
    def fn(work: Path) -> dict:
        calls.append(name)
        (work / "out.txt").write_text(str(value))
        return {"value": value}
    return fn


def test_runner_skips_done_stages_and_reruns_unmarked(tmp_path):
    calls: list = []
    first = StageRunner(tmp_path, log=lambda s: None)
    for i, name in enumerate(("a", "b", "c")):
        assert first.run(name, _counting(calls, name, i))["value"] == i
    assert calls == ["a", "b", "c"] and first.ran == ["a", "b", "c"]
    marker = json.loads((tmp_path / "b" / MARKER).read_text())
    assert marker["value"] == 1 and marker["wall_s"] >= 0 and marker["cpu_s"] >= 0

    (tmp_path / "b" / MARKER).unlink()          # as if b had been killed before finishing
    again = StageRunner(tmp_path, log=lambda s: None)
    results = [again.run(name, _counting(calls, name, 10 + i)) for i, name in enumerate(("a", "b", "c"))]
    assert calls == ["a", "b", "c", "b"] and again.ran == ["b"]
    assert [r["value"] for r in results] == [0, 11, 2]  # a and c come from their markers


def test_failed_stage_leaves_no_marker_and_keeps_its_work(tmp_path):
    runner = StageRunner(tmp_path, log=lambda s: None)

    def dies(work: Path) -> dict:
        (work / "checkpoint").write_text("step 5")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run("train", dies)
    assert not (tmp_path / "train" / MARKER).exists()
    lines: list = []
    resumed = StageRunner(tmp_path, log=lines.append)
    result = resumed.run("train", lambda w: {"seen": (w / "checkpoint").read_text()})
    assert result["seen"] == "step 5" and "(resuming)" in lines[0]


def test_plan_scales_budgets_with_minutes():
    assert Plan().scaled(DEFAULT_MINUTES) == Plan()
    small, big = Plan().scaled(1.5), Plan().scaled(30)
    assert small.mlm_steps == 20 and big.mlm_steps == 400
    tiny = Plan().scaled(0.01)
    for p in (small, big, tiny):
        assert 0 < p.grow_stage_steps < p.grow_steps and 0 < p.warm_frozen_steps < p.warm_steps
        assert p.eval_every <= p.mlm_steps and p.scratch_steps == p.warm_steps


def _fixture_corpus(root: Path) -> Path:
    corpus = make_corpus(root)
    block = "Open\tO\nthe\tO\nFile\tB-UI\nmenu\tI-UI\n.\tO\n\nPress\tO\nEnter\tB-UI\n\n"
    for split in ("train", "validation", "test"):   # the fixture tags only de/ru; add English
        (corpus / "tasks" / "ui_tagging" / f"en.{split}.conll").write_text(block * 6, "utf-8")
    return corpus


def test_slice_keeps_english_training_and_caps_everything(tmp_path):
    corpus = _fixture_corpus(tmp_path / "corpus")
    plan = dataclasses.replace(Plan(), langs=("en", "de", "ru", "xx"), train_mb=0.002, section_labels=2,
                               section_train=3, tagging_train=4, test_per_lang=2)
    out = recipe.make_slice(corpus, tmp_path / "slice", plan)
    root = Path(out["corpus"])
    assert out["langs"] == ["en", "de", "ru"]                     # xx has no text
    for lang in out["langs"]:
        size = (root / "text" / f"{lang}.train.jsonl").stat().st_size
        assert 0 < size < 2 * 2000 + 1000                          # ~train_mb, at least one document
    sections = sorted(p.name for p in (root / "tasks" / "section").iterdir())
    assert sections == ["de.test.jsonl", "en.test.jsonl", "en.train.jsonl", "en.validation.jsonl"]
    en = [json.loads(l) for l in (root / "tasks/section/en.train.jsonl").read_text().splitlines()]
    assert len(en) == 3 and len({r["label"] for r in en}) <= 2
    de_tags = (root / "tasks/ui_tagging/de.test.conll").read_text()
    assert "# id" not in de_tags and de_tags.count("\n\n") == 2   # comments dropped, 2 sentences
    assert not (root / "tasks/ui_tagging/de.train.conll").exists()  # zero-shot: English trains only
    stats = json.loads((root / "stats.json").read_text())
    assert stats["de"]["train"]["documents"] >= 1
    # Deterministic: the same slice twice.
    again = recipe.make_slice(corpus, tmp_path / "slice2", plan)
    assert (Path(again["corpus"]) / "text/en.train.jsonl").read_text() == (root / "text/en.train.jsonl").read_text()


def _fake_results():
    runs = [
        {"model": "mlm_small", "kind": "encoder_mlm", "objective": "mlm", "params": 1.5e6, "parent": None,
         "flops": 1e12, "flops_total": 1e12, "val_loss": 6.0, "curve": [[5e11, 7.0], [1e12, 6.0]]},
        {"model": "mlm_grown", "kind": "encoder_mlm", "objective": "mlm", "params": 5e6, "parent": "mlm_small",
         "flops": 3e12, "flops_total": 4e12, "val_loss": 5.5, "curve": [[2.5e12, 5.8], [4e12, 5.5]]},
        {"model": "s2s_scratch", "kind": "encoder_decoder", "objective": "span_corruption", "params": 2e6,
         "parent": None, "flops": 2e12, "flops_total": 2e12, "val_loss": 4.0, "curve": [[1e12, 5.0], [2e12, 4.0]]},
        {"model": "extracted", "kind": "encoder_mlm", "objective": "mlm", "params": 1.5e6, "parent": "s2s_scratch",
         "flops": 0.0, "flops_total": 2e12, "val_loss": None, "curve": [], "note": "encoder of s2s_scratch"},
    ]
    downstream = {
        "mlm_small": {"tasks": {"section": {"metric": "accuracy", "scores": {"en": 0.8, "de": 0.5, "ru": 0.3}},
                                "ui_tagging": {"metric": "f1", "scores": {"en": 0.6, "de": 0.4}}}},
        "mlm_grown": {"tasks": {"section": {"metric": "accuracy", "scores": {"en": 0.9, "de": 0.6, "ru": 0.4}},
                                "ui_tagging": {"metric": "f1", "scores": {"en": 0.7, "de": 0.2},
                                               "majority": {"label": "O", "scores": {"en": 0.0, "de": 0.0}}}}},
    }
    return runs, downstream


def test_summary_table_json_and_plot_from_fake_results(tmp_path):
    runs, downstream = _fake_results()
    out = report.write(tmp_path, runs, downstream)
    table = {r["model"]: r for r in report.load(out["json"])["models"]}
    assert table["mlm_grown"]["section/accuracy/zero-shot"] == pytest.approx(0.5)
    assert table["mlm_small"]["section/accuracy/en"] == pytest.approx(0.8)
    assert table["mlm_small"]["section/langs"] == 2
    assert "section/accuracy/en" not in table["s2s_scratch"]
    text = Path(out["markdown"]).read_text()
    assert text == out["text"]
    assert "| mlm_grown | mlm_small | 5.00M | 4.00e+12 | 5.500 (mlm) | 0.900 | 0.500 | 0.700 | 0.200 |" in text
    assert "| extracted | s2s_scratch | 1.50M | 2.00e+12 | — |" in text
    assert "| model | en | de | ru |" in text                      # per-language table, en first
    assert "| majority baseline (O) | 0.000 | 0.000 |" in text      # under the ui_tagging table
    png = Path(out["plot"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not list(tmp_path.glob(".*tmp*"))                        # temporaries renamed away


class FakeBackend:
    """Writes real (tiny, untrained) checkpoints so the recipe's mappings run for real; the
    figures are made up. `die_at` raises inside that stage once, like a kill."""

    def __init__(self, die_at: str | None = None):
        self.calls: list = []
        self.die_at = die_at

    def _maybe_die(self, name):
        self.calls.append(name)
        if name == self.die_at:
            self.die_at = None
            raise KeyboardInterrupt

    def vocab(self, corpus, langs, plan, work):
        self._maybe_die("vocab")
        return {"path": str(work / "spm.model"), "vocab_size": 64}

    def pretrain(self, run, work, data, voc):
        import jax

        from seqpt_jax import models, params_io
        self._maybe_die(run.name)
        if run.init:  # starts from the mapped checkpoint: shapes must fit the run's model
            _, cfg, params = params_io.load(run.init)
            assert cfg == run.cfg
        else:
            params = models.init(models.build(run.kind, run.cfg), jax.random.key(0))
        path = params_io.save_params(str(work / "params"), run.kind, run.cfg, params, overwrite=True)
        flops = {"mlm_small": 10.0, "mlm_grown": 30.0}.get(run.name, 20.0)
        return {"params": models.count_params(params), "checkpoint": path, "flops": flops,
                "val_loss": 1.0, "curve": [[flops / 2, 2.0], [flops, 1.0]]}

    def finetune(self, checkpoint, corpus, voc, plan, work):
        self._maybe_die("finetune:" + Path(checkpoint).parent.name)
        return {"tasks": {"section": {"metric": "accuracy", "scores": {"en": 0.5, "de": 0.25}}}}


def test_recipe_chains_compute_and_resumes_after_a_kill(tmp_path):
    corpus = _fixture_corpus(tmp_path / "corpus")
    plan = dataclasses.replace(Plan().scaled(0.1), langs=("en", "de"), small=TINY, large=BIG, length=16,
                               finetune_length=16)
    backend = FakeBackend(die_at="s2s_warm")
    demo = recipe.Demo(tmp_path / "out", plan, backend, corpus=str(corpus), log=lambda s: None)
    with pytest.raises(KeyboardInterrupt):
        demo.run()
    assert backend.calls == ["vocab", "mlm_small", "mlm_grown", "s2s_warm"]

    backend.calls.clear()
    result = recipe.Demo(tmp_path / "out", plan, backend, corpus=str(corpus), log=lambda s: None).run()
    assert backend.calls == ["s2s_warm", "s2s_scratch", "finetune:mlm_small", "finetune:mlm_grown",
                             "finetune:extracted"]
    assert result["ran"] == ["s2s_warm", "s2s_scratch", "extracted", "finetune_mlm_small",
                             "finetune_mlm_grown", "finetune_extracted"]
    stages = result["stages"]
    assert stages["mlm_grown"]["flops_total"] == 40.0                   # its own 30 + mlm_small's 10
    assert stages["mlm_grown"]["curve"] == [[25.0, 2.0], [40.0, 1.0]]   # starts where its parent ended
    assert stages["s2s_warm"]["flops_total"] == 30.0 and stages["s2s_scratch"]["flops_total"] == 20.0
    assert stages["extracted"]["flops_total"] == 20.0 and stages["extracted"]["parent"] == "s2s_scratch"
    assert stages["mlm_grown"]["params"] > stages["mlm_small"]["params"]
    assert Path(result["plot"]).is_file() and "| mlm_grown | mlm_small |" in result["text"]

    backend.calls.clear()                                               # everything done: nothing runs
    again = recipe.Demo(tmp_path / "out", plan, backend, corpus=str(corpus), log=lambda s: None).run()
    assert backend.calls == [] and again["ran"] == []
    other = dataclasses.replace(plan, mlm_steps=plan.mlm_steps + 1)     # another --minutes: refused
    with pytest.raises(UserError, match="another plan"):
        recipe.Demo(tmp_path / "out", other, backend, corpus=str(corpus), log=lambda s: None).run()


@pytest.mark.slow
def test_demo_end_to_end_on_fixture_corpus(tmp_path):
    """The real trainer, mappings and fine-tuning, every stage, at toy sizes."""
    from seqpt_jax import demo
    corpus = _fixture_corpus(tmp_path / "corpus")
    plan = dataclasses.replace(Plan().scaled(0.1), langs=("en", "de", "ru", "zh"), vocab_size=700, small=TINY,
                               large=BIG, length=32, batch_size=8, finetune_length=32, finetune_epochs=1.0)
    result = demo.run(tmp_path / "out", corpus=str(corpus), plan=plan, log=lambda s: None, progress=False)
    table = {r["model"]: r for r in report.load(result["json"])["models"]}
    assert set(table) == {"mlm_small", "mlm_grown", "s2s_warm", "s2s_scratch", "extracted"}
    for name in ("mlm_small", "mlm_grown", "s2s_warm", "s2s_scratch"):
        run = result["stages"][name]
        assert run["val_loss"] is not None and run["flops"] > 0 and len(run["curve"]) >= 2
    assert table["mlm_grown"]["flops_total"] > table["mlm_small"]["flops_total"]
    assert result["stages"]["mlm_grown"]["phases"] == ["stage1/sub1", "stage1/sub2", "full"]  # sampled sub-models
    assert result["stages"]["s2s_warm"]["phases"] == ["frozen", "full"]
    for name in recipe.ENCODERS:
        assert 0.0 <= table[name]["section/accuracy/en"] <= 1.0
        assert table[name]["ui_tagging/f1/zero-shot"] is not None
    assert Path(result["plot"]).stat().st_size > 10_000
