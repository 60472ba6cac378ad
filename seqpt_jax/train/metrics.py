"""What a run says while it trains: TensorBoard events always, a progress bar in a terminal,
plain lines otherwise. Only process 0 writes."""

from __future__ import annotations

import os
import sys
import time

import jax


class _RemoteEventFile:
    """TensorBoard's event file format written through etils epath, as MODEL_DIR's other files,
    so a gs:// logdir uses the same storage client (TensorFlow's gfile, or fsspec). Flushed at
    most every `flush_secs`, as tensorboard's writer does, and on close."""

    def __init__(self, logdir: str, flush_secs: float = 120.0):
        import socket
        from etils import epath
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.summary.writer.record_writer import RecordWriter
        path = epath.Path(logdir) / f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("wb")
        self._records, self._flush_secs, self._flushed = RecordWriter(self._file), flush_secs, time.time()
        self.add_event(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def add_event(self, event) -> None:
        self._records.write(event.SerializeToString())
        if time.time() - self._flushed > self._flush_secs:
            self.flush()

    def flush(self) -> None:
        self._file.flush()
        self._flushed = time.time()

    def close(self) -> None:
        self._file.close()


class _Events:
    """A minimal TensorBoard scalar writer (the tensorboard package, no TensorFlow import)."""

    def __init__(self, logdir: str):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        if "://" in logdir:
            self._writer = _RemoteEventFile(logdir)
            return
        os.makedirs(logdir, exist_ok=True)
        self._writer = EventFileWriter(logdir)

    def scalars(self, step: int, values: dict) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        summary = Summary(value=[Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])
        self._writer.add_event(Event(wall_time=time.time(), step=int(step), summary=summary))

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()


def _fmt(values: dict) -> str:
    parts = []
    for k, v in values.items():
        if k == "learning_rate":
            parts.append(f"lr={v:.2e}")
        elif k == "tokens_per_s":
            parts.append(f"tok/s={v:,.0f}")
        elif k == "mfu":
            parts.append(f"mfu={100 * v:.1f}%")
        elif k in ("loss", "eval_loss", "grad_norm", "accuracy", "eval_accuracy"):
            parts.append(f"{k}={v:.4f}")
    return " ".join(parts)


class RunLog:
    """`log(step, values)` to TensorBoard (train/ and eval/ tags) and the terminal."""

    def __init__(self, model_dir: str, total_steps: int, start_step: int, progress: bool | None = None):
        self.enabled = jax.process_index() == 0
        if not self.enabled:
            return
        self.events = _Events(os.path.join(model_dir, "tb"))
        tty = sys.stderr.isatty() if progress is None else progress
        self.bar = None
        if tty:
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, initial=start_step, dynamic_ncols=True, unit="step")

    def log(self, step: int, values: dict, prefix: str = "train") -> None:
        if not self.enabled:
            return
        self.events.scalars(step, {f"{prefix}/{k}": v for k, v in values.items()})
        text = _fmt(values)
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
        else:
            print(f"[{prefix}] step {step}: {text}", flush=True)

    def advance(self, n: int = 1) -> None:
        if self.enabled and self.bar is not None:
            self.bar.update(n)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.enabled:
            if self.bar is not None:
                self.bar.close()
            self.events.close()
