"""Two local CPU processes through `jax.distributed` (coordinator on 127.0.0.1) train on one
mesh spanning both, checkpoint, and resume."""

import json
import os
import socket
import subprocess
import sys

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))  # for lean_worker
XLA_FLAGS = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                     if not f.startswith("--xla_force_host_platform_device_count")) + \
    " --xla_force_host_platform_device_count=2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path, run, steps):
    port = _free_port()
    # `seqpt train` (cli.main) after tests/lean_worker.py
    args = [sys.executable, "-c", "import sys, lean_worker; from seqpt_jax import cli; sys.exit(cli.main(sys.argv[1:]))",
            "train", "--gin_file=models/bert_tiny.gin",
            "--gin_file=runs/pretrain_mlm.gin", "--gin_file=hw/cpu.gin", "--gin.VOCAB=unused",
            "--gin.loop.train.data=@data.synthetic", "--gin.models.preset.vocab_size=101",
            "--gin.data.synthetic.length=12", f"--gin.MODEL_DIR={run}", "--gin.BATCH_SIZE=8",
            f"--gin.TRAIN_STEPS={steps}", "--gin.loop.train.save_every=2", "--gin.loop.train.log_every=1", "--gin.loop.train.eval_every=0",
            "--gin.loop.train.mesh_shape=(2, 2, 1)", "--gin.loop.train.rules='fsdp'"]
    procs = []
    for pid in range(2):
        # conftest's cheaper XLA CPU compile, on 2 devices per process
        env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=XLA_FLAGS,
                   PYTHONPATH=os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]),
                   JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(pid),
                   JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
                   JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"))  # written by process 0, read by both
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return outs


@pytest.mark.slow  # four processes start and compile: ~70 s CPU time
def test_two_processes_train_checkpoint_and_resume(tmp_path):
    run = tmp_path / "run"
    (out0, _), (out1, _) = _launch(tmp_path, run, 4)
    assert "[train] step 4:" in out0 and "[train]" not in out1  # only process 0 logs
    assert sorted(os.listdir(run / "checkpoints")) == ["2", "4"]
    (out0, _), _ = _launch(tmp_path, run, 6)
    assert "resumed from step 4" in out0 and "[train] step 6:" in out0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["checkpoints"][-1] == 6 and summary["tokens"] > 0
    import numpy as np
    from seqpt_jax import params_io
    assert all(np.isfinite(x).all() for x in __import__("jax").tree.leaves(params_io.load(str(run))[2]))
