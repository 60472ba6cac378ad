"""`seqpt train` from gin files: composition, the operative config, and one-line errors (exit 2)."""

import json
import os
import subprocess
import sys

import pytest

from seqpt_jax.commands import train as train_cmd
from seqpt_jax.errors import UserError

BASE = ["--gin_file=models/bert_tiny.gin", "--gin_file=runs/pretrain_mlm.gin", "--gin_file=hw/cpu.gin",
        "--gin.VOCAB=unused", "--gin.loop.train.data=@data.synthetic", "--gin.models.preset.vocab_size=101",
        "--gin.BATCH_SIZE=8"]


def _seqpt(*args, env_extra=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "seqpt_jax", "train", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def _error_lines(proc):
    return [l for l in proc.stderr.splitlines() if l.startswith("seqpt train: error:")]


@pytest.mark.parametrize("args,match", [
    (["--gin_file=runs/nope.gin"], "gin file 'runs/nope.gin' not found"),
    (BASE + ["--gin.MODEL_DIR=/tmp/x", "--gin.loop.train.bogus=3"], "bogus"),
    (BASE + ["--gin.MODEL_DIR=/tmp/x", "--gin.nothere.x=1"], "nothere"),
    (BASE, "MODEL_DIR"),  # %gin.REQUIRED not given
])
def test_gin_mistakes_exit_2_with_one_line(args, match):
    proc = _seqpt(*args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = _error_lines(proc)
    assert len(lines) == 1 and match in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_unwritable_model_dir_exits_2(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    proc = _seqpt(*BASE, f"--gin.MODEL_DIR={blocker}/run", "--gin.TRAIN_STEPS=1")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = _error_lines(proc)
    assert len(lines) == 1 and "not writable" in lines[0]


def test_train_command_writes_everything(tmp_path):
    run = tmp_path / "run"
    proc = _seqpt(*BASE, f"--gin.MODEL_DIR={run}", "--gin.TRAIN_STEPS=2", "--gin.loop.train.save_every=2",
                  "--gin.loop.train.eval_every=2", "--gin.loop.train.log_every=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(run)) == ["checkpoints", "config.gin", "model.json", "run.json", "summary.json", "tb"]
    assert "loop.train.steps = 2" in (run / "config.gin").read_text() or "TRAIN_STEPS = 2" in (run / "config.gin").read_text()
    assert os.listdir(run / "tb") and os.listdir(run / "checkpoints") == ["2"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_flops"] > 0 and summary["tokens"] > 0
    assert "[train] step 2:" in proc.stdout and "[eval] step 2:" in proc.stdout


def test_gin_value_quoting_and_args():
    rest, bindings = train_cmd.split_gin_args(["--gin.MODEL_DIR=/tmp/a b", "--gin.X", "3", "--gin_file=f.gin",
                                               "--gin.R=@data.synthetic", "--gin.S='q'"])
    assert rest == ["--gin_file=f.gin"]
    assert bindings == ["MODEL_DIR = '/tmp/a b'", "X = 3", "R = @data.synthetic", "S = 'q'"]
    with pytest.raises(UserError, match="has no value"):
        train_cmd.split_gin_args(["--gin.X"])
