"""Downstream score against pre-training FLOPs (experiment/downstream_curve.py): the trainer
keeps the checkpoints the curve needs (loop.train.keep_every), and the FLOPs-to-target of a
score curve follows savings.py's definitions with higher-is-better scores."""

from __future__ import annotations

import functools
import json
import os

import pytest

from seqpt_jax import models
from seqpt_jax.experiment import claims, downstream_curve as dc
from seqpt_jax.train import OptimizerConfig, checkpoints, data, loop


def test_keep_every_saves_and_keeps_each_multiple_beside_the_newest(tmp_path):
    model = models.EncoderMLM(models.preset("bert-tiny", vocab_size=101, dropout_rate=0.0, num_encoder_layers=1,
                                            d_ff=64))
    summary = loop.train(str(tmp_path), model, functools.partial(data.synthetic, objective="mlm"), steps=5,
                         batch_size=8, save_every=3, keep=1, keep_every=2, async_checkpoints=False,
                         optimizer=OptimizerConfig(learning_rate=1e-3, warmup_steps=0), progress=False,
                         log_every=1000)
    assert checkpoints.committed_steps(str(tmp_path)) == [2, 4, 5]  # 3 was the newest once, then not kept
    assert dc.flops_at(str(tmp_path), 4) == pytest.approx(summary["train_flops"] * 4 / 5)


def _done(root, arm, seed, step, flops, score):
    path = root / "downstream_curve" / arm / f"seed{seed}" / f"step{step}"
    path.mkdir(parents=True)
    (path / "DONE").write_text(json.dumps({"arm": arm, "seed": seed, "step": step, "flops": flops, "score": score}))


def test_flops_to_target_on_scores_starts_at_the_random_init_and_reads_higher_as_better(tmp_path):
    for seed, (r, m, e) in enumerate([(0.10, (0.20, 0.30), (0.30, 0.40)), (0.10, (0.25, 0.35), (0.33, 0.36))]):
        _done(tmp_path, "random_init", seed, 0, 0.0, r)
        for step, flops, score in zip((2, 4), (10.0, 20.0), m):
            _done(tmp_path, "mlm", seed, step, flops, score)
        for step, flops, score in zip((2, 4), (12.0, 24.0), e):
            _done(tmp_path, "electra", seed, step, flops, score)
    _done(tmp_path, "slow", 0, 4, 24.0, 0.29)
    _done(tmp_path, "slow", 1, 4, 24.0, 0.30)
    section = dc.build(tmp_path, {"mlm": "mlm", "electra": "mlm", "slow": "mlm"})
    assert section["arms"]["electra"]["curves"][0] == [(0.0, 0.10), (12.0, 0.30), (24.0, 0.40)]
    st = section["stats"]["electra"]
    assert st["target"] == pytest.approx(0.325) and st["reached"] == "2/2"   # the mean of mlm's 0.30, 0.35
    # paired: seed 0 reaches mlm seed 0's 0.30 at its first checkpoint; seed 1 mlm seed 1's 0.35 2/3 of the way on
    assert st["flops_to_target"] == pytest.approx([12.0, 20.0])
    assert st["saving"] == pytest.approx(((1 - 12 / 20) + (1 - 20 / 20)) / 2)
    assert st["saving_ci"] == [None, None]                              # two seeds: no interval
    assert "mlm" not in section["stats"]  # the reference is not measured against itself
    slow = section["stats"]["slow"]
    assert slow["saving"] is None and slow["reached"] == "0/2"
    assert slow["closest_gap"] == pytest.approx([0.01, 0.05])  # how far short of its seed's target, in score units
    text = "\n".join(dc.lines(section))
    assert "electra" in text and "not reached" in text
    (verdict,) = claims.downstream_curve_claims(section)
    assert verdict["holds"] is None and "target 0.325" in verdict["evidence"]   # two seeds: cannot tell
    assert dc.plot(section, tmp_path / "curve.png").is_file()
    assert os.path.getsize(tmp_path / "curve.png") > 1000


def test_an_arm_short_of_the_reference_is_judged_by_the_paired_interval(tmp_path):
    """Not reaching the reference's score "does not hold" only when the paired final-score gap
    lies below 0 across the seeds; a miss within the seeds' spread cannot be told."""
    for finals, verdict in (((0.20, 0.21, 0.19), False), ((0.297, 0.312, 0.288), None)):
        root = tmp_path / str(verdict)
        for seed, (m, e) in enumerate(zip((0.30, 0.31, 0.29), finals)):
            _done(root, "random_init", seed, 0, 0.0, 0.10)
            _done(root, "mlm", seed, 4, 20.0, m)
            _done(root, "electra", seed, 4, 24.0, e)
        (got,) = claims.downstream_curve_claims(dc.build(root, {"mlm": "mlm", "electra": "mlm"}))
        assert got["holds"] is verdict, (finals, got)
