"""seqpt_jax.experiment.savings: FLOPs-to-target, savings with/without the source, t-intervals, eval noise, curve."""

import numpy as np
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


SCRATCH = [[(0, 10.0), (50, 7.0), (100, 4.0)], [(0, 10.0), (50, 8.0), (100, 6.0)]]   # targets 4.0, 6.0


def test_arm_savings_pair_seeds_with_and_without_source():
    arm = [[(0, 9.0), (20, 6.0), (30, 4.0), (100, 3.0)], [(0, 9.0), (50, 6.0), (100, 4.0)]]
    out = savings.arm_savings(arm, SCRATCH, [100.0, 100.0], source_flops=[10.0, 30.0])
    assert out["targets"] == [4.0, 6.0] and out["target"] == 5.0 and out["reached"] == "2/2"
    assert out["flops_to_target"] == pytest.approx([30.0, 50.0])
    assert out["flops_to_target_with_source"] == pytest.approx([40.0, 80.0])
    assert out["saving"] == pytest.approx(1 - 40 / 100)
    assert out["saving_with_source"] == pytest.approx(1 - 60 / 100)
    assert out["saving_ci"] == [None, None]                           # two seeds: no spread to estimate
    assert out["vacuous"] is False and out["min_effect"] is None       # no eval noise recorded


def test_an_arm_that_misses_the_target_gets_no_number():
    arm = [[(0, 9.0), (30, 4.0), (100, 3.0)], [(0, 9.0), (100, 6.25)]]
    out = savings.arm_savings(arm, SCRATCH, [100.0, 100.0])
    assert out["reached"] == "1/2" and out["saving"] is None and out["saving_with_source"] is None
    assert out["flops_to_target"][1] is None and out["closest_gap"][1] == pytest.approx(0.25)
    assert out["saving_ci"] == [None, None]


def test_one_or_two_seeds_give_no_interval_three_give_a_student_t_one():
    arm = [[(0, 9.0), (40, 5.0)], [(0, 9.0), (60, 5.0)], [(0, 9.0), (80, 5.0)]]
    scratch = [[(0, 10.0), (100, 5.0)]] * 3
    for n in (1, 2):
        assert savings.arm_savings(arm[:n], scratch[:n], [100.0] * n)["saving_ci"] == [None, None]
    out = savings.arm_savings(arm, scratch, [100.0] * 3)
    half = 4.302653 * 0.2 / 3 ** 0.5                                   # t(0.975, 2) * sd / sqrt(n)
    assert out["saving"] == pytest.approx(0.4) and out["saving_ci"] == pytest.approx([0.4 - half, 0.4 + half])


def test_an_init_arm_reaching_the_target_at_zero_flops_is_vacuous():
    out = savings.arm_savings([[(0.0, 4.0)]] * 3, [[(0, 10.0), (100, 5.0)]] * 3, [100.0] * 3,
                              source_flops=[150.0] * 3)
    assert out["saving"] == 1.0 and out["vacuous"] is True            # 100% by construction
    assert out["saving_with_source"] == pytest.approx(-0.5)


def test_a_saving_on_a_flat_curve_end_is_no_bigger_than_the_eval_noise():
    """Near the end scratch is flat: 0.016 nats reads as a 40% saving; the noise says it is none."""
    scratch = [[(0, 10.0), (50, 5.02), (100, 5.0)]] * 3
    arm = [[(0, 9.0), (50, 5.1), (60, 5.0), (100, 4.99)]] * 3
    out = savings.arm_savings(arm, scratch, [100.0] * 3, noise=0.02)
    assert out["saving"] == pytest.approx(0.4)
    assert out["loss_gap"] == pytest.approx(0.016) and out["min_effect"] is False
    assert savings.arm_savings(arm, scratch, [100.0] * 3, noise=0.005)["min_effect"] is True
    batches = [[5.0 + 0.1 * (i % 2) for i in range(64)]]
    assert savings.eval_noise(batches, [[5.0] * 64]) == pytest.approx(0.1 * (64 / 63) ** 0.5 / 2 / 8, rel=1e-6)
    assert savings.eval_noise([None], [[5.0] * 64]) is None


def test_nominal_95_percent_interval_covers_a_known_saving_at_three_seeds():
    """Simulated: each arm seed reaches its scratch seed's final loss at 100 (1 - 0.3 - e_k) FLOPs,
    e_k ~ N(0, 0.05), and the one held-out set shifts every arm curve by d ~ N(0, 0.02) nats
    (slope 0.05 nats / FLOP: 0.004 of saving); its per-batch losses (64 batches) measure that
    noise. Coverage of the true 30% over 400 draws (the percentile bootstrap it replaces: ~70%)."""
    rng = np.random.default_rng(0)
    true, slope, sigma, covered, trials = 0.3, 0.05, 0.02, 0, 400
    for _ in range(trials):
        finals = 5.0 + rng.normal(0, 0.05, 3)
        scratch = [[(0.0, 10.0), (100.0, f)] for f in finals]
        shift = rng.normal(0, sigma)
        arm = []
        for f in finals:
            at = 100 * (1 - true - rng.normal(0, 0.05))
            arm.append([(0.0, f + slope * at + shift), (100.0, f - slope * (100 - at) + shift)])
        diff = shift + rng.normal(0, sigma * 8, 64)
        noise = savings.eval_noise([list(5.0 + diff)] * 3, [[5.0] * 64] * 3)
        lo, hi = savings.arm_savings(arm, scratch, [100.0] * 3, noise=noise)["saving_ci"]
        covered += lo <= true <= hi
    assert covered / trials >= 0.90, covered / trials


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
