"""`seqpt experiment report DIR`: report.json, report.md and plots from the arms' records.

report.json:
  {"experiment", "scale", "seeds",
   "arms": {NAME: {"role", "seeds": [...], "final_val_loss": [...], "init_val_loss": [...],
                   "train_flops": [...], "source_flops": [...], "flops_to_target": [... or null],
                   "flops_to_target_with_source": [...], "saving", "saving_ci", "saving_with_source",
                   "saving_with_source_ci", "reached", "closest_gap", "curves": [...]}},
   "target": {SCRATCH ARM: loss}, "savings_curve": {NAME: [{"budget", "saving", ...}]},
   "downstream": {TASK: {ARM: row}}, "downstream_curve": null | {"task", "metric", "arms", "stats"},
   "claims": [{"claim", "holds": true|false|null, "evidence"}]}
Definitions: seqpt_jax/experiment/savings.py. Everything is recomputed from the DONE records,
so a report is never stale and can be rerun while arms are still training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqpt_jax.demo.stages import save_figure_atomic, write_json_atomic
from seqpt_jax.experiment import claims as claims_lib, downstream_curve, runner, savings

BUDGET_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def _source_cost(records: dict, arms_decl: dict, name: str, seed: int) -> float | None:
    """Cumulative training FLOPs of the model `name` starts from (its source's, recursively)."""
    src = arms_decl.get(name, {}).get("source")
    if not src:
        return 0.0
    rec = records.get(src, {}).get(seed)
    if rec is None:
        return None
    below = _source_cost(records, arms_decl, src, seed)
    return None if below is None else rec["train_flops"] + below


def arm_table(records: dict, arms_decl: dict) -> dict:
    """Per arm, lists over its finished seeds."""
    table = {}
    for name, by_seed in records.items():
        seeds = sorted(by_seed)
        recs = [by_seed[s] for s in seeds]
        table[name] = {**{k: arms_decl.get(name, {}).get(k) for k in ("role", "op", "source", "compare")},
                       "seeds": seeds, "params": recs[0].get("params") if recs else None,
                       "final_val_loss": [r.get("final_val_loss") for r in recs],
                       "init_val_loss": [r.get("init_val_loss") for r in recs],
                       "train_flops": [r.get("train_flops") for r in recs],
                       "source_flops": [_source_cost(records, arms_decl, name, s) for s in seeds],
                       "curves": [r.get("curve") or [] for r in recs],
                       "final_batch_losses": [r.get("final_batch_losses") for r in recs]}
    return table


def _paired(arm: dict, ref: dict) -> tuple[dict, dict]:
    """The two arms restricted to the seeds both have, in the same order."""
    seeds = [s for s in arm["seeds"] if s in ref["seeds"]]

    def pick(a: dict) -> dict:  # per-seed lists re-indexed to `seeds`; everything else as is
        per_seed = lambda v: isinstance(v, list) and len(v) == len(a["seeds"])  # noqa: E731
        return {k: [v[a["seeds"].index(s)] for s in seeds] if per_seed(v) else v
                for k, v in a.items() if k != "seeds"} | {"seeds": seeds}
    return pick(arm), pick(ref)


def arm_stats(table: dict) -> dict:
    """Savings of every arm that names a scratch arm to compare with, on the seeds both have
    (paired), with the eval noise of their final per-batch losses (savings.eval_noise)."""
    stats = {}
    for name, whole in table.items():
        ref = table.get(whole.get("compare") or "")
        if not ref or not ref["seeds"]:
            continue
        arm, ref = _paired(whole, ref)
        if not arm["seeds"] or any(not c for c in ref["curves"] + arm["curves"]):
            continue
        src = [s if s is not None else 0.0 for s in arm["source_flops"]]
        noise = savings.eval_noise(arm.get("final_batch_losses") or [None], ref.get("final_batch_losses") or [None])
        st = savings.arm_savings(arm["curves"], ref["curves"], ref["train_flops"], src, noise=noise)
        st["compare"] = arm["compare"]
        # both models wanted (Soltan et al.): (source + arm) against (source + scratch)
        if any(src):
            both = savings.arm_savings(arm["curves"], ref["curves"],
                                       [f + s for f, s in zip(ref["train_flops"], src)], src, noise=noise)
            st["saving_both"], st["saving_both_ci"] = both["saving_with_source"], both["saving_with_source_ci"]
        full = float(np.mean(ref["train_flops"]))
        st["savings_curve"] = [{**row, "fraction": row["budget"] / full} for row in savings.savings_curve(
            arm["curves"], ref["curves"], [f * full for f in BUDGET_FRACTIONS], src)]
        stats[name] = st
    return stats


def build(out: str | Path) -> dict:
    loaded = runner.load_records(out)
    asked, records = loaded["asked"], loaded["records"]
    from seqpt_jax.experiment import spec
    decl = {}
    for name in asked["arms"]:
        try:
            a = spec.read_arm(asked["experiment"], name, asked["scale"], asked.get("hw", "hw/cpu.gin"))
            decl[name] = {"role": a.role, "op": a.op, "source": a.source, "compare": a.compare,
                          "downstream_curve": a.downstream_curve}
        except Exception:  # noqa: BLE001 - an arm whose gin changed since: report what was recorded
            decl[name] = {}
    table = arm_table(records, decl)
    stats = arm_stats(table)
    for name, st in stats.items():
        table[name].update({k: v for k, v in st.items() if k != "final_val_loss"})
    from seqpt_jax.experiment import downstream as ds
    down = ds.table(loaded["downstream"])
    judge = claims_lib.CLAIMS.get(asked["experiment"])
    claims = judge(table, stats, down) if judge else []
    curve = downstream_curve.build(out, {n: d["downstream_curve"] for n, d in decl.items() if d.get("downstream_curve")})
    claims += claims_lib.downstream_curve_claims(curve)
    targets = {st["compare"]: st["target"] for st in stats.values()}
    return {"experiment": asked["experiment"], "scale": asked["scale"], "seeds": asked.get("seeds"),
            "arms": table, "target": targets,
            "savings_curve": {n: st["savings_curve"] for n, st in stats.items()}, "downstream": down,
            "downstream_curve": curve, "claims": claims}


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _mean(xs) -> str:
    xs = [x for x in xs if x is not None]
    return "—" if not xs else f"{np.mean(xs):.3f}" + (f" ± {np.std(xs):.3f}" if len(xs) > 1 else "")


def _cell(a: dict, key: str) -> str:
    """A table cell: saving [interval], or "not reached (gap ...)"."""
    if "reached" not in a:
        return "—"
    if a.get(key) is None:
        gaps = [g for g in a.get("closest_gap", []) if g is not None and g > 0]
        return "not reached" + (f" (gap {min(gaps):.3f})" if gaps else "")
    if key == "saving" and a.get("vacuous"):
        return "— (at 0 own FLOPs)"
    lo, hi = a.get(key + "_ci") or (None, None)
    if lo is None and hi is None:
        return f"{_pct(a[key])} [no interval]"
    return f"{_pct(a[key])} [{_pct(lo) if lo is not None else 'n.r.'}, {_pct(hi) if hi is not None else 'n.r.'}]"


def target_lines(rep: dict) -> list[str]:
    return [f"- target ({ref}): {target:.4f}" for ref, target in rep["target"].items()]


def arm_lines(rep: dict) -> list[str]:
    """The arms table: compute, final loss, and savings against the scratch arm."""
    lines = ["| arm | role | seeds | params | train FLOPs | final val loss | reached | saving | "
             "saving with source |", "|---|---|---|---|---|---|---|---|---|"]
    for name, a in rep["arms"].items():
        params = f"{a['params'] / 1e6:.2f}M" if a.get("params") else "—"
        flops = _mean(a["train_flops"]).split(" ")[0] if a["train_flops"] else "—"
        flops = f"{float(flops):.3g}" if flops != "—" else flops
        sav, sws = _cell(a, "saving"), _cell(a, "saving_with_source")
        lines.append(f"| {name} | {a.get('role') or '—'} | {len(a['seeds'])} | {params} | {flops} | "
                     f"{_mean(a['final_val_loss'])} | {a.get('reached', '—')} | {sav} | {sws} |")
    return lines


def downstream_lines(rep: dict, heading: str = "##") -> list[str]:
    lines = []
    for task, rows in rep.get("downstream", {}).items():
        first = next(iter(rows.values()))
        metric, lang = first["metric"], first.get("lang", "en")
        acc = any("token_accuracy" in r for r in rows.values())
        lines += ["", f"{heading} Downstream: {task} ({metric}; fine-tuned on {lang}, zero-shot mean over the "
                  "others, — where there are none)", "",
                  f"| model | {lang} |" + (f" {lang} token accuracy |" if acc else "") + " zero-shot |",
                  "|---|---|" + ("---|" if acc else "") + "---|"]
        for name, row in rows.items():
            cells = [_mean(row["en"])] + ([_mean(row.get("token_accuracy", []))] if acc else [])
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {_mean(row['zero_shot'])} |")
    return lines


def claim_lines(rep: dict) -> list[str]:
    """One line per claim: what it says, the verdict, the evidence (claims.py)."""
    return [f"- **{c['claim']}**: {claims_lib.VERDICTS[c['holds']]}. {c['evidence']}" for c in rep["claims"]]


def markdown(rep: dict) -> str:
    lines = [f"# {rep['experiment']} at --scale {rep['scale']}", "",
             "Target = the scratch arm's final validation loss (mean over seeds); FLOPs-to-target = first "
             "counted training FLOPs at which an arm's validation loss reaches it (linear between evaluations); "
             "saving = 1 - arm / scratch per paired seed (arm seed k against scratch seed k), without and with the "
             "source model's FLOPs; 95% Student-t intervals over the seeds, the held-out set's noise included; "
             f"none below {savings.MIN_SEEDS} seeds; '—' where a saving is 100% by construction (reached at 0 own "
             "FLOPs). A claim holds only when its interval excludes 0 and the loss gap at the target exceeds "
             f"{savings.NOISE_Z} x the eval noise. Definitions: seqpt_jax/experiment/savings.py.", ""]
    lines += [*target_lines(rep), "", *arm_lines(rep), *downstream_lines(rep),
              *downstream_curve.lines(rep.get("downstream_curve")), "", "## Claims", "", *claim_lines(rep)]
    if rep["savings_curve"]:
        lines += ["", "## Saving against the scratch budget", "",
                  "The target at budget B is the scratch curve's loss at B (read off runs trained to the full "
                  "budget, whose learning-rate schedule had not ended at B). Each cell: without the source's FLOPs, "
                  "then with them (point estimates).", ""]
        lines += ["| arm (against) | " + " | ".join(f"{100 * f:.0f}% of scratch" for f in BUDGET_FRACTIONS) + " |",
                  "|---|" + "---|" * len(BUDGET_FRACTIONS)]
        for name, rows in rep["savings_curve"].items():
            by = {round(r["fraction"], 6): r for r in rows}
            cells = [_budget_cell(by.get(round(f, 6)), rep["arms"][name]) for f in BUDGET_FRACTIONS]
            lines.append(f"| {name} ({rep['arms'][name].get('compare')}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _budget_cell(row: dict | None, arm: dict) -> str:
    """One savings-curve cell: "without / with the source", "—" where vacuous or missing."""
    if row is None:
        return "—"
    vacuous = row.get("flops_to_target") == 0.0
    without = "—" if vacuous else _pct(row.get("saving"))
    return without if not any(arm.get("source_flops") or []) else f"{without} / {_pct(row.get('saving_with_source'))}"


def _plot_rows(rep: dict) -> list[tuple[str | None, list[str]]]:
    """(scratch reference, [it, then the arms measured against it]) per row of the plot, then
    (None, the arms compared with nothing: sources), so that every arm is drawn."""
    groups: dict = {}
    for name, a in rep["arms"].items():
        ref = a.get("compare") or (name if a.get("role") == "scratch" else None)
        groups.setdefault(ref, []).append(name)
    rows = [(ref, [ref, *[n for n in names if n != ref]]) for ref, names in groups.items() if ref in rep["arms"]]
    drawn = {n for _, names in rows for n in names}
    rest = [n for n in rep["arms"] if n not in drawn]
    return rows + ([(None, rest)] if rest else [])


def plot(reps: list[dict], path: Path, title: str | None = None) -> Path:
    """Validation loss against counted FLOPs: left the arm's own (target) FLOPs, right with its
    source's FLOPs added. One row per scratch reference of each report (losses of different
    objectives do not share a y axis), then one of its arms compared with none (sources); each
    column is one FLOPs axis for every arm."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [(rep, ref, names) for rep in reps for ref, names in _plot_rows(rep)]
    fig, axes = plt.subplots(len(rows), 2, figsize=(12, 3.6 * len(rows)), squeeze=False, sharex="col")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, (rep, ref, names) in zip(axes, rows):
        for col, with_source in enumerate((False, True)):
            ax = row[col]
            for i, name in enumerate(names):
                a = rep["arms"][name]
                for k, curve in enumerate(a["curves"]):
                    if not curve:
                        continue
                    shift = (a["source_flops"][k] or 0.0) if with_source else 0.0
                    x, y = zip(*[(f + shift, l) for f, l in curve])
                    ax.plot(x, y, color=colors[i % len(colors)], lw=1.6 if name == ref else 1.0,
                            marker="o", markersize=2.5, label=name if k == 0 else None)
            if ref in rep["target"]:
                ax.axhline(rep["target"][ref], color="k", ls="--", lw=0.8, label=f"target ({ref})")
            ax.set_xlabel("counted training FLOPs" + (" incl. the source's" if with_source else " (target only)"))
            ax.set_ylabel("validation loss")
            what = f"arms against {ref}" if ref else "arms compared with no scratch arm (sources)"
            ax.set_title(f"{rep['experiment']}: {what}", fontsize=9)
            ax.tick_params(labelbottom=True)  # shared x: keep the numbers on every row
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(title or f"seqpt experiment {reps[0]['experiment']} (--scale {reps[0]['scale']})", fontsize=10)
    fig.tight_layout()
    return save_figure_atomic(fig, path, dpi=100)


def write(out: str | Path) -> dict:
    out = Path(out)
    rep = build(out)
    write_json_atomic(out / "report.json", rep)
    text = markdown(rep)
    tmp = out / ".report.md.tmp"
    tmp.write_text(text, "utf-8")
    tmp.replace(out / "report.md")
    png = plot([rep], out / "loss_vs_flops.png")
    written = {"json": str(out / "report.json"), "markdown": str(out / "report.md"), "plot": str(png), "report": rep}
    if rep.get("downstream_curve"):
        written["downstream_plot"] = str(downstream_curve.plot(rep["downstream_curve"], out / "downstream_vs_flops.png"))
    return written
