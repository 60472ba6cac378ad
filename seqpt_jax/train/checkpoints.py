"""Train checkpoints (orbax): async saves, keep-N, verified restore, `restore_params`.

Layout: MODEL_DIR/checkpoints/<step>/{state, data, meta}. `state` is the TrainState (params,
optimizer state, step, RNG), `data` the data source position, `meta` the run's counters and
a fingerprint of the state. orbax writes each step into a temporary directory and renames
it when complete, so a save cut short never looks like a checkpoint. A checkpoint that
*does* look complete but fails to restore, or whose restored values do not match the
fingerprint (a truncated or rewritten file), is moved to MODEL_DIR/checkpoints.corrupt/ with a
warning and the previous one is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from seqpt_jax.errors import UserError

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
    """Saves and restores train checkpoints under `model_dir`."""

    def __init__(self, model_dir: str, keep: int = 3, async_save: bool = True):
        self.directory = os.path.join(os.path.abspath(model_dir), SUBDIR)
        self.keep = keep
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True,
                                               enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "data", "meta"))

    def save(self, step: int, state, data_state, meta: dict) -> None:
        meta = dict(meta, fingerprint=np.asarray(fingerprint(state)).tolist())
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
            meta=ocp.args.JsonSave(meta)), force=True)

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def restore_latest(self, abstract_state):
        """(state, data_state, meta) of the newest good checkpoint, or None when there is none."""
        for step in reversed(self.steps()):
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

    def _quarantine(self, step: int, error: Exception) -> None:
        bad = os.path.join(self.directory + ".corrupt", str(step))
        log.warning("checkpoint %d in %s is corrupt or incomplete (%s: %s); moved to %s, "
                    "resuming from the previous one", step, self.directory, type(error).__name__,
                    str(error).splitlines()[0][:200] if str(error) else "", bad)
        if jax.process_index() == 0:
            os.makedirs(os.path.dirname(bad), exist_ok=True)
            if os.path.exists(bad):
                shutil.rmtree(bad)
            shutil.move(os.path.join(self.directory, str(step)), bad)
        _barrier(f"quarantine-{step}")
        self.manager.reload()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


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
