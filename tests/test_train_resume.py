"""Exact resume: runs killed with SIGKILL (once between saves, once while an async save is in
flight) and resumed end with parameters bitwise equal to an uninterrupted run."""

import json
import os
import subprocess
import sys

import jax
import numpy as np

from seqpt_jax import params_io

TESTS = os.path.dirname(os.path.abspath(__file__))  # for lean_worker

WORKER = r'''
import lean_worker  # first: see tests/lean_worker.py
import functools, json, os, signal, sys, time
from seqpt_jax import models
from seqpt_jax.train import data, loop, OptimizerConfig

model_dirs, kill_at, wait_for = sys.argv[1].split(os.pathsep), int(sys.argv[2]), sys.argv[3]

def on_step(step, state):
    if step == kill_at:
        ckpt_dir = os.path.join(model_dir, "checkpoints")
        for _ in range(600):  # optionally let an earlier async save finish first
            if wait_for == "-" or os.path.exists(os.path.join(ckpt_dir, wait_for)):
                break
            time.sleep(0.05)
        in_flight = [n for n in os.listdir(ckpt_dir) if "tmp" in n]
        with open(os.path.join(model_dir, "killed.json"), "w") as f:
            json.dump({"step": step, "in_flight": in_flight}, f)
        os.kill(os.getpid(), signal.SIGKILL)

model = models.EncoderMLM(models.preset("bert-tiny", vocab_size=101, d_ff=128))  # dropout 0.1 on
for model_dir in model_dirs:  # one after another in this process
    print("RUN", model_dir, flush=True)
    loop.train(model_dir, model, functools.partial(data.synthetic, objective="mlm", length=12), steps=8,
               batch_size=8, save_every=2, keep=2, progress=False, log_every=100, on_step=on_step,
               optimizer=OptimizerConfig(learning_rate=3e-3, warmup_steps=2))
'''


def _worker(tmp_path, model_dirs, kill_at, wait_for="-"):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(script), os.pathsep.join(map(str, model_dirs)), str(kill_at), wait_for],
                          env=env, capture_output=True, text=True, timeout=300)


def test_sigkill_and_resume_is_bitwise_exact(tmp_path):
    run, full = tmp_path / "killed", tmp_path / "full"
    first = _worker(tmp_path, [run], 3, wait_for="2")  # between saves: resumes from step 2
    assert first.returncode == -9, first.stderr[-2000:]
    assert json.loads((run / "killed.json").read_text())["step"] == 3
    second = _worker(tmp_path, [run], 6)  # right after the step-6 save was issued
    assert second.returncode == -9, second.stderr[-2000:]
    assert "resumed from step 2" in second.stdout
    killed = json.loads((run / "killed.json").read_text())
    assert killed["in_flight"], "the step-6 async save should still be writing when killed"
    # A fresh process resumes the run to its end, then (saving a process start) trains the
    # uninterrupted one from scratch in a new folder: nothing of the first run's reaches it.
    last = _worker(tmp_path, [run, full], 0)
    assert last.returncode == 0, last.stderr[-2000:]
    resumed, uninterrupted = last.stdout.split(f"RUN {full}\n")
    assert "resumed from step" in resumed and "resumed" not in uninterrupted

    a, b = params_io.load(str(full))[2], params_io.load(str(run))[2]
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.array_equal(x, y)  # bitwise
    assert json.loads((run / "summary.json").read_text())["checkpoints"] == [6, 8]
