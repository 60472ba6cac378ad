"""seqpt_jax.experiment.savings: FLOPs-to-target, savings with/without the source, bootstrap, curve."""

import pytest

from seqpt_jax.experiment import savings


def test_flops_to_target_interpolates_the_first_crossing():
    assert savings.flops_to_target([(0, 10), (10, 6), (20, 4)], 5.0) == pytest.approx(15.0)
    # dips below, comes back up, goes below again: the first crossing counts
    assert savings.flops_to_target([(0, 10), (10, 4), (20, 6), (30, 3)], 5.0) == pytest.approx(10 * 5 / 6)
    assert savings.flops_to_target([(30, 3), (0, 10)], 5.0) == pytest.approx(30 * 5 / 7)   # order-free
    assert savings.flops_to_target([(5, 4.0), (10, 3.0)], 5.0) == 5.0                      # starts below
    assert savings.flops_to_target([(0, 10), (10, 6)], 5.0) is None
    assert savings.closest_gap([(0, 10), (10, 6), (20, 5.5)], 5.0) == pytest.approx(0.5)
    assert savings.loss_at([(0, 10), (10, 6)], 2.5) == pytest.approx(9.0)
    assert savings.loss_at([(0, 10), (10, 6)], 11) is None


SCRATCH = [[(0, 10.0), (50, 7.0), (100, 4.0)], [(0, 10.0), (50, 8.0), (100, 6.0)]]   # target 5.0


def test_arm_savings_with_and_without_source():
    arm = [[(0, 9.0), (20, 6.0), (30, 5.0), (100, 3.0)], [(0, 9.0), (50, 6.0), (100, 4.0)]]
    out = savings.arm_savings(arm, SCRATCH, [100.0, 100.0], source_flops=[10.0, 30.0], resamples=200)
    assert out["target"] == 5.0 and out["reached"] == "2/2"
    assert out["flops_to_target"] == pytest.approx([30.0, 75.0])
    assert out["flops_to_target_with_source"] == pytest.approx([40.0, 105.0])
    assert out["saving"] == pytest.approx(1 - 52.5 / 100)
    assert out["saving_with_source"] == pytest.approx(1 - 72.5 / 100)
    lo, hi = out["saving_ci"]
    assert lo is not None and hi is not None and lo <= out["saving"] <= hi
    assert out["saving_with_source_ci"][1] < hi                       # paying for the source costs


def test_an_arm_that_misses_the_target_gets_no_number():
    arm = [[(0, 9.0), (30, 5.0), (100, 3.0)], [(0, 9.0), (100, 5.25)]]
    out = savings.arm_savings(arm, SCRATCH, [100.0, 100.0], resamples=200)
    assert out["reached"] == "1/2" and out["saving"] is None and out["saving_with_source"] is None
    assert out["flops_to_target"][1] is None and out["closest_gap"][1] == pytest.approx(0.25)
    assert out["saving_ci"][0] is None                                # the miss shows in the interval


def test_bootstrap_is_deterministic_and_collapses_for_identical_seeds():
    arm = [[(0, 9.0), (40, 5.0)]] * 3
    scratch = [[(0, 10.0), (100, 5.0)]] * 3
    a = savings.bootstrap(arm, scratch, [100.0] * 3, resamples=300, seed=7)
    assert a == savings.bootstrap(arm, scratch, [100.0] * 3, resamples=300, seed=7)
    assert a == pytest.approx((0.6, 0.6))
    noisy = [[(0, 9.0), (40, 5.0)], [(0, 9.0), (60, 5.0)], [(0, 9.0), (80, 5.0)]]
    lo, hi = savings.bootstrap(noisy, scratch, [100.0] * 3, resamples=500, seed=1)
    assert 0.2 - 1e-9 <= lo < 0.4 < hi <= 0.6 + 1e-9


def test_savings_curve_is_zero_for_scratch_against_itself_and_shrinks_for_a_head_start():
    scratch = [[(0, 10.0), (25, 8.0), (50, 6.0), (75, 5.0), (100, 4.5)]]
    flat = savings.savings_curve(scratch, scratch, [25, 50, 100])
    assert [r["saving"] for r in flat] == pytest.approx([0.0, 0.0, 0.0])
    # a run that starts 20 FLOPs ahead on the same curve: saving 20 / B shrinks with B
    ahead = [[(f - 20 if f >= 20 else 0.0, l) for f, l in scratch[0] if f >= 20] + [(0.0, 8.4)]]
    rows = savings.savings_curve(ahead, scratch, [50, 100])
    assert rows[0]["saving"] == pytest.approx(20 / 50, abs=0.05) and rows[1]["saving"] == pytest.approx(0.2, abs=0.05)
    assert rows[0]["saving"] > rows[1]["saving"]
    assert savings.savings_curve(scratch, scratch, [200]) == []       # beyond the scratch run: no row
