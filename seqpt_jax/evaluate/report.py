"""Writing results: results.json, a markdown table per language, and a PNG plot of the scores."""

from __future__ import annotations

import json
import os

_COLUMNS = {
    "classification": ("accuracy", "macro_f1"),
    "tagging": ("f1", "precision", "recall", "token_accuracy"),
    "generation": ("bleu", "chrf", "exact_match"),
}


def _values(m: dict, cols) -> str:
    """One cell per column, so every row has the header's columns: percent for the 0..1
    scores, plain for BLEU/chrF, "—" for a metric m lacks (plain tags have no span scores)."""
    pct = ("accuracy", "macro_f1", "f1", "precision", "recall", "token_accuracy", "exact_match")
    return " | ".join("—" if c not in m else f"{100 * m[c]:.1f}" if c in pct else f"{m[c]:.1f}" for c in cols)


def markdown(results: dict) -> str:
    """One row per (run, test language): the task's metrics, example and truncation counts."""
    cols = _COLUMNS[results["kind"]]
    lines = [f"## {results['task']} ({results['kind']})", "",
             "| trained on | mode | test language | " + " | ".join(cols) + " | n | truncated |",
             "|---|---|---|" + "---|" * len(cols) + "---|---|"]
    for run in results["runs"]:
        for lang, m in sorted(run["test"].items()):
            lines.append(f"| {run['train_lang']} | {run['mode']} | {lang} | {_values(m, cols)} | {m['n']} | "
                         f"{m['truncated']} |")
            if m.get("majority"):  # protocol.majority: the most frequent training label everywhere
                lines.append(f"| {run['train_lang']} | majority {m['majority']['label']!r} | {lang} | "
                             f"{_values(m['majority'], cols)} | {m['n']} | — |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: str) -> None:
    """Bar chart of the primary metric per test language, one bar group per run mode."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = results["primary_metric"]
    langs = sorted({l for r in results["runs"] for l in r["test"]})
    modes = sorted({r["mode"] for r in results["runs"]})
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(langs) + 2), 3.2))
    width = 0.8 / len(modes)
    for j, mode in enumerate(modes):
        xs, ys = [], []
        for r in results["runs"]:
            if r["mode"] == mode:
                for lang, m in r["test"].items():
                    xs.append(langs.index(lang) + j * width)
                    ys.append(m[metric])
        ax.bar(xs, ys, width=width, label=mode)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(langs))], langs)
    ax.set_ylabel(metric)
    ax.set_title(f"{results['task']}: {metric} per language")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(results: dict, out_dir: str) -> dict:
    """Writes results.json, results.md and scores.png under out_dir; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, name) for name in ("results.json", "results.md", "scores.png")}
    with open(paths["results.json"], "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, ensure_ascii=False)
    with open(paths["results.md"], "w", encoding="utf-8") as f:
        f.write(markdown(results))
    plot(results, paths["scores.png"])
    return paths
