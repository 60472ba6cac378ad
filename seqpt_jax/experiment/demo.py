"""`seqpt demo`: the demo is a scale of the experiments and a summary of them. Both reproduction
experiments (`growth`: bert2BERT; `sequential`: Soltan et al.) at `--scale demo`, one seed, in
one folder, resumable, with one summary and one plot:

    from seqpt_jax.experiment import demo
    result = demo.run("demo-out")   # result["text"]: per claim, what this run shows

    OUT/corpus/DONE        where the corpus is (found, or a demo-sized build: subsets.find_corpus)
    OUT/growth/            `seqpt experiment run growth --scale demo` (its vocab/ is the demo's)
    OUT/sequential/        `seqpt experiment run sequential --scale demo`, same corpus and vocabulary
    OUT/<experiment>/report.{md,json}, loss_vs_flops.png    each experiment's own report
    OUT/summary.md      per experiment: each claim with what this run shows (holds / does not hold /
                        cannot tell) and its evidence (experiment/claims.py), the targets, every arm
                        beside its scratch baseline (FLOPs, loss, savings), the downstream rows
    OUT/summary.json    {"scale", "plot", "experiments": {NAME: {"report", "claims", "target"}}}
    OUT/loss_vs_flops.png   every arm of both experiments: validation loss against its own FLOPs
                        and against its FLOPs plus its source's (experiment.report.plot)

Each arm is a resumable stage of `experiment.runner` (DONE markers; a killed run resumes from
its checkpoint), so a rerun with the same OUT skips what has finished.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from seqpt_jax.experiment import report as experiment_report
from seqpt_jax.experiment.stages import write_json_atomic
from seqpt_jax.experiment.subsets import DEMO_LANGS  # noqa: F401 - the demo's languages, for `seqpt demo`

EXPERIMENTS = ("growth", "sequential")
SCALE = "demo"


def run(out: str | os.PathLike, corpus: str | None = None, log: Callable[[str], None] = print,
        progress: bool | None = None, scale: str = SCALE, arms: dict | None = None) -> dict:
    """Runs whatever is not done yet, writes every report; returns the summary's paths and text.
    `arms`: {experiment: [arm, ...]} runs those arms and what they need (the tests' subset)."""
    from seqpt_jax.experiment import runner
    from seqpt_jax.experiment.stages import StageRunner
    from seqpt_jax.experiment.subsets import Plan, find_corpus
    out = Path(out).expanduser()
    stages = StageRunner(out, log=log)
    src = stages.run("corpus", lambda w: {"corpus": str(find_corpus(corpus, Plan(), log, progress))},
                     "find or build the embedded corpus")["corpus"]
    ran, vocab, reports = list(stages.ran), None, {}
    for name in EXPERIMENTS:
        log(f"== experiment {name} at --scale {scale}, 1 seed, in {out / name}")
        exp = runner.Runner(name, scale, 1, out / name, corpus=src, vocab=vocab, log=log, progress=progress,
                            only=(arms or {}).get(name))
        ran += [f"{name}/{stage}" for stage in exp.run()["ran"]]
        vocab = vocab or exp.vocab_path   # one vocabulary: the demo scales train the same VOCAB_PIECES
        reports[name] = experiment_report.write(out / name)
    return {**write(out, reports, scale), "ran": ran}


# ----- the summary: experiment reports in, one page and one plot out ----------------------------

TITLES = {"growth": "growth (bert2BERT: a smaller trained model grown into the target)",
          "sequential": "sequential (Soltan et al.: an MLM encoder, then a seq2seq model warm-started from it)"}


def markdown(reps: dict[str, dict], scale: str) -> str:
    seeds = max((rep.get("seeds") or 1 for rep in reps.values()), default=1)
    lines = [f"# seqpt demo: {' and '.join(reps)} at --scale {scale}, {seeds} seed(s)", "",
             "Every recipe arm is measured against a scratch baseline of the same shape trained in the same "
             "run: target = the baseline's final validation loss; saving = 1 - the arm's FLOPs to reach it / "
             "the baseline's FLOPs, without and with the FLOPs of the model it starts from "
             "(seqpt_jax/experiment/savings.py).", "",
             *([f"With {seeds} seed(s) there is no way to tell a real difference from luck, so every claim that "
                "compares arms says \"cannot tell\" below: the numbers show what this one run did, not what is "
                "true. Deciding a claim takes at least 3 seeds (`seqpt experiment run NAME --scale cpu --seeds 3`).",
                ""] if seeds < 3 else []),
             "Plot: loss_vs_flops.png (left: each arm's own training FLOPs; right: plus its source's).", ""]
    for name, rep in reps.items():
        lines += [f"## {TITLES.get(name, name)}", "", f"Full report: {name}/report.md", "",
                  "What this run shows, per claim:", "", *experiment_report.claim_lines(rep), "",
                  *experiment_report.target_lines(rep), "", *experiment_report.arm_lines(rep),
                  *experiment_report.downstream_lines(rep, "###"), ""]
    return "\n".join(lines)


def write(out: str | Path, written: dict[str, dict], scale: str) -> dict:
    """summary.md, summary.json and loss_vs_flops.png under `out`, from the experiments'
    `experiment.report.write` results; returns their paths and the markdown text."""
    out = Path(out)
    reps = {name: w["report"] for name, w in written.items()}
    text = markdown(reps, scale)
    tmp = out / ".summary.md.tmp"
    tmp.write_text(text, "utf-8")
    tmp.replace(out / "summary.md")
    png = experiment_report.plot(list(reps.values()), out / "loss_vs_flops.png",
                                 f"seqpt demo (--scale {scale}): every arm against its scratch baseline")
    write_json_atomic(out / "summary.json", {
        "scale": scale, "plot": png.name,
        "experiments": {name: {"report": str(Path(name) / "report.json"), "claims": rep["claims"],
                               "target": rep["target"]} for name, rep in reps.items()}})
    return {"markdown": str(out / "summary.md"), "json": str(out / "summary.json"), "plot": str(png),
            "text": text}
