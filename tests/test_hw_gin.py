"""Every hardware gin (gin/hw/) parses with a model and a run, and builds and runs a train step
on this CPU whose FLOPs ledger equals its jaxpr; each carries the settings it promises (the GPU
figures behind them: docs/performance.md)."""

import numpy as np
import pytest

from seqpt_jax.bench import phases as bench

TINY = ["models.preset.vocab_size = 101", "models.preset.d_model = 32", "models.preset.num_heads = 2",
        "models.preset.head_dim = 16", "models.preset.d_ff = 64", "models.preset.max_length = 32",
        "BATCH_SIZE = 8", "INPUT_LENGTH = 16", "TARGET_LENGTH = 8"]
# hw gin -> model fields it must set
PROMISES = {
    "hw/cpu.gin": {"dtype": "float32", "scan_unroll": 0, "attention_impl": "auto", "loss_chunk": 0},
    "hw/gpu.gin": {"dtype": "bfloat16", "scan_unroll": 0, "attention_impl": "auto", "loss_chunk": 2048},
    "hw/tpu_pod.gin": {"dtype": "bfloat16", "remat": "dots", "loss_chunk": 0},
}


@pytest.mark.parametrize("hw", sorted(PROMISES))
def test_hw_gin_parses_and_sets_what_it_promises(hw):
    from seqpt_jax import launcher
    config = launcher.configure(["models/t5_tiny.gin", "runs/pretrain_span.gin", hw], ["MODEL_DIR = '/unused'", *TINY],
                                optional=bench.DEFAULTS)   # the run's config, as bench and seqpt train read it
    cfg = config.model.cfg
    assert {k: getattr(cfg, k) for k in PROMISES[hw]} == PROMISES[hw]


@pytest.mark.parametrize("hw", ["hw/gpu.gin", "hw/tpu_pod.gin"])  # hw/cpu.gin: test_ledger's bench test
def test_hw_gin_builds_and_runs_a_train_step_on_cpu(hw):
    built = bench.build(["models/t5_tiny.gin", "runs/pretrain_span.gin", hw], TINY)
    assert {k: getattr(built["cfg"], k) for k in PROMISES[hw]} == PROMISES[hw]
    (row,) = built["rows"]
    np.testing.assert_allclose(row["counted"], row["jaxpr"], rtol=0.01)
    result = bench.measure(built, rounds=1, steps=1)
    assert result[0]["ms_per_step"] > 0

