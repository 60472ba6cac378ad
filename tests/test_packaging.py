"""A non-editable install carries the gin files: `pip install --no-deps .` into a fresh venv, then
from another directory `seqpt train`'s gin lookup finds models/, runs/ and hw/ inside the package."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = r'''
import os, sys
from seqpt_jax.commands import train
import seqpt_jax
assert "site-packages" in seqpt_jax.__file__, seqpt_jax.__file__
train.parse_gin(["models/bert_tiny.gin", "runs/pretrain_mlm.gin", "hw/cpu.gin"],
                ["MODEL_DIR = '/tmp/x'", "VOCAB = 'v'"], [train.GIN_DIR])
train.parse_gin(["models/mt5_base.gin", "runs/pretrain_span_mc4.gin", "hw/tpu_pod.gin"],
                ["MODEL_DIR = '/tmp/x'", "VOCAB = 'v'", "TFDS_DATA_DIR = 'gs://b'"], [train.GIN_DIR])
print(sorted(os.listdir(os.path.join(train.GIN_DIR, "runs"))))
'''


def test_non_editable_install_ships_the_gin_files(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    build = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    build.mkdir()
    subprocess.run(["cp", "-r", str(ROOT / "seqpt_jax"), str(ROOT / "setup.py"), str(ROOT / "pyproject.toml"),
                    str(ROOT / "README.md"), str(ROOT / "LICENSE"), str(build)], check=True)
    res = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(build)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = subprocess.run([str(python), "-c", CHECK], cwd=elsewhere, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "pretrain_span_mc4.gin" in res.stdout and "pretrain_mlm.gin" in res.stdout
