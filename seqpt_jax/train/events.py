"""TensorBoard event files written and read without TensorFlow.

tensorboard's own writer (`EventFileWriter`) imports TensorFlow whenever it is installed, which
costs seconds per process and can take GPU memory beside JAX; the format is simple enough to
write directly: TFRecords (little-endian uint64 length, its masked CRC-32C, the payload, its
masked CRC-32C) of serialized `Event` protos, the first one naming the file version. Only the
protos and the CRC come from the tensorboard package, neither of which imports TensorFlow.
A gs:// logdir goes through etils epath, as MODEL_DIR's other files do.
"""

from __future__ import annotations

import glob
import os
import socket
import struct
import time


class EventFile:
    """One `events.out.tfevents.*` file under `logdir`; flushed at most every `flush_secs` (as
    tensorboard's writer does) and on close."""

    def __init__(self, logdir: str, flush_secs: float = 120.0):
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

    def scalars(self, step: int, values: dict) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        summary = Summary(value=[Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])
        self.add_event(Event(wall_time=time.time(), step=int(step), summary=summary))

    def flush(self) -> None:
        self._file.flush()
        self._flushed = time.time()

    def close(self) -> None:
        self._file.close()


def records(path: str):
    """The payloads of one TFRecord file; a record still being written ends the file."""
    with open(path, "rb") as f:
        while True:
            header = f.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            f.read(4)  # the payload's CRC
            if len(data) < length:
                return
            yield data


def scalars(logdir: str) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} from every event file under `logdir` (later files win)."""
    from tensorboard.compat.proto.event_pb2 import Event
    out: dict[str, dict[int, float]] = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*")), key=os.path.getmtime):
        for data in records(path):
            event = Event.FromString(data)
            for v in event.summary.value:
                if v.HasField("simple_value"):
                    value = v.simple_value
                elif v.HasField("tensor") and v.tensor.float_val:
                    value = v.tensor.float_val[0]
                else:
                    continue
                out.setdefault(v.tag, {})[int(event.step)] = float(value)
    return out
