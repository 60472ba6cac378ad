"""The demo's summary of both experiments (experiment reports in, one page and one plot out):

    summary.md      per experiment: each claim with what this run shows (holds / does not hold /
                    cannot tell) and its evidence (experiment/claims.py), the targets, every arm
                    beside its scratch baseline (FLOPs, loss, savings), the downstream rows
    summary.json    {"scale", "plot", "experiments": {NAME: {"report", "claims", "target"}}}
    loss_vs_flops.png   every arm of both experiments: validation loss against its own FLOPs
                    and against its FLOPs plus its source's (experiment.report.plot)
"""

from __future__ import annotations

from pathlib import Path

from seqpt_jax.demo.stages import write_json_atomic
from seqpt_jax.experiment import report as experiment_report

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
