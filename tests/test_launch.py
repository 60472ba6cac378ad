"""launch/tpu.sh and launch/gpu.sh: dry-run commands are complete and survive shell quoting."""

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAIN_ARGS = ["--gin_file=models/mt5_base.gin", "--gin_file=runs/pretrain_span_mc4.gin",
              "--gin_file=hw/tpu_pod.gin", "--gin.MODEL_DIR='gs://bucket/runs/mt5 base'",
              "--gin.TRAIN_STEPS=1000", "--gin.NOTE=\"it's $HOME\""]


def _dry_run(*options):
    cmd = ["bash", str(ROOT / "launch/tpu.sh"), "--dry-run", "--name", "seqpt-run",
           "--repo", "https://example.org/seqpt_jax.git", "--ref", "v0.1.0", *options, "--", *TRAIN_ARGS]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [shlex.split(line) for line in out.strip().splitlines()]


def _remote(argv):
    """The bash command a worker runs, split as that bash would split it."""
    command = next(a for a in argv if a.startswith("--command="))[len("--command="):]
    return shlex.split(command)


@pytest.mark.parametrize("tpu_type, accel, version, zone", [
    ("v4-32", "v4-32", "tpu-ubuntu2204-base", "us-central2-b"),
    ("v5e-16", "v5litepod-16", "v2-alpha-tpuv5-lite", "us-west4-a"),
])
def test_tpu_dry_run_prints_complete_quoted_commands(tpu_type, accel, version, zone):
    create, install, train, tail, delete = _dry_run("--zone", zone, "--type", tpu_type,
                                                    "--project", "my-proj")
    prefix = ["gcloud", "compute", "tpus", "tpu-vm"]
    assert create == prefix + ["create", "seqpt-run", f"--zone={zone}", "--project=my-proj",
                               f"--accelerator-type={accel}", f"--version={version}"]
    for argv in (install, train):
        assert argv[:6] == prefix + ["ssh", "seqpt-run"] and "--worker=all" in argv
    assert "git clone https://example.org/seqpt_jax.git" in " ".join(_remote(install))
    assert "v0.1.0" in _remote(install) and ".[tpu]" in _remote(install)
    remote = _remote(train)
    start = remote.index("train") + 1
    assert remote[remote.index("train") - 2:start] == ["-m", "seqpt_jax", "train"]
    assert remote[start:start + len(TRAIN_ARGS)] == TRAIN_ARGS  # every argument arrives intact
    assert "--worker=0" in tail and "tail" in _remote(tail)
    assert delete == prefix + ["delete", "seqpt-run", f"--zone={zone}", "--project=my-proj", "--quiet"]


def test_tpu_keep_skips_delete_and_spot_is_passed():
    lines = _dry_run("--zone", "z", "--type", "v4-8", "--keep", "--spot")
    assert "--spot" in lines[0]
    assert not any("delete" in argv for argv in lines)


@pytest.mark.parametrize("args, message", [
    (["--zone", "z", "--type", "v4-8", "--", "--x"], "--name is required"),
    (["--name", "n", "--zone", "z", "--type", "v9-8", "--", "--x"], "unknown accelerator type"),
    (["--name", "n", "--zone", "z", "--type", "v4-8"], "no training arguments"),
    (["--bogus"], "unknown option"),
])
def test_tpu_bad_arguments_give_one_line_and_exit_2(args, message):
    res = subprocess.run(["bash", str(ROOT / "launch/tpu.sh"), "--dry-run", *args],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert message in res.stderr and res.stderr.count("\n") == 1


def test_gpu_help_and_missing_args():
    res = subprocess.run(["bash", str(ROOT / "launch/gpu.sh"), "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "NUM_NODES" in res.stdout
    res = subprocess.run(["bash", str(ROOT / "launch/gpu.sh")], capture_output=True, text=True)
    assert res.returncode == 2 and "no training arguments" in res.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_launch_scripts_pass_shellcheck():
    subprocess.run(["shellcheck", str(ROOT / "launch/tpu.sh"), str(ROOT / "launch/gpu.sh")], check=True)
