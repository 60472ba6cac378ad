"""Claims judged from hand-made arm tables: holds true / false / null, with evidence."""

import pytest

from seqpt_jax.experiment import claims, report, savings

SEEDS = [0, 1, 2]
SCRATCH = [[(0, 9.0), (100, 5.0)]] * 3
NOISY = [5.0 + 0.01 * (-1) ** i for i in range(64)]       # per-batch losses: eval noise ~0.0013


def _arm(curves, source=None, init=None, compare="scratch", role="recipe", seeds=SEEDS):
    n = len(seeds)
    return {"role": role, "compare": compare, "seeds": seeds, "curves": curves[:n], "train_flops": [100.0] * n,
            "final_val_loss": [savings.final_loss(c) for c in curves[:n]], "init_val_loss": (init or [None] * 3)[:n],
            "source_flops": (source or [0.0] * 3)[:n], "params": 1, "final_batch_losses": [NOISY] * n}


def _reaching(at):  # reaches 5.0 at FLOPs `at` in every seed, a little spread between them
    return [[(0, 8.0), (at + d, 5.0), (100, 4.0)] for d in (-1, 0, 1)]


def _growth(seeds=SEEDS, **at):
    arms = {"scratch": _arm(SCRATCH, compare=None, role="scratch", seeds=seeds),
            "source": _arm([[(0, 9.0), (50, 6.0)]] * 3, compare=None, role="source", seeds=seeds)}
    for name, x in at.items():
        arms[name] = _arm(_reaching(x) if x else [[(0, 8.0), (100, 5.5)]] * 3, source=[50.0] * 3,
                          init=[6.02, 6.03, 6.01] if name == "fpi" else None, seeds=seeds)
    return arms, report.arm_stats(arms)


def _by_text(out):
    return {c["claim"].split(" (")[0]: c for c in out}


def test_growth_claims_hold_when_the_paper_ordering_and_savings_show():
    arms, stats = _growth(aki_two_stage=40, aki=50, fpi=60, direct_copy=90, stack=70)
    out = _by_text(claims.growth(arms, stats))
    assert out["FPI starts at the source's loss"]["holds"] is True
    assert out["every growth arm reaches the scratch target with fewer target FLOPs than scratch"]["holds"] is True
    assert out["ordering AKI + two-stage >= AKI >= FPI > DirectCopy"]["holds"] is True
    assert "60.0%" in out["ordering AKI + two-stage >= AKI >= FPI > DirectCopy"]["evidence"]  # aki_two_stage


def test_growth_claims_fail_on_a_miss_or_a_wrong_order_and_say_null_when_arms_are_missing():
    arms, stats = _growth(aki_two_stage=40, aki=50, fpi=None, direct_copy=90, stack=70)
    out = _by_text(claims.growth(arms, stats))
    every = out["every growth arm reaches the scratch target with fewer target FLOPs than scratch"]
    assert every["holds"] is False and "fpi: not reached" in every["evidence"]
    assert "closest 0.500 nats" in every["evidence"]
    assert out["ordering AKI + two-stage >= AKI >= FPI > DirectCopy"]["holds"] is False
    arms, stats = _growth(aki=50, fpi=60)
    out = _by_text(claims.growth(arms, stats))
    assert out["ordering AKI + two-stage >= AKI >= FPI > DirectCopy"]["holds"] is None
    arms["fpi"]["init_val_loss"] = [7.5, 7.6, 7.4]                        # starts far from the source
    assert _by_text(claims.growth(arms, stats))["FPI starts at the source's loss"]["holds"] is False


def _rows(metric, *values):   # one downstream row: per pre-training seed, three fine-tuning seeds
    return {"metric": metric, "en": [v + e for v in values for e in (-0.001, 0.0, 0.001)],
            "seeds": [s for s in range(len(values)) for _ in range(3)]}


def test_sequential_claims_from_downstream_rows_and_total_compute():
    arms = {"s2s_scratch": _arm(SCRATCH, compare=None, role="scratch"),
            "mlm": _arm([[(0, 9.0), (30, 6.0)]] * 3, compare=None, role="source"),
            "warm_frozen25": _arm(_reaching(40), source=[30.0] * 3, compare="s2s_scratch")}
    stats = report.arm_stats(arms)
    assert stats["warm_frozen25"]["saving_both"] == pytest.approx(savings.saving(40 + 30, 100 + 30))
    ds = {"section": {"mlm": _rows("accuracy", .80, .81, .79), "enc_scratch": _rows("accuracy", .78, .80, .77),
                      "random_init": _rows("accuracy", .5, .5, .5)},
          "ui_tagging": {"mlm": _rows("f1", .60, .62, .61), "enc_scratch": _rows("f1", .40, .41, .40),
                         "random_init": _rows("f1", .45, .46, .45)}}
    out = {c["claim"][:4]: c for c in claims.sequential(arms, stats, ds)}
    assert out["(a) "]["holds"] is True and "labeling gap +1.319" in out["(a) "]["evidence"]   # 0.207 / 0.157 range
    assert out["(b) "]["holds"] is None
    assert out["(c) "]["holds"] is True and out["(d) "]["holds"] is True
    assert "warm_frozen25, named in advance" in out["(d) "]["claim"]
    assert out["pre-"]["holds"] is False and "enc_scratch - random on ui_tagging" in out["pre-"]["evidence"]
    ds["ui_tagging"]["enc_scratch"] = _rows("f1", .75, .76, .77)     # now ahead of the MLM encoder on labeling
    out = {c["claim"][:4]: c for c in claims.sequential(arms, stats, ds)}
    assert out["(a) "]["holds"] is False
    none = {c["claim"][:4]: c for c in claims.sequential(arms, stats, None)}
    assert none["(a) "]["holds"] is None and "downstream not run" in none["(a) "]["evidence"]


def test_claim_a_normalises_gaps_by_each_tasks_range():
    """A 0.05 F1 gap on a task whose MLM - random range is 0.10 is half of it; a 0.10 accuracy gap on
    a 0.40 range is a quarter: (a) holds normalised, though the raw gaps say the opposite."""
    ds = {"section": {"mlm": _rows("accuracy", .90, .90, .90), "enc_scratch": _rows("accuracy", .80, .80, .80),
                      "random_init": _rows("accuracy", .50, .50, .50)},
          "ja_ner": {"mlm": _rows("f1", .20, .20, .20), "enc_scratch": _rows("f1", .15, .15, .15),
                     "random_init": _rows("f1", .10, .10, .10)}}
    out = {c["claim"][:4]: c for c in claims.sequential({}, {}, ds)}
    assert out["(a) "]["holds"] is True, out["(a) "]["evidence"]


def test_downstream_claims_pair_pre_training_seeds_and_need_three():
    """Seed 0 is the MLM encoder's best and random init's worst: one seed says MLM wins, all three
    do not; with fewer than three pre-training seeds nothing is decided."""
    ds = {"ja_ner": {"mlm": _rows("f1", .188, .173, .184), "random_init": _rows("f1", .138, .169, .178)}}
    one = {"ja_ner": {k: {**v, "en": v["en"][:3], "seeds": v["seeds"][:3]} for k, v in ds["ja_ner"].items()}}
    assert claims._downstream_claims(one)[0]["holds"] is None          # rows missing for (a) anyway
    rand = lambda d: next(c for c in claims.sequential({}, {}, d) if c["claim"].startswith("pre-"))  # noqa: E731
    assert rand(one)["holds"] is None
    assert rand(ds)["holds"] is None                                    # [-0.02, +0.06]: across 0


def test_majority_claim_reads_token_accuracy_on_entity_f1_tasks():
    mlm = {**_rows("f1", .2, .2, .2), "token_accuracy": [.80] * 9}
    ds = {"ja_ner": {"mlm": mlm, "majority_baseline": {"metric": "f1", "en": [0.0], "token_accuracy": [0.85],
                                                       "seeds": [0]}}}
    got = next(c for c in claims.sequential({}, {}, ds) if c["claim"].startswith("the MLM encoder beats the major"))
    assert got["holds"] is False and "token_accuracy" in got["evidence"]   # F1 0.2 > 0 would have "held"


def test_one_seed_cannot_tell_any_claim_that_needs_a_spread():
    arms, stats = _growth(seeds=[0], aki_two_stage=40, aki=50, fpi=60, direct_copy=90, stack=70, random=95,
                          distill=30)
    out = _by_text(claims.growth(arms, stats))
    for text in ("every growth arm reaches the scratch target with fewer target FLOPs than scratch",
                 "control: a random init through the growth path shows no saving",
                 "small-model assistance: AKI + distillation from the source saves more than AKI alone",
                 "ordering AKI + two-stage >= AKI >= FPI > DirectCopy"):
        assert out[text]["holds"] is None and "fewer than 3 seeds" in out[text]["evidence"], text
    assert out["FPI starts at the source's loss"]["holds"] is True    # a per-seed fact, no spread needed


def test_a_saving_within_the_eval_noise_cannot_be_told():
    arms, _ = _growth(aki_two_stage=40, aki=50, fpi=60, direct_copy=90, stack=70)
    flat = [[(0, 9.0), (50, 5.02), (100, 5.0)]] * 3                   # the scratch curve ends flat
    arms["scratch"]["curves"] = flat
    arms["fpi"]["curves"] = [[(0, 8.0), (50, 5.1), (60 + d, 5.0), (100, 4.99)] for d in (-1, 0, 1)]
    for a in ("scratch", "fpi"):
        arms[a]["final_batch_losses"] = [[5.0 + 0.1 * (-1) ** i for i in range(64)]] * 3   # noise ~0.0126
    arms["fpi"]["final_batch_losses"] = [[5.0 + 0.1 * (-1) ** (i // 2) for i in range(64)]] * 3
    st = report.arm_stats(arms)["fpi"]
    assert st["saving_ci"][0] > 0 and st["min_effect"] is False      # 0.016 nats < 1.96 x noise
    assert claims._verdict([st]) is None


def test_a_target_missed_within_the_eval_noise_cannot_be_told():
    """An arm that ends 0.005 nats above scratch's final loss on every seed (eval noise ~0.0126)
    has not been shown to fall short: cannot tell. Before, any miss read "does not hold"
    (sequential (d) at --scale cpu: warm_frozen25 missed by 0.000 nats on two seeds). 0.2 above: does not."""
    for above, verdict in ((0.005, None), (0.2, False)):
        arms, _ = _growth(aki_two_stage=40, aki=50, fpi=60, direct_copy=90, stack=70)
        arms["scratch"]["curves"] = [[(0, 9.0), (50, 5.02), (100, 5.0)]] * 3
        arms["fpi"]["curves"] = [[(0, 8.0), (50, 5.1), (100, 5.0 + above + 0.001 * d)] for d in (-1, 0, 1)]
        for a in ("scratch", "fpi"):
            arms[a]["final_batch_losses"] = [[5.0 + 0.1 * (-1) ** i for i in range(64)]] * 3
            arms[a]["final_val_loss"] = [savings.final_loss(c) for c in arms[a]["curves"]]
        arms["fpi"]["final_batch_losses"] = [[5.0 + 0.1 * (-1) ** (i // 2) for i in range(64)]] * 3
        st = report.arm_stats(arms)["fpi"]
        assert st["saving"] is None and st["eval_noise"] > 0.01 and claims._verdict([st]) is verdict, above


def test_generation_claim_pairs_the_named_warm_start_with_scratch_by_seed():
    """(c'): warm_frozen25 (named up front) minus s2s_scratch, paired by pre-training seed, against a
    1-chrF non-inferiority margin. Before, the best of warm_frozen25/50 was compared on means, so a
    second arm could rescue the claim and seed noise never entered it."""
    arms = {"s2s_scratch": _arm(SCRATCH, compare=None, role="scratch")}
    rows = {name: {"metric": "chrf", "en": scores, "seeds": [0, 1, 2]} for name, scores in
            (("s2s_scratch", [30.0, 31.0, 29.0]), ("warm_frozen25", [29.6, 30.7, 28.5]),
             ("warm_frozen50", [30.0, 31.0, 29.0]), ("random_init_s2s", [12.0, 12.5, 11.5]))}
    judge = lambda: {c["claim"][:4]: c for c in claims.sequential(arms, {}, {"synopsis": rows})}["(c')"]  # noqa: E731
    got = judge()                                                      # 0.3-0.5 behind, tightly: within the margin
    assert got["holds"] is True and "warm_frozen25 - s2s_scratch -0.400" in got["evidence"]
    assert "s2s_scratch 30.00" in got["evidence"] and "random init 12.00" in got["evidence"]
    rows["warm_frozen25"]["en"] = [28.0, 29.0, 27.0]                   # 2 behind in every seed; warm_frozen50
    assert judge()["holds"] is False                                   # at scratch's score cannot rescue it
    rows["warm_frozen25"]["en"] = [33.0, 26.0, 30.0]                   # ahead on the mean, but seeds disagree
    assert judge()["holds"] is None
    rows["warm_frozen25"]["en"], rows["warm_frozen25"]["seeds"] = [30.0], [0]   # one pre-training seed
    assert judge()["holds"] is None and "fewer than 3 seeds" in judge()["evidence"]
    del rows["warm_frozen25"]
    assert judge()["holds"] is None and "missing" in judge()["evidence"]


def test_claim_a_needs_a_gap_beyond_float_noise():
    """Equal scores whose means differ by float noise are no gap: (a) and (b) do not hold."""
    same = 0.1 + 0.2                                                   # 0.30000000000000004
    ds = {"section": {"mlm": _rows("accuracy", .5, .51, .52), "enc_scratch": _rows("accuracy", .5, .51, .52),
                      "enc_masked": _rows("accuracy", .5, .51, .52), "random_init": _rows("accuracy", .3, .3, .3)},
          "ja_ner": {"mlm": _rows("f1", same, .31, .32), "enc_scratch": _rows("f1", .3, .31, .32),
                     "enc_masked": _rows("f1", .3, .31, .32), "random_init": _rows("f1", .1, .1, .1)}}
    out = {c["claim"][:4]: c for c in claims.sequential({}, {}, ds)}
    assert out["(a) "]["holds"] is False and out["(b) "]["holds"] is False


def test_distillation_claim_compares_distill_with_aki():
    arms, stats = _growth(aki=40, distill=30)
    out = _by_text(claims.growth(arms, stats))
    key = "small-model assistance: AKI + distillation from the source saves more than AKI alone"
    assert out[key]["holds"] is True and "distill" in out[key]["evidence"]
    assert "distill" in out["every growth arm reaches the scratch target with fewer target FLOPs than scratch"]["evidence"]
    arms, stats = _growth(aki=30, distill=40)
    assert _by_text(claims.growth(arms, stats))[key]["holds"] is False
