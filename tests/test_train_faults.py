"""Fault injection: one run killed with SIGKILL at 5 moments drawn at random (between saves,
while an async save is writing, between a save's write and its commit) and stopped with SIGTERM
at 3 more. After every interruption the latest checkpoint directory is complete, and the run
finally ends bitwise equal to an uninterrupted one."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from seqpt_jax.params_io import load


def load_params(path, step=None):
    return load(path, step=step)[2]

STEPS, SAVE_EVERY = 40, 4

TESTS = os.path.dirname(os.path.abspath(__file__))  # for lean_worker

WORKER = r'''
import lean_worker  # first: see tests/lean_worker.py
import functools, json, os, signal, sys, threading
from seqpt_jax import models
from seqpt_jax.train import data, loop, OptimizerConfig

model_dir, kind, at = sys.argv[1], sys.argv[2], int(sys.argv[3])

if kind == "commit":  # SIGKILL after step `at`'s files are written, before the rename that commits them
    from orbax.checkpoint._src.path import atomicity
    finalize = atomicity.AtomicRenameTemporaryPath.finalize
    async def killing_finalize(self):
        if self._final_path.name == str(at):
            os.kill(os.getpid(), signal.SIGKILL)
        return await finalize(self)
    atomicity.AtomicRenameTemporaryPath.finalize = killing_finalize

def on_step(step, state):
    if step != at:
        return
    if kind in ("kill", "in_save"):  # in_save: `at` is a save step, its async save is in flight
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "term":
        os.kill(os.getpid(), signal.SIGTERM)
    elif kind == "term_later":  # arrives from another thread while the next step runs
        threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGTERM)).start()

model = models.EncoderMLM(models.preset("bert-tiny", vocab_size=101, d_ff=128))  # dropout 0.1 on
summary = loop.train(model_dir, model, functools.partial(data.synthetic, objective="mlm", length=12),
                     steps=%d, batch_size=8, save_every=%d, keep=2, progress=False, log_every=100,
                     on_step=on_step, optimizer=OptimizerConfig(learning_rate=3e-3, warmup_steps=2))
print("SUMMARY", json.dumps({"stopped": summary.get("stopped"), "stopped_at": summary.get("stopped_at")}))
sys.exit(143 if summary.get("stopped") else 0)
''' % (STEPS, SAVE_EVERY)


def _worker(tmp_path, model_dir, kind="none", at=0):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(script), str(model_dir), kind, str(at)], env=env,
                          capture_output=True, text=True, timeout=300)


def _plan(rng) -> list[tuple[str, int]]:
    """8 interruptions at increasing steps, in random order and at random steps: 5 SIGKILL (2
    between saves, 2 inside an async save, 1 between write and commit) and 3 SIGTERM (2 at a
    step's end, 1 from another thread while a step runs)."""
    kinds = ["kill", "kill", "in_save", "in_save", "commit", "term", "term", "term_later"]
    rng.shuffle(kinds)
    plan, lower = [], 1
    for i, kind in enumerate(kinds):
        upper = STEPS - 4 - (len(kinds) - i - 1) * 4  # room for the moments still to come
        choices = [s for s in range(lower, upper + 1) if kind not in ("in_save", "commit") or s % SAVE_EVERY == 0]
        step = int(rng.choice(choices))
        plan.append((kind, step))
        lower = step + (4 if kind.startswith("term") else 1)  # a SIGTERM stops a step or two later
    return plan


@pytest.mark.slow  # ten short runs: ~65 s CPU time
def test_sigkill_and_sigterm_at_random_moments_resume_bitwise(tmp_path):
    full = _worker(tmp_path, tmp_path / "full")
    assert full.returncode == 0, full.stderr[-2000:]

    run, log = tmp_path / "run", []
    plan = _plan(np.random.default_rng(14))
    for kind, at in plan:
        proc = _worker(tmp_path, run, kind, at)
        term = kind.startswith("term")
        assert proc.returncode == (143 if term else -9), (kind, at, proc.stderr[-2000:])
        committed = sorted(int(n) for n in os.listdir(run / "checkpoints") if n.isdigit())
        if term:
            stopped_at = json.loads(proc.stdout.split("SUMMARY ", 1)[1])["stopped_at"]
            assert at < stopped_at <= at + 3 and committed[-1] == stopped_at, (kind, at, stopped_at, committed)
        if kind == "commit":
            assert at not in committed and any(f"{at}.orbax-checkpoint-tmp" in n
                                               for n in os.listdir(run / "checkpoints")), (at, committed)
        # The latest committed directory is a whole checkpoint: it restores without any fallback.
        if committed:  # (none yet when the very first save was cut short)
            params = load_params(str(run), step=committed[-1])
            assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))
        log.append((kind, at, committed[-1] if committed else None))
    last = _worker(tmp_path, run)
    assert last.returncode == 0, last.stderr[-2000:]
    assert "resumed from step" in last.stdout

    a, b = load_params(str(tmp_path / "full")), load_params(str(run))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.array_equal(x, y), log  # bitwise
    print("interruptions (kind, step, latest checkpoint after it):", log)
