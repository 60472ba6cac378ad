"""seqpt demo: resumable stages, the data slice, the summary of both experiments (per claim,
one plot), `--plan`, and one end-to-end run of both experiments at --scale test (arm subsets)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from data_fixtures import make_corpus
from seqpt_jax.commands import demo as demo_cmd
from seqpt_jax.experiment import demo as report, subsets as recipe
from seqpt_jax.experiment.stages import MARKER, StageRunner
from seqpt_jax.experiment.subsets import Plan
from seqpt_jax.experiment import report as experiment_report


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


def test_a_stage_another_process_is_running_is_waited_for_not_run_twice(tmp_path):
    """Shards of one experiment (`--shard`) share its stages: the second runner to reach a stage
    the first is running waits on its lock, then reads its marker (flock excludes separate open
    files even within one process, so threads stand in for processes)."""
    import threading
    started, release, calls, lines = threading.Event(), threading.Event(), [], []

    def slow(work: Path) -> dict:
        calls.append("first")
        started.set()
        release.wait(30)
        return {"by": "first"}

    first = threading.Thread(target=lambda: StageRunner(tmp_path, log=lambda s: None).run("data", slow))
    first.start()
    assert started.wait(30)
    second: dict = {}
    waiter = threading.Thread(target=lambda: second.update(StageRunner(tmp_path, log=lines.append).run(
        "data", lambda w: calls.append("second") or {"by": "second"})))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive() and any("waiting" in line for line in lines)  # blocked, not running it
    release.set()
    first.join(30), waiter.join(30)
    assert calls == ["first"] and second["by"] == "first" and "done by another process" in lines[-1]


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


def _fake_report(experiment: str, scratch: str, recipe_arm: str, claims: list) -> dict:
    curve = lambda *pts: [[float(f), float(l)] for f, l in pts]  # noqa: E731
    return {"experiment": experiment, "scale": "demo", "seeds": 1, "target": {scratch: 5.0}, "downstream": {},
            "savings_curve": {}, "claims": claims, "arms": {
                scratch: {"role": "scratch", "seeds": [0], "params": 1e6, "train_flops": [4e12],
                          "final_val_loss": [5.0], "source_flops": [0.0], "curves": [curve((0, 8), (4e12, 5))]},
                recipe_arm: {"role": "recipe", "compare": scratch, "seeds": [0], "params": 1e6,
                             "train_flops": [4e12], "final_val_loss": [4.8], "source_flops": [1e12],
                             "reached": "1/1", "saving": 0.5, "saving_ci": [0.5, 0.5],
                             "saving_with_source": 0.25, "saving_with_source_ci": [0.25, 0.25],
                             "curves": [curve((0, 6), (2e12, 5), (4e12, 4.8))]}}}


def test_summary_states_every_claim_and_plots_both_experiments(tmp_path):
    growth = _fake_report("growth", "scratch", "aki", [
        {"claim": "FPI starts at the source's loss", "holds": True, "evidence": "seed 0: source 5.1, FPI 5.1"},
        {"claim": "ordering", "holds": False, "evidence": "aki: 50.0% [50.0%, 50.0%]"}])
    growth["arms"]["source"] = {"role": "source", "seeds": [0], "params": 5e5, "train_flops": [1e12],
                                "final_val_loss": [6.0], "source_flops": [0.0], "curves": [[[0.0, 8.0], [1e12, 6.0]]]}
    assert experiment_report._plot_rows(growth) == [("scratch", ["scratch", "aki"]), (None, ["source"])]
    sequential = _fake_report("sequential", "s2s_scratch", "warm_frozen25", [
        {"claim": "(a) labeling gap", "holds": None, "evidence": "null: downstream not run"}])
    out = report.write(tmp_path, {"growth": {"report": growth}, "sequential": {"report": sequential}}, "demo")
    text = Path(out["markdown"]).read_text()
    assert text == out["text"]
    assert "- **FPI starts at the source's loss**: holds. seed 0: source 5.1, FPI 5.1" in text
    assert "- **ordering**: does not hold. aki: 50.0%" in text
    assert "- **(a) labeling gap**: cannot tell. null: downstream not run" in text
    assert "With 1 seed(s) there is no way to tell a real difference from luck" in text   # said in plain words
    assert 'says "cannot tell" below' in text and "at least 3 seeds" in text
    assert text.index("## growth") < text.index("| aki | recipe |") < text.index("## sequential")
    assert "| warm_frozen25 | recipe | 1 | 1.00M | 4e+12 | 4.800 | 1/1 | 50.0% [50.0%, 50.0%] | 25.0%" in text
    summary = json.loads(Path(out["json"]).read_text())
    assert [c["holds"] for c in summary["experiments"]["growth"]["claims"]] == [True, False]
    assert summary["experiments"]["sequential"]["target"] == {"s2s_scratch": 5.0}
    png = Path(out["plot"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not list(tmp_path.glob(".*tmp*"))                        # temporaries renamed away


def test_plan_prints_both_experiments_at_demo_scale(capsys):
    assert demo_cmd.main(["--plan"]) == 0
    out = capsys.readouterr().out
    assert "experiment growth at --scale demo, 1 seed(s)" in out and "aki_two_stage" in out
    assert "experiment sequential at --scale demo, 1 seed(s)" in out and "warm_frozen25" in out
    assert "both experiments:" in out


@pytest.mark.slow  # ~40 s CPU: four tiny training runs, one vocabulary, the reports
def test_demo_runs_both_experiments_into_one_folder_and_resumes(tmp_path):
    from seqpt_jax.experiment import demo
    corpus = _fixture_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    subset = {"growth": ["fpi"], "sequential": ["s2s_scratch"]}
    result = demo.run(out, corpus=str(corpus), log=lambda s: None, progress=False, scale="test", arms=subset)
    assert result["ran"] == ["corpus", "growth/vocab", "growth/source/seed0", "growth/scratch/seed0",
                             "growth/fpi/seed0", "sequential/s2s_scratch/seed0", "sequential/downstream/generation_data",
                             "sequential/downstream/s2s_scratch/seed0", "sequential/downstream/random_init_s2s/seed0"]
    assert not (out / "sequential" / "vocab").exists()                # one vocabulary for both
    for name in ("growth", "sequential"):
        assert (out / name / "report.md").is_file() and (out / name / "loss_vs_flops.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    claims = {c["claim"].split(" (")[0]: c for c in summary["experiments"]["growth"]["claims"]}
    assert claims["FPI starts at the source's loss"]["holds"] is True  # FPI preserves the source's function
    text = result["text"]
    for name in ("growth", "sequential"):
        for c in summary["experiments"][name]["claims"]:
            assert f"- **{c['claim']}**: " in text and c["evidence"] in text
    assert "| fpi | recipe | 1 |" in text and "| s2s_scratch | scratch | 1 |" in text
    assert (out / "loss_vs_flops.png").stat().st_size > 10_000
    again = demo.run(out, corpus=str(corpus), log=lambda s: None, progress=False, scale="test", arms=subset)
    assert again["ran"] == [] and again["text"] == text               # everything done: nothing reruns
