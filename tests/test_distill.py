"""Small-model assistance (train.distill): weight 0 is plain training bit for bit, the teacher gets
no gradient and is not in the state, the step-0 loss equals a hand computation, resume across the
distill -> full boundary is exact, and `seqpt train` runs runs/assist_small.gin end to end."""

import functools
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from seqpt_jax import models, params_io
from seqpt_jax.errors import UserError
from seqpt_jax.train import data, distill, freezing, loop
from seqpt_jax.train import OptimizerConfig
from seqpt_jax.train import partitioning as P
from seqpt_jax.train import state as state_lib
from seqpt_jax.train import step as step_lib
from seqpt_jax.train.optimizers import make_optimizer

VOCAB = 101
ADAM = OptimizerConfig(learning_rate=1e-2, warmup_steps=0, decay="constant", weight_decay=0.01)


def _cfg(**kw):
    return models.preset("bert-tiny", **{**dict(vocab_size=VOCAB, d_model=32, num_heads=2, head_dim=16, d_ff=64,
                                                max_length=32, dropout_rate=0.0), **kw})


def _student():
    return models.EncoderMLM(_cfg())


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A narrower MLM model of the same vocabulary, saved as a params checkpoint."""
    model = models.EncoderMLM(_cfg(d_model=16, num_heads=1, d_ff=32))
    params = models.init(model, jax.random.key(7))
    return params_io.save_params(str(tmp_path_factory.mktemp("teacher") / "t"), "encoder_mlm", model.cfg, params)


def _train(model_dir, steps, spec=None, **kw):
    kw.setdefault("optimizer", ADAM)
    return loop.train(str(model_dir), _student(), functools.partial(data.synthetic, objective="mlm", length=16),
                      steps=steps, batch_size=8, log_every=1000, progress=False, distill=spec,
                      async_checkpoints=False, **kw)


def _params(path):
    return params_io.load(str(path))[2]


def _equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_weight_schedule_decays_to_zero_at_k():
    w = [float(distill.weight_at(t, 0.5, 4)) for t in range(6)]
    assert w == [0.5, 0.375, 0.25, 0.125, 0.0, 0.0]
    assert [float(distill.weight_at(t, 0.5, 4, "constant")) for t in (0, 3, 4)] == [0.5, 0.5, 0.0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, teacher):
    """3-step runs: plain, distillation with weight 0, distillation (k = 2) straight through."""
    root = tmp_path_factory.mktemp("runs")
    out = {"plain": _train(root / "plain", 3),
           "zero": _train(root / "zero", 3, distill.Distill(teacher, steps=3, weight=0.0)),
           "on": _train(root / "on", 3, distill.Distill(teacher, steps=2, weight=0.5))}
    return root, out


def test_weight_zero_or_no_steps_is_plain_training_bitwise(runs):
    root, out = runs
    assert not distill.Distill("t", steps=0, weight=0.5).active and not distill.Distill("t", 3, 0.0).active
    assert out["plain"]["phases"] == out["zero"]["phases"] == ["full"]
    assert out["on"]["phases"] == ["distill", "full"]
    p = _params(root / "plain")
    assert _equal(p, _params(root / "zero"))
    assert not _equal(p, _params(root / "on"))  # the KD term does change the run
    # The distill steps book the teacher's forward passes on top of the plain steps' FLOPs.
    per_step = out["plain"]["train_flops"] / 3
    assert out["on"]["flops_by_phase"]["full"] == pytest.approx(per_step)
    assert out["on"]["flops_by_phase"]["distill"] > 2 * per_step


def test_resume_inside_the_distill_phase_is_exact(tmp_path, runs, teacher):
    """Stopped after step 1 of 2 distill steps, resumed: the rest of the distill phase and the
    full phase give the straight run's params bit for bit."""
    spec = distill.Distill(teacher, steps=2, weight=0.5)

    def stop_at_1(step, state):
        if step == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, 3, spec, save_every=1, on_step=stop_at_1)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]
    summary = _train(tmp_path, 3, spec)
    assert summary["flops_by_phase"] == runs[1]["on"]["flops_by_phase"]  # resumed: booked from step 1 on
    assert _equal(_params(runs[0] / "on"), _params(tmp_path))


@pytest.fixture(scope="module")
def stepper(teacher):
    """The distill step (w = 0.3, tau = 2, k = 4) on a fresh state; call it on `_copy(state)`."""
    model = _student()
    mesh, table = P.make_mesh((-1, 1, 1)), P.rules("dp")
    shapes = models.param_shapes(model)
    shardings = P.shardings(models.logical_axes(model), shapes, table, mesh)
    tx, schedule = make_optimizer(ADAM, shapes, 100)
    state = state_lib.create(state_lib.fresh_init(model), tx, shapes, shardings, mesh, seed=0)
    spec = distill.Distill(teacher, steps=4, weight=0.3, temperature=2.0)
    with_teacher = loop.load_teacher(loop.build_teacher("encoder_mlm", model.cfg, spec), mesh, table)
    fn = step_lib.make_train_step(model, tx, schedule, freezing.all_trainable(shapes), mesh, table,
                                  teacher=with_teacher)
    batch = data.to_global(next(data.synthetic("train", 8, 0, (0, 1), length=16)), mesh)
    return model, state, fn, with_teacher, batch


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _copy(state):
    return jax.tree.map(lambda x: x.copy(), state)  # the step donates its state


def test_step0_loss_equals_a_hand_computation(stepper):
    model, state, fn, (t_model, t_params, spec), batch = stepper
    host = jax.tree.map(np.asarray, batch)
    s = np.asarray(model.apply({"params": state.params}, host), np.float64)     # [B, P, V] at masked positions
    t = np.asarray(t_model.apply({"params": t_params}, host), np.float64)
    w, y = host["mlm_weights"].astype(np.float64), host["mlm_targets"]
    ce = -np.take_along_axis(_log_softmax(s), y[..., None], -1)[..., 0]
    tau = 2.0
    kd = -tau ** 2 * (np.exp(_log_softmax(t / tau)) * _log_softmax(s / tau)).sum(-1)
    want_kd = (kd * w).sum() / w.sum()
    want = ((1 - 0.3) * (ce * w).sum() + 0.3 * (kd * w).sum()) / w.sum()
    _, metrics = fn(_copy(state), batch)
    assert float(metrics["distill_weight"]) == pytest.approx(0.3)
    np.testing.assert_allclose(float(metrics["kd_loss"]), want_kd, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["loss"]), want, rtol=1e-5)


def test_teacher_gets_no_gradient_and_is_not_in_the_state(stepper):
    """The teacher's params are an input of the step, not part of the state it returns."""
    model, state, fn, (_, t_params, _), batch = stepper
    before = jax.tree.map(np.array, t_params)
    n_state = len(jax.tree.leaves(state))
    jaxpr = fn.trace(state, batch)
    # The step's outputs are (state, metrics): nothing shaped like a teacher-only tensor comes out.
    t_shapes = {tuple(x.shape) for x in jax.tree.leaves(t_params)} - {tuple(x.shape) for x in jax.tree.leaves(state)}
    assert t_shapes and not t_shapes & {tuple(v.aval.shape) for v in jaxpr.jaxpr.outvars}
    new, _ = fn(_copy(state), batch)
    assert len(jax.tree.leaves(new)) == n_state                       # no teacher leaves, no teacher moments
    assert jax.tree.structure(new.params) == jax.tree.structure(models.param_shapes(model))
    assert _equal(before, t_params)                                   # teacher params untouched
    # (No backward pass runs for the teacher either: tests/test_ledger.py checks the distill step's
    # jaxpr FLOPs exceed the plain step's by exactly the teacher's forward pass.)


def test_bad_settings_are_one_line_errors(tmp_path, teacher):
    with pytest.raises(UserError, match="weight must be in"):
        _train(tmp_path / "a", 1, distill.Distill(teacher, steps=1, weight=1.5))
    with pytest.raises(UserError, match="not a seqpt_jax model"):
        _train(tmp_path / "b", 1, distill.Distill(str(tmp_path / "nope"), steps=1, weight=0.5))
    other = models.EncoderMLM(_cfg(vocab_size=VOCAB + 1))
    path = params_io.save_params(str(tmp_path / "other"), "encoder_mlm", other.cfg,
                                 models.init(other, jax.random.key(0)))
    with pytest.raises(UserError, match="vocabulary size"):
        _train(tmp_path / "c", 1, distill.Distill(path, steps=1, weight=0.5))


def test_seqpt_train_runs_assist_small_gin_grown_from_the_teacher(tmp_path, teacher):
    """`seqpt train` end to end: runs/assist_small.gin, the student grown (AKI) from the teacher it
    then distils from; 1 distill step + 1 plain step, the phases' FLOPs in the summary."""
    run = tmp_path / "run"
    args = ["--gin_file=models/bert_tiny.gin", "--gin_file=runs/assist_small.gin", "--gin_file=hw/cpu.gin",
            f"--gin.MODEL_DIR={run}", "--gin.VOCAB=unused", "--gin.loop.train.data=@data.synthetic",
            f"--gin.models.preset.vocab_size={VOCAB}", "--gin.models.preset.d_model=32", "--gin.loop.train.eval_every=0",
            "--gin.models.preset.num_heads=2", "--gin.models.preset.head_dim=16", "--gin.models.preset.d_ff=64",
            "--gin.models.preset.max_length=32", "--gin.BATCH_SIZE=8", "--gin.TRAIN_STEPS=2",
            f"--gin.TEACHER_CHECKPOINT={teacher}", "--gin.DISTILL_STEPS=1",
            "--gin.loop.train.init=@init_hooks.grown_from()", f"--gin.init_hooks.grown_from.path={teacher}"]
    proc = subprocess.run([sys.executable, "-m", "seqpt_jax", "train", *args], capture_output=True, text=True,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["phases"] == ["distill", "full"]
    assert summary["flops_by_phase"]["distill"] > summary["flops_by_phase"]["full"]  # + the teacher
    record = json.loads((run / "run.json").read_text())
    assert record["schedule"]["distill"]["steps"] == 1 and record["schedule"]["distill"]["teacher"] == teacher


def test_bench_phases_sees_the_distill_phase(teacher):
    from seqpt_jax.bench import phases as bench
    tiny = [f"models.preset.vocab_size = {VOCAB}", "models.preset.d_model = 32", "models.preset.num_heads = 2",
            "models.preset.head_dim = 16", "models.preset.d_ff = 64", "models.preset.max_length = 32",
            "BATCH_SIZE = 8", "INPUT_LENGTH = 16", f"TEACHER_CHECKPOINT = {teacher!r}", "DISTILL_STEPS = 5"]
    built = bench.build(["models/bert_tiny.gin", "runs/assist_small.gin", "hw/cpu.gin"], tiny)
    assert [r["phase"] for r in built["rows"]] == ["distill", "full"]
    for r in built["rows"]:
        np.testing.assert_allclose(r["counted"], r["jaxpr"], rtol=0.01, err_msg=r["phase"])
    assert built["rows"][0]["counted"] > built["rows"][1]["counted"]
