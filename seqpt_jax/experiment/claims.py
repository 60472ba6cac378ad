"""Each paper's claims, judged from the arms' statistics (report.arm_stats): holds true, false,
or null when the runs cannot say (an arm missing, downstream not run), always with evidence.

A claim about savings holds when the interval says so: every saving's lower bound above 0.
An interval that straddles 0 is "inconclusive" (null) rather than a win; an arm that never
reached the target, or whose interval lies at or below 0, makes the claim false.
"""

from __future__ import annotations

FPI_TOLERANCE = 0.1   # nats: "starts at the source's loss" (LayerNorm with a random unit map perturbs)
PAPER_GROWTH = {"aki_two_stage": 0.452, "aki": 0.384, "fpi": 0.304, "direct_copy": 0.122}
PAPER_SEQUENTIAL_SAVING = 0.27
VERDICTS = {True: "holds", False: "does not hold", None: "cannot tell"}   # how reports read `holds`


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _ci(ci) -> str:
    lo, hi = ci or (None, None)
    return f"[{'not reached' if lo is None else _pct(lo)}, {'not reached' if hi is None else _pct(hi)}]"


def describe(name: str, st: dict, key: str = "saving") -> str:
    if st.get(key) is None:
        gaps = [g for g in st.get("closest_gap", []) if g is not None and g > 0]
        gap = f", closest {min(gaps):.3f} nats above the target" if gaps else ""
        return f"{name}: not reached ({st.get('reached')} seeds{gap}), interval {_ci(st.get(key + '_ci'))}"
    return f"{name}: {_pct(st[key])} {_ci(st.get(key + '_ci'))}"


def _verdict(stats: list[dict], key: str = "saving"):
    """True when every interval is above 0; False when one is at/below 0 or not reached."""
    if any(s.get(key) is None or (s.get(key + "_ci") or [None, None])[1] is None
           or s[key + "_ci"][1] <= 0 for s in stats):
        return False
    if all((s.get(key + "_ci") or [None])[0] is not None and s[key + "_ci"][0] > 0 for s in stats):
        return True
    return None


def claim(text: str, holds, evidence: str) -> dict:
    return {"claim": text, "holds": holds, "evidence": evidence}


def _missing(arms: dict, names) -> list[str]:
    return [n for n in names if n not in arms or not arms[n].get("seeds")]


def growth(arms: dict, stats: dict) -> list[dict]:
    out = []
    need = _missing(arms, ["source", "fpi"])
    if need:
        out.append(claim("FPI starts at the source's loss", None, f"arms not run: {', '.join(need)}"))
    else:
        src, fpi = arms["source"], arms["fpi"]
        pairs = [(s, src["final_val_loss"][i], fpi["init_val_loss"][fpi["seeds"].index(s)])
                 for i, s in enumerate(src["seeds"]) if s in fpi["seeds"]]
        gaps = [abs(b - a) for _, a, b in pairs if a is not None and b is not None]
        rand = arms.get("random", {}).get("init_val_loss") or arms.get("scratch", {}).get("init_val_loss") or []
        rand = [r for r in rand if r is not None]
        ev = "; ".join(f"seed {s}: source {a:.3f}, FPI at step 0 {b:.3f}" for s, a, b in pairs
                       if a is not None and b is not None)
        if rand:
            ev += f"; a random init starts at {sum(rand) / len(rand):.3f}"
        out.append(claim(f"FPI starts at the source's loss (within {FPI_TOLERANCE} nats)",
                         (max(gaps) <= FPI_TOLERANCE) if gaps else None, ev or "no step-0 evaluation recorded"))
    grown = [n for n in ("fpi", "aki", "aki_two_stage", "stack", "direct_copy", "distill") if n in stats]
    need = _missing(arms, ["scratch", *PAPER_GROWTH, "stack"])
    out.append(claim("every growth arm reaches the scratch target with fewer target FLOPs than scratch",
                     _verdict([stats[n] for n in grown]) if grown and "scratch" in arms else None,
                     "; ".join(describe(n, stats[n]) for n in grown)
                     + (f"; arms not run: {', '.join(need)}" if need else "")))
    if "random" in stats:
        st = stats["random"]
        lo = (st.get("saving_ci") or (None, None))[0]
        out.append(claim("control: a random init through the growth path shows no saving (its interval does "
                         "not lie above 0)", not (lo is not None and lo > 0), describe("random", st)))
    if "distill" in stats and "aki" in stats:
        d, a = stats["distill"], stats["aki"]
        out.append(claim("small-model assistance: AKI + distillation from the source saves more than AKI alone "
                         "(teacher FLOPs included)",
                         None if d.get("saving") is None or a.get("saving") is None else d["saving"] > a["saving"],
                         f"{describe('distill', d)}; {describe('aki', a)}; with the source: "
                         f"{describe('distill', d, 'saving_with_source')}, {describe('aki', a, 'saving_with_source')}; "
                         "point estimates compared, see the intervals"))
    order = ["aki_two_stage", "aki", "fpi", "direct_copy"]
    if all(n in stats for n in order):
        val = [stats[n]["saving"] if stats[n]["saving"] is not None else float("-inf") for n in order]
        holds = val[0] >= val[1] >= val[2] > val[3]
        ev = "; ".join(f"{describe(n, stats[n])} (paper {_pct(PAPER_GROWTH[n])})" for n in order)
        out.append(claim("ordering AKI + two-stage >= AKI >= FPI > DirectCopy (paper: 45.2 / 38.4 / 30.4 / 12.2 %)",
                         holds, ev + "; point estimates compared, see the intervals"))
    else:
        out.append(claim("ordering AKI + two-stage >= AKI >= FPI > DirectCopy", None,
                         f"arms not run: {', '.join(n for n in order if n not in stats)}"))
    return out


WARM = ("warm_frozen0", "warm_frozen25", "warm_frozen50", "warm_frozen100")
ENCODERS = ("enc_scratch", "enc_masked", "enc_small_decoder", "enc_continued")


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


LABELING = ("ja_ner", "ui_tagging")  # claim (a)'s sequence-labeling task: the first with an mlm row
EPS = 1e-9  # a score gap must exceed float noise (means of equal scores can differ by ~1e-18)


def _downstream_claims(ds: dict) -> list[dict]:
    """(a), (b), the random-init and the majority-baseline checks from {task: {arm: {"en": [...], ...}}}."""
    score = lambda rows, arm: _mean(rows.get(arm, {}).get("en", []))  # noqa: E731 - fine-tuned language
    tag_task = next((t for t in LABELING if score(ds.get(t, {}), "mlm") is not None), "ui_tagging")
    cls, tag = ds.get("section", {}), ds.get(tag_task, {})
    out = []
    extracted = [n for n in ENCODERS if score(tag, n) is not None and score(cls, n) is not None]
    if score(tag, "mlm") is None or score(cls, "mlm") is None or not extracted:
        return [claim("(a) the MLM encoder beats every extracted encoder on sequence labeling by more than on "
                      "classification", None, "downstream rows missing (mlm or the extracted encoders)"),
                claim("(b) the variants do not close that gap", None, "downstream rows missing")]
    gaps = {n: (score(tag, "mlm") - score(tag, n), score(cls, "mlm") - score(cls, n)) for n in extracted}
    ev = "; ".join(f"{n}: labeling gap {g[0]:+.3f}, classification gap {g[1]:+.3f}" for n, g in gaps.items())
    metrics = f"(after fine-tuning: {tag_task} {tag['mlm']['metric']}, section {cls['mlm']['metric']})"
    out.append(claim("(a) the MLM encoder beats every extracted encoder on sequence labeling by more than on "
                     "classification", all(g[0] > EPS and g[0] - g[1] > EPS for g in gaps.values()), f"{ev} {metrics}"))
    variants = [n for n in ("enc_masked", "enc_small_decoder", "enc_continued") if n in gaps]
    out.append(claim("(b) the variants (masked-encoder seq2seq, small decoder, continued MLM) do not close that gap",
                     all(gaps[n][0] > EPS for n in variants) if variants else None,
                     "; ".join(f"{n}: MLM still ahead by {gaps[n][0]:+.3f} on labeling" for n in variants)
                     or "variant rows missing"))
    rand = {t: score(rows, "random_init") for t, rows in ds.items() if score(rows, "random_init") is not None}
    if rand:
        rows = [(n, t, score(ds[t], n)) for t in rand for n in ("mlm", *extracted)]
        worse = [f"{n} on {t} ({v:.3f} vs {rand[t]:.3f})" for n, t, v in rows if v is not None and v <= rand[t]]
        out.append(claim("pre-training beats a random init of the same shape fine-tuned with the same budget",
                         not worse, ("not beaten: " + ", ".join(worse)) if worse else
                         "random init: " + ", ".join(f"{t} {v:.3f}" for t, v in rand.items())))
    base = {t: score(rows, "majority_baseline") for t, rows in ds.items()
            if score(rows, "majority_baseline") is not None and score(rows, "mlm") is not None}
    if base:
        out.append(claim("the MLM encoder beats the majority-label baseline", all(score(ds[t], "mlm") > v
                                                                              for t, v in base.items()),
                         "; ".join(f"{t}: mlm {score(ds[t], 'mlm'):.3f} vs majority {v:.3f}"
                                   for t, v in base.items())))
    return out


GENERATION_TOLERANCE = 1.0  # chrF points: below the scratch score by more than this is a miss


def _generation_claim(rows: dict) -> dict:
    """(c') from the synopsis rows, point estimates over the fine-tuning seeds: holds when a warm
    start unfrozen partway scores at least the scratch seq2seq's chrF after the same fine-tuning,
    does not hold when every such arm is more than GENERATION_TOLERANCE below it, and cannot tell
    in between (no interval at one seed says whether a small shortfall is real)."""
    text = "(c') ... and its downstream generation scores (English synopsis chrF after the same fine-tuning)"
    score = lambda arm: _mean(rows.get(arm, {}).get("en", []))  # noqa: E731
    partway = [n for n in ("warm_frozen25", "warm_frozen50") if score(n) is not None]
    if score("s2s_scratch") is None or not partway:
        return claim(text, None, "null: generation rows missing (s2s_scratch and warm_frozen25/50)")
    ref = score("s2s_scratch")
    seeds = len(rows["s2s_scratch"]["en"])
    ev = "; ".join(f"{n} {score(n):.2f}" for n in (*partway, *(n for n in WARM if n not in partway))
                   if score(n) is not None)
    rand = score("random_init_s2s")
    ev = (f"s2s_scratch {ref:.2f}; {ev}" + (f"; random init {rand:.2f}" if rand is not None else "")
          + f" ({seeds} fine-tuning seed{'s' if seeds > 1 else ''}, point estimates, tolerance "
          f"{GENERATION_TOLERANCE} chrF)")
    if any(score(n) >= ref for n in partway):
        return claim(text, True, ev)
    return claim(text, False if all(score(n) < ref - GENERATION_TOLERANCE for n in partway) else None, ev)


def sequential(arms: dict, stats: dict, downstream: dict | None = None) -> list[dict]:
    out = []
    no_downstream = "null: downstream not run (the scale gin sets DOWNSTREAM = False, or it has not run yet)"
    if downstream:
        out += _downstream_claims(downstream)
    else:
        mlm = arms.get("mlm", {}).get("final_val_loss") or []
        enc_losses = "; ".join(
            f"{n} MLM val loss {_mean(arms[n]['final_val_loss']):.3f}"
            for n in ENCODERS if n in arms and _mean(arms[n].get("final_val_loss") or []) is not None)
        mlm_text = f"MLM encoder val loss {_mean(mlm):.3f}; " if _mean(mlm) is not None else ""
        out.append(claim("(a) the MLM encoder beats every extracted encoder on sequence labeling by more than on "
                         "classification", None, f"{no_downstream}. Pre-training losses only: {mlm_text}{enc_losses}"))
        out.append(claim("(b) the variants (masked-encoder seq2seq, small decoder, continued MLM) do not close "
                         "that gap", None, no_downstream))
    partway = [n for n in ("warm_frozen25", "warm_frozen50") if n in stats]
    if partway:
        reached = [n for n in partway if stats[n].get("saving") is not None]
        out.append(claim("(c) a warm start unfrozen partway reaches the scratch seq2seq's validation loss",
                         bool(reached), "; ".join(describe(n, stats[n]) for n in partway)))
    else:
        out.append(claim("(c) a warm start unfrozen partway reaches the scratch seq2seq's validation loss", None,
                         "arms not run: warm_frozen25, warm_frozen50"))
    out.append(_generation_claim((downstream or {}).get("synopsis", {})))
    warm = [n for n in WARM if n in stats]
    if warm and "mlm" in arms:
        best = max(warm, key=lambda n: -1 if stats[n].get("saving_both") is None else stats[n]["saving_both"])
        holds = _verdict([stats[best]], "saving_both")
        out.append(claim("(d) MLM + warm-started seq2seq costs less than MLM + scratch seq2seq at matched "
                         f"validation loss (paper: {_pct(PAPER_SEQUENTIAL_SAVING)} saved)", holds,
                         "; ".join(describe(n, stats[n], "saving_both") for n in warm) + f"; best: {best}"))
    else:
        out.append(claim("(d) MLM + warm-started seq2seq costs less than MLM + scratch seq2seq", None,
                         "arms not run: mlm and the warm_frozen* arms"))
    return out


def downstream_curve_claims(section: dict | None) -> list[dict]:
    """ELECTRA (Clark et al. 2020): the discriminator reaches the MLM encoder's downstream score
    with fewer pre-training FLOPs (the paper: GLUE of RoBERTa / XLNet with under a quarter of
    their compute). Judged like every saving: the interval decides."""
    if not section or "electra" not in section["stats"]:
        return []
    st = section["stats"]["electra"]
    gaps = [g for g in st["closest_gap"] if g is not None and g > 0]
    evidence = (f"{section['task']} {section['metric']} target {st['target']:.3f} ({st['reference']}'s final, "
                f"mean of {len(section['arms'][st['reference']]['seeds'])} seeds); electra reached it on "
                f"{st['reached']} seeds, saving {_pct(st['saving']) if st['saving'] is not None else 'not reached'} "
                f"{_ci(st['saving_ci'])}" + (f", closest {min(gaps):.3f} short" if st["saving"] is None and gaps else ""))
    return [claim("ELECTRA reaches the MLM encoder's downstream score with fewer pre-training FLOPs",
                  _verdict([st]), evidence)]


def growth_claims(arms: dict, stats: dict, downstream: dict | None = None) -> list[dict]:
    return growth(arms, stats)


CLAIMS = {"growth": growth_claims, "sequential": sequential}
