"""A machine with JAX but without TensorFlow, seqio or TFDS (tests/no_tensorflow hides them from
the subprocesses here): on an exported corpus `seqpt train` runs, is SIGKILLed and resumes
bitwise; `seqpt bench train` times it; `seqpt experiment run growth --scale test` runs end to end
and gives every arm's recorded numbers (tests/golden.py); `seqpt finetune` fine-tunes on an exported
task and on a user's files."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import golden
from data_fixtures import make_corpus
from seqpt_jax.data import exported
from seqpt_jax.experiment import runner
from seqpt_jax.params_io import load

TESTS = os.path.dirname(os.path.abspath(__file__))
# The CLI after tests/lean_worker.py (a fixed CPU peak instead of a torch matmul benchmark).
CLI = ("import lean_worker, sys\nfrom seqpt_jax import cli\n"
       "if __name__ == \"__main__\":  # spawned feed workers import this file too\n    sys.exit(cli.main(sys.argv[1:]))\n")
STEPS, SAVE_EVERY = 12, 2


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """The fixture corpus exported with the vocabulary `seqpt experiment run growth --scale test`
    trains on it (its vocab stage), so the growth run here gives tests/golden.py's numbers."""
    root = make_corpus(tmp_path_factory.mktemp("corpus"))
    growth = runner.Runner("growth", "test", 1, tmp_path_factory.mktemp("growth_vocab"), log=lambda _: None)
    model = growth._vocab(str(root))
    out = tmp_path_factory.mktemp("export") / "exp"
    exported.export(root, model, out, log=lambda _: None)
    return out


def _env(tmp_path):
    # The test run's compilation cache (tests/conftest.py): the growth arms are those other tests train.
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_cache"))
    return dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=cache,
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                PYTHONPATH=os.pathsep.join([os.path.join(TESTS, "no_tensorflow"), TESTS,
                                            os.environ.get("PYTHONPATH", "")]))


def _cli(tmp_path, *args, **popen):
    script = tmp_path / "cli.py"
    script.write_text(CLI)
    command = [sys.executable, str(script), *map(str, args)]
    if popen:
        return subprocess.Popen(command, env=_env(tmp_path), **popen)
    proc = subprocess.run(command, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (args[:2], proc.stdout[-1500:], proc.stderr[-3000:])
    return proc


def _train_args(export, model_dir):
    return ["train", "--gin_file=models/bert_tiny.gin", "--gin_file=runs/pretrain_mlm.gin",
            "--gin_file=hw/cpu.gin", f"--gin.MODEL_DIR='{model_dir}'", f"--gin.CORPUS_DIR='{export}'",
            f"--gin.VOCAB='{export / exported.VOCAB_FILE}'", f"--gin.TRAIN_STEPS={STEPS}", "--gin.BATCH_SIZE=8",
            "--gin.INPUT_LENGTH=32", f"--gin.loop.train.save_every={SAVE_EVERY}", "--gin.loop.train.log_every=4"]


def test_the_blocker_hides_tensorflow_seqio_and_tfds(tmp_path):
    probe = ("import importlib.util as u\n"
             "assert all(u.find_spec(m) is None for m in ('tensorflow', 'seqio', 'tensorflow_datasets'))\n"
             "try:\n    import seqio\nexcept ModuleNotFoundError:\n    print('hidden')\n")
    proc = subprocess.run([sys.executable, "-c", probe], env=_env(tmp_path), capture_output=True, text=True)
    assert proc.stdout.strip() == "hidden", proc.stderr


def _committed(model_dir):
    folder = model_dir / "checkpoints"
    return sorted(int(n) for n in os.listdir(folder) if n.isdigit()) if folder.is_dir() else []


@pytest.mark.slow  # ~135 s CPU (4 min wall at load 7): three short trainings, a benchmark, an experiment, two fine-tunes
def test_train_killed_resumes_bitwise_and_the_rest_runs_without_tensorflow(export, tmp_path):
    full = tmp_path / "full"
    _cli(tmp_path, *_train_args(export, full))

    run = tmp_path / "run"   # two feed worker processes; SIGKILL once a middle checkpoint is committed, resume
    workers = "--gin.data.mixture_or_task.feed_workers=2"
    proc = _cli(tmp_path, *_train_args(export, run), workers, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not any(s >= 4 for s in _committed(run)) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    err = proc.communicate(timeout=60)[1].decode()             # EOF: no feed worker outlived it
    assert proc.returncode == -9, err[-3000:]                  # killed mid-run, not finished
    killed_at = _committed(run)[-1]
    assert 4 <= killed_at < STEPS
    resumed = _cli(tmp_path, *_train_args(export, run), workers)
    assert f"resumed from step {killed_at}" in resumed.stdout + resumed.stderr
    for a, b in zip(jax.tree.leaves(load(str(full))[2]), jax.tree.leaves(load(str(run))[2])):
        assert np.array_equal(a, b)                             # bitwise the uninterrupted, in-process feed's run

    bench = _cli(tmp_path, "bench", "train", *[a for a in _train_args(export, tmp_path / "bench")[1:]
                                               if "TRAIN_STEPS" not in a], "--steps", "4")
    assert "tokens/s" in bench.stdout + bench.stderr

    out = tmp_path / "growth"
    _cli(tmp_path, "experiment", "run", "growth", "--scale", "test", "--corpus", export, "--out", out,
         "--no-progress")
    assert (out / "scratch" / "seed0" / "DONE").is_file() and (out / "report.json").is_file()
    assert json.loads((out / "report.json").read_text())["arms"]["fpi"]["final_val_loss"][0] > 0
    assert golden.check(out) == []                              # every arm's recorded numbers

    scratch = out / "scratch" / "seed0" / "train"   # fine-tunes: an exported task, then a user's files
    _cli(tmp_path, "finetune", "--task", "ja_ner", "--corpus", export, "--init", scratch, "--out", tmp_path / "ner",
         "--gin.Options.epochs=1", "--gin.Options.max_length=32", "--gin.Options.in_language=False")
    assert json.loads((tmp_path / "ner" / "results.json").read_text())["runs"][0]["test"]["ja"]["n"] == 50
    rows = [{"text": t, "label": lab} for t, lab in [("open the file", "ui"), ("install the package", "pkg")] * 8]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _cli(tmp_path, "finetune", "--task", "classification", "--init", scratch, "--train", tmp_path / "train.jsonl",
         "--test", tmp_path / "train.jsonl", "--vocab", export / exported.VOCAB_FILE, "--out", tmp_path / "cls",
         "--gin.Options.epochs=1")
    assert json.loads((tmp_path / "cls" / "results.json").read_text())["runs"][0]["test"]["user"]["n"] == 16
