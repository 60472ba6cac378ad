"""Train checkpoints (orbax): async saves, keep-N, verified restore, `restore_params`.

Layout: MODEL_DIR/checkpoints/<step>/{state, data, meta}. `state` is the TrainState (params,
optimizer state, step, RNG), `data` the data source position, `meta` the run's counters and
a fingerprint of the state. orbax writes each step into a temporary directory and renames
it when complete, so a save cut short never looks like a checkpoint. A checkpoint that
*does* look complete but fails to restore, or whose restored values do not match the
fingerprint (a truncated or rewritten file), is moved to MODEL_DIR/checkpoints.corrupt/ with a
warning and the previous one is used. A checkpoint that reads fine but has other *shapes* than
the model is not corrupt: it is another run's (a changed model config), so restore stops with
a UserError and moves nothing (run_dir's recorded config normally catches this earlier).

A save that fails for lack of space (or quota, or a read-only / unreachable file system) is a
UserError naming the step and the cause: its temporary directory is removed, so the previous
checkpoint stays the latest.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from seqpt_jax.errors import UserError
from seqpt_jax.train import run_dir

log = logging.getLogger(__name__)
SUBDIR = "checkpoints"


@jax.jit
def fingerprint(tree) -> jax.Array:
    """Per-leaf sums of |x| (float32): cheap, and changes when any stored value changes."""
    return jnp.stack([jnp.sum(jnp.abs(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)])


def _close(a, b) -> bool:  # restored on another mesh the sums may round differently
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= 1e-5 * np.abs(b) + 1e-30))


class Checkpointer:
    """Saves and restores train checkpoints under `model_dir` (a local path or a gs:// URI)."""

    def __init__(self, model_dir: str, keep: int = 3, async_save: bool = True, keep_period: int = 0):
        """keep: the newest checkpoints kept; keep_period > 0 also keeps every step that is a
        multiple of it (checkpoints to evaluate later, e.g. downstream score against FLOPs)."""
        self.directory = run_dir.resolve(os.path.join(str(model_dir), SUBDIR))
        self.keep = keep
        self._issued: list[int] = []  # saves not yet known to be committed
        self.broken = False
        _quiet_storage_errors.install()
        _quiet_teardown.install()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, keep_period=keep_period or None, create=True,
                                               cleanup_tmp_directories=True, enable_async_checkpointing=async_save)
        try:
            self.manager = ocp.CheckpointManager(
                self.directory, options=options, item_names=("state", "data", "meta"),
                item_handlers={"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler(),
                               "meta": ocp.JsonCheckpointHandler()})
        except Exception as e:  # noqa: BLE001 - remote clients raise their own types
            if run_dir.is_remote(self.directory):
                raise run_dir.remote_error(self.directory, e, "MODEL_DIR") from None
            raise

    def save(self, step: int, state, data_state, meta: dict) -> None:
        meta = dict(meta, fingerprint=np.asarray(fingerprint(state)).tolist())
        with self._failures():  # an earlier async save may fail here
            self._issued.append(step)
            self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
                meta=ocp.args.JsonSave(meta)), force=True)

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def wait(self) -> None:
        with self._failures():
            self.manager.wait_until_finished()
        self._issued = []

    def has_checkpoints(self) -> bool:
        return bool(self.steps())

    def restore_latest(self, abstract_state):
        """(state, data_state, meta) of the newest good checkpoint, or None when there is none.

        A checkpoint whose shapes are not the model's is another run's: a UserError, nothing moved."""
        for step in reversed(self.steps()):
            self._check_shapes(step, abstract_state)
            try:
                out = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore(),
                    meta=ocp.args.JsonRestore()))
                if not _close(fingerprint(out.state), out.meta["fingerprint"]):
                    raise ValueError("restored values do not match the saved fingerprint")
                return out.state, out.data, out.meta
            except Exception as e:  # noqa: BLE001 - any failure means this step is unusable
                self._quarantine(step, e)
        return None

    def _check_shapes(self, step: int, abstract_state) -> None:
        try:
            saved = self.manager.item_metadata(step)["state"]
            saved_params = _shapes(saved["params"])
        except Exception:  # noqa: BLE001 - unreadable metadata is corruption: restore() will say so
            return
        want = _shapes(abstract_state.params)
        diffs = [f"{k}: checkpoint {saved_params.get(k, 'absent')}, model {want.get(k, 'absent')}"
                 for k in sorted(set(saved_params) | set(want)) if saved_params.get(k) != want.get(k)]
        if diffs:
            raise UserError(f"checkpoint {step} in {self.directory} belongs to another model ({len(diffs)} "
                            f"parameters differ, e.g. {diffs[0]}); restore the run's model settings "
                            f"(see model.json there) or choose a new --gin.MODEL_DIR.")

    def _quarantine(self, step: int, error: Exception) -> None:
        bad = os.path.join(self.directory + ".corrupt", str(step))
        log.warning("checkpoint %d in %s is corrupt or incomplete (%s: %s); moved to %s, "
                    "resuming from the previous one", step, self.directory, type(error).__name__,
                    str(error).splitlines()[0][:200] if str(error) else "", bad)
        if jax.process_index() == 0:
            if run_dir.is_remote(self.directory):
                from etils import epath
                target = epath.Path(bad)
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():
                    target.rmtree()
                epath.Path(self.directory, str(step)).rename(target)
            else:
                os.makedirs(os.path.dirname(bad), exist_ok=True)
                if os.path.exists(bad):
                    shutil.rmtree(bad)
                shutil.move(os.path.join(self.directory, str(step)), bad)
        _barrier(f"quarantine-{step}")
        self.manager.reload()

    @contextlib.contextmanager
    def _failures(self):
        """A save that fails for want of space or access: partial files removed, a one-line UserError."""
        try:
            yield
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - classified below; anything else keeps its traceback
            cause = _storage_cause(e)
            if cause is None:
                raise
            self.broken = True
            self._remove_partial()
            good = self._finalized_steps()
            failed = [s for s in self._issued if s not in good]
            step = min(failed) if failed else "?"
            good = [s for s in good if s not in failed]
            raise UserError(f"checkpoint {step} could not be written to {self.directory} ({cause}); free "
                            f"space or fix access (or choose another --gin.MODEL_DIR), then rerun: it resumes "
                            f"from step {good[-1] if good else 0}.") from None

    def _finalized_steps(self) -> list[int]:
        try:
            return sorted(int(n) for n in _listdir(self.directory) if n.isdigit())
        except OSError:
            return []

    def _names(self) -> list[str]:
        try:
            return _listdir(self.directory)
        except OSError:
            return []

    def _remove_partial(self) -> None:
        """Temporary (uncommitted) step directories; orbax never treats them as checkpoints."""
        if jax.process_index() != 0:
            return
        for name in self._names():
            if "tmp" in name:
                try:
                    _rmtree(os.path.join(self.directory, name))
                except OSError:
                    pass

    def close(self) -> None:
        try:
            if self.broken:  # the failed save already surfaced; do not wait on it again
                try:
                    self.manager.close()
                except Exception:  # noqa: BLE001
                    pass
                for _ in range(20):  # orbax's writer threads may still be finishing their files
                    self._remove_partial()
                    time.sleep(0.1)
                    if not any("tmp" in n for n in self._names()):
                        break
                return
            with self._failures():
                self.manager.wait_until_finished()
            self.manager.close()
        finally:
            pass  # the filters stay: orbax's threads can outlive close() (and die noisily at exit)


# errno values and message fragments that mean "the storage refused", not "a bug".
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
_STORAGE_TEXT = ("No space left on device", "Disk quota exceeded", "Read-only file system",
                 "Permission denied", "RESOURCE_EXHAUSTED", "PERMISSION_DENIED")


def _storage_cause(error: BaseException) -> str | None:
    """A short cause when `error` (or anything in its chain) is the file system refusing a write."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _STORAGE_ERRNOS:
            return os.strerror(error.errno)
        text = str(error)
        for fragment in _STORAGE_TEXT:
            if fragment in text:
                return fragment
        error = error.__cause__ or error.__context__
    return None


class _QuietStorageErrors(logging.Filter):
    """Drops orbax's per-thread tracebacks for a storage refusal (dozens for one full disk; the
    Checkpointer reports it in one line) and for its threads dying at exit. Any other error is
    still logged."""

    def __init__(self):
        super().__init__()
        self.users = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        text = record.getMessage() + (str(error) if error is not None else "")
        return not ((error is not None and _storage_cause(error)) or
                    any(f in text for f in _STORAGE_TEXT + _QuietTeardown.NOISE))

    def install(self) -> None:
        self.users += 1
        if self.users == 1:
            logging.getLogger("absl").addFilter(self)


_quiet_storage_errors = _QuietStorageErrors()


class _QuietTeardown:
    """When a save fails, orbax's asyncio worker threads die one by one, each printing 'Exception
    ignored ... Event loop is closed' (hundreds of lines for one full disk). Those messages, and
    only those, are dropped once a Checkpointer has been made (its threads can outlive it)."""

    NOISE = ("Event loop is closed", "cannot schedule new futures after shutdown")

    def __init__(self):
        self.users, self.original = 0, None

    def hook(self, unraisable) -> None:
        if not (isinstance(unraisable.exc_value, RuntimeError)
                and any(n in str(unraisable.exc_value) for n in self.NOISE)):
            (self.original or sys.__unraisablehook__)(unraisable)

    def install(self) -> None:
        self.users += 1
        if self.users == 1:
            self.original, sys.unraisablehook = sys.unraisablehook, self.hook
            warnings.filterwarnings("ignore", message="coroutine .* was never awaited")


_quiet_teardown = _QuietTeardown()


def _listdir(path: str) -> list[str]:
    if run_dir.is_remote(path):
        from etils import epath
        return [p.name for p in epath.Path(path).iterdir()]
    return os.listdir(path)


def _rmtree(path: str) -> None:
    if run_dir.is_remote(path):
        from etils import epath
        epath.Path(path).rmtree()
    else:
        shutil.rmtree(path)


def _shapes(tree) -> dict:
    """{'a/b/c': shape} of a nested-dict tree of arrays or array metadata."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path): tuple(leaf.shape)
            for path, leaf in flat}


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


@contextlib.contextmanager
def quiet_orbax():
    """Restoring a finished checkpoint read-only is routine: orbax's absl notes about read-only
    managers and metadata are not for the user."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl.setLevel(level)


def restore_params(model_dir: str, step: int | None = None, shardings=None):
    """The parameter pytree of a train checkpoint (latest good step unless `step`): numpy arrays,
    or jax arrays laid out by `shardings` (a pytree like the params). Only the params are read,
    not the optimizer state. The one public loader is `params_io.load`."""
    ckpt_dir = os.path.join(os.path.abspath(model_dir), SUBDIR)
    steps = sorted(int(n) for n in (os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else []) if n.isdigit()
                   and os.path.isdir(os.path.join(ckpt_dir, n, "state")))
    if not steps or (step is not None and step not in steps):
        raise UserError(f"no checkpoint {'at step ' + str(step) if step is not None else ''} in "
                        f"{ckpt_dir}; available steps: {steps or 'none'}.")
    candidates = [step] if step is not None else list(reversed(steps))
    ckptr = ocp.PyTreeCheckpointer()
    for s in candidates:
        path = os.path.join(ckpt_dir, str(s), "state")
        try:
            with quiet_orbax():
                meta = ckptr.metadata(path)
                tree = getattr(meta, "item_metadata", meta)
                tree = getattr(tree, "tree", tree)["params"]
                # Any mesh or host count may have saved it: restore onto this host's first device.
                device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
                where = jax.tree.map(lambda _: device, tree) if shardings is None else shardings
                item = jax.tree.map(lambda m, d: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=d), tree, where)
                args = jax.tree.map(lambda d: ocp.ArrayRestoreArgs(sharding=d), where)
                out = ckptr.restore(path, args=ocp.args.PyTreeRestore(
                    item={"params": item}, restore_args={"params": args}, partial_restore=True))
            params = out["params"]
            return jax.tree.map(np.asarray, params) if shardings is None else params
        except Exception as e:  # noqa: BLE001
            if step is not None or s == candidates[-1]:
                raise UserError(f"checkpoint {s} in {ckpt_dir} cannot be read ({type(e).__name__}); "
                                f"choose another step.") from e
            log.warning("checkpoint %d in %s cannot be read; trying the previous one", s, ckpt_dir)
    raise AssertionError("unreachable")


def committed_steps(model_dir: str) -> list[int]:
    """Steps with a committed checkpoint directory, read without starting orbax (which would
    already clean up temporary directories: nothing is touched before the run's checks)."""
    try:
        return sorted(int(n) for n in _listdir(os.path.join(str(model_dir), SUBDIR)) if n.isdigit())
    except (OSError, FileNotFoundError):
        return []
