"""A MODEL_DIR: its layout, its ownership (an exclusive lock) and its identity (the recorded settings).

Layout: every run, however it is started (`seqpt train`, an experiment arm, `seqpt bench`, a
test), leaves the same files, described once in `LAYOUT` and written by `launcher` and `loop.run`.

Lock: MODEL_DIR/trainer.lock holds {host, pid, start} of the trainer that owns the directory.
It is created exclusively (O_EXCL; on a remote file system, which has no exclusive create,
write-then-read-back), removed when the run ends, and taken over, with a line saying so,
when it names a process on this host that is no longer running (a SIGKILL'd run). A lock
held by a live process, or by another host, stops the second trainer (exit 2).

Record: MODEL_DIR/run.json holds the settings a checkpoint and the data stream depend on
(`RECORDED`). A resume whose settings differ stops before anything is touched, naming the
fields. Everything else may change on resume (`MAY_CHANGE` documents why), e.g. more steps.

Paths go through etils epath, so a gs:// MODEL_DIR is handled by the same code as a local one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from typing import Any

from etils import epath

from seqpt_jax.errors import UserError
from seqpt_jax.paths import is_remote, remote_error, resolve  # noqa: F401 - re-exported for callers

log = logging.getLogger(__name__)
LOCK_FILE = "trainer.lock"
RECORD_FILE = "run.json"
MODEL_FILE = "model.json"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.gin"

# A run directory's layout: file -> what it holds (who writes it).
LAYOUT = {
    CONFIG_FILE: "the operative gin config: every setting the run used (launcher; again at the end)",
    RECORD_FILE: "the settings a resume must keep, `RECORDED` (loop.run, before the first step)",
    "vocab.json": "the vocabulary's path and SHA-256 (launcher, `data.vocab_record`)",
    MODEL_FILE: "{kind, config}: what `params_io` builds the model from (loop.run)",
    "checkpoints/<step>/": "train state, data position and FLOPs/tokens so far (`train.checkpoints`)",
    "tb/": "TensorBoard events: train/*, eval/* (`train.metrics`)",
    SUMMARY_FILE: "the finished run: steps, losses, tokens, FLOPs by phase, throughput (loop.run)",
    LOCK_FILE: "the owning trainer while it runs (this module)",
}

# What run.json holds: a change to any of these makes the checkpoints or the data stream another run's.
RECORDED = {
    "kind": "model kind (encoder_mlm / encoder_decoder)",
    "model": "the model config (shapes, vocabulary size, dropout, ...) and the kind's settings (electra: "
             "generator_fraction, rtd_weight)",
    "batch_size": "global batch size (the data position counts batches)",
    "seed": "init, dropout and data-order seed",
    "optimizer": "optimizer name (the optimizer state's structure)",
    "schedule": "phases: freeze patterns, unfreeze step, bert2BERT stages",
    "data": "the data stream: feature lengths and a hash of the first batch",
}
# What may differ on resume, and why it is safe.
MAY_CHANGE = {
    "steps": "train longer (the learning-rate schedule is computed for the new total)",
    "learning rate, warmup, decay, weight decay, clipping": "e.g. lower the rate after a divergence",
    "grad_accum, mesh_shape, rules, dtype, remat": "layout and numerics of the same global batch",
    "save_every, keep, keep_every, async_checkpoints, eval_every, eval_batches, log_every, progress": "cadence",
    "init": "only used when there is no checkpoint yet",
}
# Hardware settings (hw/*.gin): how the same model runs.
MODEL_FIELDS_MAY_CHANGE = ("dtype", "remat", "scan_unroll", "attention_impl", "loss_chunk")


def check_writable(model_dir: str) -> None:
    """Creates MODEL_DIR and writes a probe file, or a one-line UserError."""
    try:
        root = epath.Path(model_dir)
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{socket.gethostname()}-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        if is_remote(model_dir):
            raise remote_error(model_dir, e, "MODEL_DIR") from None
        raise UserError(f"MODEL_DIR {model_dir} is not writable ({e.strerror or e}); choose another "
                        f"--gin.MODEL_DIR.") from None
    except Exception as e:  # noqa: BLE001 - remote clients raise their own error types
        if not is_remote(model_dir):
            raise
        raise remote_error(model_dir, e, "MODEL_DIR") from None


# ---------------------------------------------------------------------------------------------
# The lock.

def _start_ticks(pid: int) -> str | None:
    """The process's start time since boot (field 22 of /proc/PID/stat), to tell a reused pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_ticks(os.getpid())}


def _alive(holder: dict) -> bool:
    """False only when the holder is a process of this host that is certainly gone."""
    if holder.get("host") != socket.gethostname():
        return True  # cannot tell from here
    pid = int(holder.get("pid", -1))
    if pid <= 0 or pid == os.getpid():  # our own pid: a previous life of a reused pid (containers)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = holder.get("start")
    return start is None or _start_ticks(pid) in (None, start)


class Lock:
    """MODEL_DIR/trainer.lock, owned by this process until `release()`."""

    def __init__(self, model_dir: str):
        self.path = epath.Path(model_dir) / LOCK_FILE
        self.mine = json.dumps(_me(), sort_keys=True)
        self.held = False

    def acquire(self) -> None:
        for _ in range(3):
            if self._create():
                self.held = True
                return
            holder = self._read()
            if holder is None:  # removed or half-written meanwhile: try again
                continue
            if _alive(holder):
                raise UserError(
                    f"MODEL_DIR {self.path.parent} is in use by another trainer (pid {holder.get('pid')} on "
                    f"{holder.get('host')}, lock {self.path}); wait for it, choose another --gin.MODEL_DIR, or "
                    f"delete the lock file if that trainer is gone.")
            log.warning("taking over the lock of process %s on %s, which is no longer running (%s)",
                        holder.get("pid"), holder.get("host"), self.path)
            print(f"MODEL_DIR lock: process {holder.get('pid')} on {holder.get('host')} is no longer "
                  f"running; taking over {self.path}", flush=True)
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        raise UserError(f"could not take the lock {self.path} (it keeps changing); is another trainer "
                        f"starting in this MODEL_DIR?")

    def _create(self) -> bool:
        if not is_remote(str(self.path)):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                f.write(self.mine)
            return True
        # Object stores have no exclusive create: write if absent, then check we won.
        if self.path.exists():
            return False
        self.path.write_text(self.mine)
        return self.path.read_text() == self.mine

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                if self.path.read_text() == self.mine:
                    self.path.unlink()
            except OSError:
                pass


def on_process_0(fn, what: str):
    """`fn()` on process 0 only; every process raises its UserError, so none waits on the others."""
    import jax
    result, error = None, None
    if jax.process_index() == 0:
        try:
            result = fn()
        except UserError as e:
            error = e
    if jax.process_count() > 1:
        import numpy as np
        from jax.experimental import multihost_utils
        failed = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
        if int(failed) and error is None:
            error = UserError(f"process 0 stopped while {what} (its log says why).")
    if error is not None:
        raise error
    return result


def write_model(model_dir: str, kind: str, cfg) -> None:
    (epath.Path(model_dir) / MODEL_FILE).write_text(
        json.dumps({"kind": kind, "config": cfg.to_dict()}, indent=2, sort_keys=True))


def write_summary(model_dir: str, summary: dict) -> None:
    (epath.Path(model_dir) / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))


def write_config(model_dir: str, operative_config: str) -> None:
    (epath.Path(model_dir) / CONFIG_FILE).write_text(operative_config)


@contextlib.contextmanager
def locked(model_dir: str):
    """MODEL_DIR locked by process 0 for the block (`acquire_lock`)."""
    lock = acquire_lock(model_dir)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def acquire_lock(model_dir: str) -> Lock | None:
    """Process 0 locks MODEL_DIR for the whole job (None on the other processes)."""
    def take():
        lock = Lock(model_dir)
        lock.acquire()
        return lock
    return on_process_0(take, f"locking MODEL_DIR {model_dir}")


# ---------------------------------------------------------------------------------------------
# The record.

def batch_signature(batch: dict, process_count: int) -> dict:
    """Feature lengths and dtypes of a (host-local) batch, and a hash of its contents."""
    import hashlib
    import numpy as np
    digest = hashlib.sha1()
    for k in sorted(batch):
        x = np.ascontiguousarray(batch[k])
        digest.update(k.encode() + str(x.dtype).encode() + str(x.shape).encode() + x.tobytes())
    return {"features": {k: [list(batch[k].shape[1:]), str(batch[k].dtype)] for k in sorted(batch)},
            "first_batch_sha1": digest.hexdigest(), "processes": process_count}


def _flat(tree: Any, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def differences(recorded: dict, requested: dict) -> list[str]:
    """'field: recorded -> requested' for each differing leaf (the data hash only when the
    host count is the same: each host hashes its own rows)."""
    a, b = _flat(json.loads(json.dumps(recorded))), _flat(json.loads(json.dumps(requested)))
    if a.get("data.processes") != b.get("data.processes"):
        for d in (a, b):
            d.pop("data.first_batch_sha1", None)
    a.pop("data.processes", None)
    b.pop("data.processes", None)
    out, lengths = [], []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            if key.startswith("data.features."):
                lengths.append(f"{key[len('data.features.'):]} {a.get(key, '<absent>')} -> {b.get(key, '<absent>')}")
            elif key != "data.first_batch_sha1":
                out.append(f"{key} {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}")
    if lengths:
        out.append("data feature shapes (" + ", ".join(lengths[:2]) + (", ..." if len(lengths) > 2 else "") + ")")
    if not out and a.get("data.first_batch_sha1") != b.get("data.first_batch_sha1"):
        out.append("data (the first batch differs: another vocabulary, mixture, corpus or masking setting)")
    return out


def check_record(model_dir: str, requested: dict, has_checkpoints: bool) -> None:
    """Writes run.json for a new run; for a resume, a UserError naming every differing field.

    A record without checkpoints beside it protects nothing, so a new config replaces it.
    Multi-host: call through `on_process_0` (the data hash is of process 0's rows).
    """
    path = epath.Path(model_dir) / RECORD_FILE
    recorded = None
    if path.exists():
        try:
            recorded = json.loads(path.read_text())
        except ValueError:
            recorded = None
    if recorded is not None and has_checkpoints:
        diffs = differences(recorded, requested)
        if diffs:
            shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
            raise UserError(f"MODEL_DIR {model_dir} holds a run with other settings ({shown}; recorded in "
                            f"{path}); restore those settings to resume it, or choose a new --gin.MODEL_DIR.")
        return
    if has_checkpoints:  # checkpoints from before run.json: recorded once they have restored (`ensure_record`)
        return
    path.write_text(json.dumps(requested, indent=2, sort_keys=True))


def ensure_record(model_dir: str, requested: dict) -> None:
    """Writes run.json when it is missing (a MODEL_DIR from before it existed, now resumed)."""
    path = epath.Path(model_dir) / RECORD_FILE
    if not path.exists():
        path.write_text(json.dumps(requested, indent=2, sort_keys=True))
