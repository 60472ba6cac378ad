"""Objectives: golden outputs on small inputs and statistical properties over many seeds."""

import numpy as np
import pytest

from seqpt_jax.data import preprocessors as P
from seqpt_jax.data import vocab as V
from seqpt_jax.errors import UserError

# 60 ids: 0..2 special, 50..59 extra ids (mask = 50, sentinels 59, 58, ...); every 3rd id starts a word.
SMALL = V.synthetic_token_info(60, extra_ids=10, every=3)
BIG = V.synthetic_token_info(32100, extra_ids=100, every=4)


def _ids(n, seed=0, info=BIG):
    lo, hi = info.random_range
    return np.random.default_rng(seed).integers(lo, hi, n).astype(np.int32)


# ----- golden tests: exact outputs for a fixed seed ------------------------------------------

def test_golden_mlm():
    out = P.mlm(np.arange(3, 33, dtype=np.int32), np.random.default_rng(42), SMALL)
    assert out["weights"].tolist() == [0] * 7 + [1] + [0] * 8 + [1] + [0] * 8 + [1, 0, 0, 0, 1]
    assert out["inputs"][[7, 16, 25, 29]].tolist() == [50, 50, 50, 50]  # all [MASK] here
    assert out["targets"].tolist() == list(range(3, 33))


def test_golden_whole_word_and_span_mlm():
    ids = np.arange(3, 33, dtype=np.int32)
    wwm = P.objective("wwm")(ids, np.random.default_rng(42), SMALL)
    assert np.flatnonzero(wwm["weights"]).tolist() == [15, 16, 17]  # the word 18 19 20
    assert wwm["inputs"][15:18].tolist() == [50, 19, 42]            # mask, keep, random
    span = P.objective("span_mlm")(ids, np.random.default_rng(42), SMALL)
    assert np.flatnonzero(span["weights"]).tolist() == [0, 1, 2]  # the word 3 4 5, one span
    assert span["inputs"][:3].tolist() == [50, 50, 50]                # one kind per span: mask


def test_golden_span_corruption():
    out = P.span_corruption(np.arange(3, 43, dtype=np.int32), np.random.default_rng(7), SMALL)
    assert out["inputs"].tolist() == list(range(3, 18)) + [59] + list(range(19, 38)) + [58, 1]
    assert out["targets"].tolist() == [59, 18, 58, 38, 39, 40, 41, 42, 1]


def test_golden_span_corruption_masked():
    out = P.span_corruption_masked(np.arange(3, 33, dtype=np.int32), np.random.default_rng(42), SMALL)
    assert out["targets"].tolist() == [59, 29, 30, 31, 32, 1]
    assert out["mlm_targets"].tolist() == list(range(3, 29)) + [59, 1]
    assert np.flatnonzero(out["mlm_weights"]).tolist() == [6, 8, 22, 25]
    assert out["inputs"][[6, 8, 22, 25]].tolist() == [50, 50, 50, 50]


def test_golden_prefix_and_causal_lm():
    ids = np.arange(3, 13, dtype=np.int32)
    out = P.prefix_lm(ids, np.random.default_rng(42), SMALL)
    assert out["inputs"].tolist() == [3, 1]
    assert out["targets"].tolist() == list(range(4, 13)) + [1]
    out = P.causal_lm(ids, np.random.default_rng(42), SMALL)
    assert out["inputs"].tolist() == [1] and out["targets"].tolist() == list(range(3, 13)) + [1]


def test_t5_lengths():
    assert P.span_corruption_lengths(512) == (568, 114)  # T5's published numbers
    raw, targets = P.span_corruption_lengths(512)
    out = P.span_corruption(_ids(raw), np.random.default_rng(0), BIG)
    assert len(out["inputs"]) == 512 and len(out["targets"]) == targets


# ----- properties ------------------------------------------------------------------------------

def test_mlm_rate_and_80_10_10_split():
    """Over 200 x 512 tokens: selection 15% +- 0.5 point per row (rounding only); of the
    selected, 80/10/10 within +- 1.5 points (binomial sd ~ 0.2 points here)."""
    ids = _ids(512)
    selected = masked = randomized = kept = 0
    for seed in range(200):
        out = P.mlm(ids, P.example_rng(seed, 0, 0), BIG)
        sel = out["weights"].astype(bool)
        assert abs(sel.mean() - 0.15) <= 0.005
        selected += sel.sum()
        masked += (out["inputs"][sel] == BIG.mask_id).sum()
        kept += (out["inputs"][sel] == ids[sel]).sum()
        randomized += ((out["inputs"][sel] != ids[sel]) & (out["inputs"][sel] != BIG.mask_id)).sum()
        assert (out["inputs"][~sel] == ids[~sel]).all()
    assert abs(masked / selected - 0.8) < 0.015
    assert abs(randomized / selected - 0.1) < 0.015
    assert abs(kept / selected - 0.1) < 0.015


def test_electra_generator_input_is_85_0_15():
    """ELECTRA's objective: of the selected tokens 85% [MASK], none random, 15% kept; and the
    ELECTRA run feeds it (BERT's 80/10/10 gave the generator random tokens to detect)."""
    from seqpt_jax.experiment import spec
    ids = _ids(512)
    masked = kept = selected = 0
    for seed in range(100):
        out = P.objective("electra_mlm")(ids, P.example_rng(seed, 0, 0), BIG)
        sel = out["weights"].astype(bool)
        selected += sel.sum()
        masked += (out["inputs"][sel] == BIG.mask_id).sum()
        kept += (out["inputs"][sel] == ids[sel]).sum()
    assert masked + kept == selected and abs(masked / selected - 0.85) < 0.015
    spec.read_arm("sequential", "electra", "test")
    assert spec.macro("MIXTURE_OR_TASK_NAME") == "seqpt_local_electra_mlm"


def test_mlm_rates_configurable():
    ids = _ids(1000)
    out = P.mlm(ids, np.random.default_rng(0), BIG, rate=0.3, mask_prob=1.0, random_prob=0.0)
    sel = out["weights"].astype(bool)
    assert sel.sum() == 300 and (out["inputs"][sel] == BIG.mask_id).all()
    with pytest.raises(UserError):
        P.mlm(ids, np.random.default_rng(0), BIG, mask_prob=0.9, random_prob=0.2)


@pytest.mark.parametrize("name", ["wwm", "span_mlm"])
def test_whole_word_masking_never_splits_a_word(name):
    for seed in range(100):
        ids = _ids(300, seed)
        out = P.objective(name)(ids, np.random.default_rng(seed), BIG)
        word = np.cumsum(BIG.word_start[ids] | (np.arange(300) == 0))
        for w in np.unique(word):
            sel = out["weights"][word == w]
            assert sel.min() == sel.max(), f"word {w} split at seed {seed}"
        assert 0.10 <= out["weights"].mean() <= 0.15  # skipping words may undershoot slightly


def _runs(weights):
    """(start, end) of each maximal run of selected positions."""
    w = np.concatenate([[0], weights, [0]])
    return zip(np.flatnonzero(np.diff(w) == 1), np.flatnonzero(np.diff(w) == -1))


def _span_rows(n_rows=30, length=4000):
    """Token-level SpanBERT masking (units = tokens) of long rows: budget-cutting shortens one
    span per row, so long rows keep its effect on the mean small (~0.01 here)."""
    for seed in range(n_rows):
        ids = _ids(length, seed)
        yield ids, P.mlm(ids, np.random.default_rng(seed), BIG, spans=True)


def test_span_mlm_lengths_follow_the_clipped_renormalised_geometric():
    """SpanBERT: l ~ Geometric(0.2) clipped to [1, 10] and renormalised (mean 3.8), not
    min(Geometric(0.2), 10) (mean 4.46). Spans never touch, so each run is one span."""
    l = np.arange(1, 11)
    prob = 0.2 * 0.8 ** (l - 1)
    analytic = float((l * prob).sum() / prob.sum())
    lengths = []
    for ids, out in _span_rows():
        assert out["weights"].sum() == round(0.15 * len(ids))  # the budget exactly
        lengths += [int(e - s) for s, e in _runs(out["weights"])]
    # ~4700 spans, sd 2.6: the standard error of the mean is 0.04.
    assert abs(np.mean(lengths) - analytic) <= 0.1, (np.mean(lengths), analytic)
    assert max(lengths) <= 10
    np.testing.assert_allclose(P.span_length_probs(0.2, 10), prob / prob.sum(), rtol=1e-12)


def test_span_mlm_makes_one_mask_random_keep_choice_per_span():
    kinds = {"mask": 0, "keep": 0, "random": 0}
    for ids, out in _span_rows(n_rows=10):
        for s, e in _runs(out["weights"]):
            inp, orig = out["inputs"][s:e], ids[s:e]
            is_mask, is_keep = inp == BIG.mask_id, inp == orig
            if is_mask.all():
                kinds["mask"] += 1
            elif is_keep.all():
                kinds["keep"] += 1
            else:  # random: no [MASK]; a random id equals the original with prob 1/32000
                assert not is_mask.any() and is_keep.sum() <= 1, (inp.tolist(), orig.tolist())
                kinds["random"] += 1
    n = sum(kinds.values())
    assert abs(kinds["mask"] / n - 0.8) < 0.04 and abs(kinds["random"] / n - 0.1) < 0.03, kinds


def _reassemble(inputs, targets, info):
    """The original tokens from span-corrupted inputs and targets."""
    spans, current = {}, None
    for t in targets[:-1]:
        if t >= info.vocab_size - info.extra_ids:
            current = spans.setdefault(int(t), [])
        else:
            current.append(int(t))
    out = []
    for t in inputs[:-1]:
        out.extend(spans[int(t)] if t >= info.vocab_size - info.extra_ids else [int(t)])
    return out


def test_span_corruption_reassembles_and_uses_top_sentinels():
    density = []
    for seed in range(200):
        n = int(np.random.default_rng(seed).integers(5, 600))
        ids = _ids(n, seed)
        out = P.span_corruption(ids, P.example_rng(1, seed, 0), BIG)
        assert _reassemble(out["inputs"], out["targets"], BIG) == ids.tolist()
        assert out["inputs"][-1] == out["targets"][-1] == BIG.eos_id
        sentinels = out["inputs"][out["inputs"] >= BIG.vocab_size - BIG.extra_ids]
        k = len(sentinels)
        assert sentinels.tolist() == list(range(BIG.vocab_size - 1, BIG.vocab_size - 1 - k, -1))
        assert out["targets"][0] == BIG.vocab_size - 1  # targets start with <extra_id_0>
        density.append((len(out["targets"]) - 1 - k) / n)
    assert abs(np.mean(density) - 0.15) < 0.01


def test_span_corruption_mean_span_length():
    spans = noise = 0
    for seed in range(100):
        mask = P.noise_mask(568, np.random.default_rng(seed))
        noise += mask.sum()
        spans += (np.diff(mask.astype(int)) == 1).sum()
    assert noise / spans == pytest.approx(85 / 28)  # T5: 85 noise tokens in 28 spans


def test_same_seed_same_output_and_steps_differ():
    ids = _ids(512)
    for name in P.OBJECTIVES:
        fn = P.objective(name)
        a = fn(ids, P.example_rng(3, 10, 2), BIG)
        b = fn(ids, P.example_rng(3, 10, 2), BIG)
        c = fn(ids, P.example_rng(3, 11, 2), BIG)
        assert all(np.array_equal(a[k], b[k]) for k in a), name
        if name != "causal_lm":
            assert any(not np.array_equal(a[k], c[k]) for k in a), name


def test_too_many_spans_is_a_user_error():
    with pytest.raises(UserError, match="sentinels"):
        P.span_corruption(_ids(600), np.random.default_rng(0), SMALL)
    with pytest.raises(UserError, match="unknown objective"):
        P.objective("bogus")
