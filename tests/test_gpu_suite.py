"""`seqpt bench gpu-suite` and `seqpt bench train --vs hf --size ...`: the GPU benchmark machinery,
run here on the CPU at a tiny size (the figures themselves come from a GPU: docs/performance.md)."""

import json

import pytest

from seqpt_jax import models
from seqpt_jax.bench import gpu_suite, vs_hf
from seqpt_jax.errors import UserError


@pytest.mark.slow  # 30 s at load 3, 90 s at load 7 (2 cores): ~12 small compiles and HF steps
def test_gpu_suite_runs_every_stage_on_cpu_at_tiny_size(tmp_path):
    pytest.importorskip("transformers")
    rc = gpu_suite.main(["--out", str(tmp_path), "--size", "tiny", "--steps", "1"])
    results = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert rc == 0 and results["errors"] == {}
    for family in ("bert", "t5"):
        row = results["attention"]["models"][family]
        assert row["cudnn"].startswith("not run: backend cpu") and row["auto_grad_rel_diff"] == 0.0
    assert results["attention"]["auto_choice"]["t5-tiny"] == {
        "encoder self-attention": "xla", "decoder self-attention (causal)": "xla", "cross-attention": "xla"}
    for dtype, tol in (("float32", 1e-5), ("bfloat16", 3e-2)):
        assert results["loss"][dtype]["loss_rel_diff"] < tol and results["loss"][dtype]["grad_rel_diff"] < tol
    bench = results["bench"]["t5-tiny"]
    assert set(bench["seqpt"]) == set(gpu_suite.VARIANTS)
    for side in bench["seqpt"].values():
        assert side["ms"] > 0 and side["jaxpr_gflop"] == pytest.approx(bench["gflop_per_step"], rel=0.01)
    md = (tmp_path / "gpu_suite.md").read_text()
    assert "## t5-tiny (vocab 512, 8 x 32 -> 8)" in md and "| seqpt, hw gin |" in md


def test_gpu_suite_rejects_unknown_stages(tmp_path):
    with pytest.raises(UserError, match="--stages 'timing' is unknown"):
        gpu_suite.main(["--out", str(tmp_path), "--stages", "attention,timing"])


@pytest.mark.parametrize("name,published", [("bert-base", "bert-base"), ("mt5-small", "mt5-small")])
def test_gpu_sizes_are_the_published_architectures_at_issue_23s_shapes(name, published):
    spec = vs_hf.CONFIGS[name]
    cfg = models.preset(spec["preset"], **spec["dims"])
    assert cfg == models.preset(published, vocab_size=spec["dims"]["vocab_size"], dropout_rate=0.0)
    shape = {"bert-base": (32000, 64, 512, 0), "mt5-small": (250112, 64, 512, 114)}[name]
    assert (cfg.vocab_size, spec["batch"], spec["inputs"], spec["targets"]) == shape
    assert spec["clip"] == 1.0


@pytest.mark.parametrize("name", ["t5-tiny", "bert-tiny"])
def test_tiny_comparison_configs_build_the_same_model_in_transformers(name):
    pytest.importorskip("transformers")
    spec = vs_hf.CONFIGS[name]
    model = models.build(spec["kind"], models.preset(spec["preset"], **spec["dims"]))
    ours = models.count_params(models.param_shapes(model))
    assert ours == sum(p.numel() for p in vs_hf.hf_model(spec, "sdpa").parameters())


def test_comparison_configs_take_the_hw_gin_and_bindings():
    """On a GPU the comparison defaults to hw/gpu.gin; any hw gin and bindings can be given."""
    cfg = vs_hf.seqpt_config("mt5-small", ["hw/gpu.gin"], ["models.preset.attention_impl = 'xla'"])
    assert (cfg.dtype, cfg.scan_unroll, cfg.attention_impl, cfg.loss_chunk) == ("bfloat16", 0, "xla", 2048)
    assert cfg.vocab_size == 250112
    cpu = vs_hf.seqpt_config("bert-base", [], [])  # this CPU: hw/cpu.gin
    assert (cpu.dtype, cpu.loss_chunk, cpu.vocab_size) == ("float32", 0, 32000)


def test_the_suite_times_seqpt_alone_where_hf_cannot_run(monkeypatch):
    """A GPU machine without a CUDA torch: `--vs hf` stops with the reason; the one-shot suite
    still times the seqpt variants and says why HF is missing."""
    monkeypatch.setattr(vs_hf, "seqpt_side", lambda spec, ids, cfg: ((lambda n: 0.01 * n), 2e9, 2e9))

    def no_cuda(*_):
        raise UserError("jax runs on a GPU but this torch has no CUDA")
    monkeypatch.setattr(vs_hf, "hf_side", no_cuda)
    with pytest.raises(UserError, match="no CUDA"):
        vs_hf.compare("t5-tiny", {"a": None}, rounds=3, steps=1, log=lambda *_: None)
    r = vs_hf.compare("t5-tiny", {"a": None, "b": None}, rounds=3, steps=1, log=lambda *_: None, require_hf=False)
    assert r["ms_hf"] is None and r["seqpt"]["b"]["ratio"] is None and r["seqpt"]["a"]["ms"] == pytest.approx(10.0)
    assert "hf: not run: jax runs on a GPU" in vs_hf.report(r)
    assert "| HF: not run" in gpu_suite.markdown({"bench": {"t5-tiny": r}})
