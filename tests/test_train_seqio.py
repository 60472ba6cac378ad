"""`seqpt train` on a user's own seqio task (MIXTURE_OR_TASK_MODULE + MIXTURE_OR_TASK_NAME) and
on the mC4 mixture (TFDS mock data): it trains, checkpoints, is SIGKILLed, resumes, and ends
with parameters bitwise equal to an uninterrupted run."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from data_fixtures import make_corpus
from seqpt_jax import params_io
from seqpt_jax.data import vocab
from test_tasks import write_user_module

TESTS = os.path.dirname(os.path.abspath(__file__))  # for lean_worker

# Runs `seqpt train` (cli.main) once per MODEL_DIRS entry, one after another in this process,
# optionally inside TFDS mock data, and SIGKILLs itself when the trainer asks to save step
# KILL_AT_SAVE (after the previous save is on disk, before this one).
RUNNER = r'''
import lean_worker  # first: see tests/lean_worker.py
import os, signal, sys
from seqpt_jax.train import checkpoints
kill_at = int(os.environ.get("KILL_AT_SAVE", "0"))
save = checkpoints.Checkpointer.save
def killing_save(self, step, *args, **kwargs):
    if step == kill_at:
        self.wait()
        os.kill(os.getpid(), signal.SIGKILL)
    return save(self, step, *args, **kwargs)
checkpoints.Checkpointer.save = killing_save
from seqpt_jax import cli
def runs():
    for model_dir in os.environ["MODEL_DIRS"].split(os.pathsep):
        print("RUN", model_dir, flush=True)
        code = cli.main(["train", *sys.argv[1:], f"--gin.MODEL_DIR={model_dir}"])
        sys.stderr.flush()
        if code:
            return code
    return 0
if os.environ.get("MOCK_TFDS"):
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=20):
        sys.exit(runs())
sys.exit(runs())
'''


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = make_corpus(tmp_path_factory.mktemp("corpus"), langs=["en", "de"])
    vocab.train(root, 400, root / "sp.model")
    return root, root / "sp.model"


def _train(tmp_path, model_dirs, args, kill_at=0, mock=False):
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    # The runs share a compilation cache, the test run's (tests/conftest.py): the later ones skip XLA's
    # compiles, the two tests here train the same model.
    env = dict(os.environ, JAX_PLATFORMS="cpu", KILL_AT_SAVE=str(kill_at), MOCK_TFDS="1" if mock else "",
               MODEL_DIRS=os.pathsep.join(map(str, model_dirs)),
               JAX_COMPILATION_CACHE_DIR=os.environ.get("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_cache")),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               PYTHONPATH=os.pathsep.join([str(tmp_path), TESTS, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=600)


def _killed_and_resumed_equals_uninterrupted(tmp_path, args, mock=False):
    run, full = tmp_path / "run", tmp_path / "full"
    killed = _train(tmp_path, [run], args, kill_at=4, mock=mock)  # dies after step 4; last save: 2
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert sorted(os.listdir(run / "checkpoints")) == ["2"]
    # A fresh process resumes the killed run, then (saving a process start) trains the
    # uninterrupted one from scratch in a new folder: nothing of the first run's reaches it.
    both = _train(tmp_path, [run, full], args, mock=mock)
    assert both.returncode == 0, both.stderr[-3000:]
    resumed, uninterrupted = both.stdout.split(f"RUN {full}\n")
    assert "resumed from step 2" in resumed and "resumed" not in uninterrupted
    _, _, a = params_io.load(str(full))
    _, _, b = params_io.load(str(run))
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))  # bitwise
    return json.loads((run / "summary.json").read_text())


def _args(model, name, lengths, extra=()):
    return ["--gin_file=models/t5_tiny.gin", "--gin_file=runs/pretrain_span.gin", "--gin_file=hw/cpu.gin",
            f"--gin.VOCAB={model}", f"--gin.MIXTURE_OR_TASK_NAME={name}", f"--gin.TASK_FEATURE_LENGTHS={lengths}",
            "--gin.TRAIN_STEPS=6", "--gin.BATCH_SIZE=8", "--gin.WARMUP_STEPS=1", "--gin.loop.train.save_every=2",
            "--gin.loop.train.eval_every=3", "--gin.loop.train.eval_batches=1", "--gin.loop.train.log_every=100",
            "--gin.loop.train.progress=False", *extra]


@pytest.mark.slow  # two processes, three `seqpt train` runs: ~75 s CPU time
def test_user_seqio_task_trains_and_resumes_bitwise(corpus, tmp_path):
    root, model = corpus
    module = write_user_module(tmp_path, root, model, "user_span_cli")
    summary = _killed_and_resumed_equals_uninterrupted(tmp_path, _args(
        model, "user_span_cli", {"inputs": 32, "targets": 12}, [f"--gin.MIXTURE_OR_TASK_MODULE={module}"]))
    assert summary["checkpoints"][-1] == 6 and np.isfinite(summary["last_loss"])


@pytest.mark.slow  # two processes, three `seqpt train` runs: ~75 s CPU time
def test_mc4_mixture_trains_and_resumes_bitwise(corpus, tmp_path):
    _, model = corpus
    summary = _killed_and_resumed_equals_uninterrupted(tmp_path, _args(
        model, "seqpt_mc4_span_corruption", {"inputs": 32, "targets": 12},
        # Synchronous saves: TFDS's mock redirects every file rename while it builds a dataset,
        # which would catch an async save finishing at that moment (a test-only hazard).
        ["--gin.data.mixture_or_task.mc4_langs=['de', 'ru']", "--gin.loop.train.async_checkpoints=False"]),
        mock=True)
    assert summary["checkpoints"][-1] == 6
