"""The demo's summary: a markdown + JSON table of every model and a loss-versus-FLOPs plot.

Inputs are the stage results (plain dicts, see recipe.py):
  pre-training run: {"model", "kind", "objective", "params", "parent", "flops", "flops_total",
                     "val_loss", "curve": [[cumulative FLOPs, validation loss], ...]}
  downstream:       {"model": name, "tasks": {task: {"metric": m, "scores": {lang: value},
                                                         "majority": {"label", "scores": {lang: value}}}}}
"""

from __future__ import annotations

import json
from pathlib import Path

from seqpt_jax.demo.stages import save_figure_atomic, write_json_atomic


def _fmt_flops(x) -> str:
    return "—" if x is None else f"{x:.2e}"


def _fmt(x, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def rows(runs: list[dict], downstream: dict[str, dict], source_lang: str = "en") -> list[dict]:
    """One row per model: its training compute and loss, and per task the score on the
    fine-tuning language and the mean zero-shot score over the other languages."""
    out = []
    for run in runs:
        row = {k: run.get(k) for k in ("model", "kind", "objective", "params", "parent",
                                        "flops", "flops_total", "val_loss", "note")}
        for task, res in downstream.get(run["model"], {}).get("tasks", {}).items():
            scores = res["scores"]
            others = {l: v for l, v in scores.items() if l != source_lang}
            row[f"{task}/{res['metric']}/{source_lang}"] = scores.get(source_lang)
            row[f"{task}/{res['metric']}/zero-shot"] = _mean(others.values())
            row[f"{task}/langs"] = len(others)
        out.append(row)
    return out


def markdown(table: list[dict], downstream: dict[str, dict]) -> str:
    """The summary table, then one per-language table per downstream task."""
    score_cols = sorted({k for r in table for k in r if k.count("/") == 2})
    head = ["model", "from", "params", "train FLOPs (cumulative)", "val loss (objective)", *score_cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        loss = f"{_fmt(r['val_loss'])} ({r['objective']})" if r.get("val_loss") is not None else "—"
        params = f"{r['params'] / 1e6:.2f}M" if r.get("params") else "—"
        cells = [r["model"], r.get("parent") or "scratch", params, _fmt_flops(r.get("flops_total")),
                 loss, *(_fmt(r.get(c)) for c in score_cols)]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {r['model']}: {r['note']}" for r in table if r.get("note")]
    out = "\n".join(lines + ([""] + notes if notes else [])) + "\n"
    tasks = sorted({t for d in downstream.values() for t in d.get("tasks", {})})
    for task in tasks:
        models = [m for m in downstream if task in downstream[m].get("tasks", {})]
        metric = downstream[models[0]]["tasks"][task]["metric"]
        langs = sorted({l for m in models for l in downstream[m]["tasks"][task]["scores"]},
                       key=lambda l: (l != "en", l))
        out += f"\n{task} ({metric}; fine-tuned on en, zero-shot elsewhere)\n\n"
        out += "| model | " + " | ".join(langs) + " |\n|" + "---|" * (len(langs) + 1) + "\n"
        for m in models:
            scores = downstream[m]["tasks"][task]["scores"]
            out += f"| {m} | " + " | ".join(_fmt(scores.get(l)) for l in langs) + " |\n"
        base = next((downstream[m]["tasks"][task]["majority"] for m in models
                     if downstream[m]["tasks"][task].get("majority")), None)
        if base:  # protocol.majority: the most frequent training label predicted everywhere
            out += (f"| majority baseline ({base['label']}) | "
                    + " | ".join(_fmt(base["scores"].get(l)) for l in langs) + " |\n")
    return out


def plot(runs: list[dict], path: Path) -> Path:
    """Validation loss against cumulative training FLOPs, one panel per objective family
    (MLM losses and seq2seq losses are not on the same scale)."""
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, list[dict]] = {}
    for run in runs:
        if run.get("curve"):
            panels.setdefault(run["objective"], []).append(run)
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(6 * max(len(panels), 1), 4.2), squeeze=False)
    for ax, (objective, group) in zip(axes[0], sorted(panels.items())):
        for run in group:
            x, y = zip(*run["curve"])
            ax.plot(x, y, marker="o", markersize=3, label=run["model"])
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labelled minor ticks overlap
        ax.set_xlabel("cumulative training FLOPs")
        ax.set_ylabel(f"validation loss ({objective})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("seqpt demo: loss vs compute (grown and warm-started runs start at their parent's FLOPs)",
                 fontsize=9)
    fig.tight_layout()
    return save_figure_atomic(fig, path, dpi=110)


def write(out: Path, runs: list[dict], downstream: dict[str, dict]) -> dict:
    """Writes summary.md, summary.json and loss_vs_flops.png under `out`; returns their paths
    and the markdown text."""
    out = Path(out)
    table = rows(runs, downstream)
    text = markdown(table, downstream)
    (out / ".summary.md.tmp").write_text(text, "utf-8")
    (out / ".summary.md.tmp").replace(out / "summary.md")
    write_json_atomic(out / "summary.json", {"models": table, "runs": runs, "downstream": downstream})
    png = plot(runs, out / "loss_vs_flops.png")
    return {"markdown": str(out / "summary.md"), "json": str(out / "summary.json"), "plot": str(png),
            "text": text}


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text("utf-8"))
