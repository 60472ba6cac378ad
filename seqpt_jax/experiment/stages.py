"""Resumable stages: each stage runs once, in its own directory, and leaves a DONE marker.

    runner = StageRunner(out_dir, log=print)
    result = runner.run("vocab", lambda work: {"path": ...})   # skipped when out/vocab/DONE exists

A stage function gets its work directory `out/<name>/` and returns a JSON-able dict. The
runner writes that dict, with the stage's wall and CPU seconds, to `out/<name>/DONE` through a
temporary file and a rename, so the marker appears only after everything the stage wrote
before returning. A rerun reads the marker instead of running the stage. A stage killed
mid-way has no marker: its work directory is kept, so a stage that checkpoints (the trainer's
MODEL_DIR) resumes there, and any other stage simply starts over.

Several processes may share one `out` (`seqpt experiment run --shard`): a stage runs under an
exclusive lock on out/.locks/<stage>.lock, so a process that reaches a stage another one is
running waits for it and reads its marker instead of running it twice. The kernel drops the lock
of a killed process, and the next one resumes the stage.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
import time
from pathlib import Path
from typing import Callable

MARKER = "DONE"
LOCKS = ".locks"  # out/.locks/<stage>.lock: held by the one process running that stage


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def write_json_atomic(path: Path, data) -> None:
    """Writes JSON to `path` through a temporary sibling and a rename (never half-written)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # processes sharing `out` never share one
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_figure_atomic(fig, path: Path, dpi: int = 100) -> Path:
    """Saves a matplotlib figure through a temporary sibling and a rename, then closes it."""
    import matplotlib.pyplot as plt
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)
    return path


class StageRunner:
    """Runs named stages under `out`, skipping those already marked DONE."""

    def __init__(self, out: str | os.PathLike, log: Callable[[str], None] = print, total: int | None = None):
        self.out = Path(out).expanduser()
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.total = total
        self.count = 0
        self.ran: list[str] = []      # stages run (not skipped) by this runner
        self.results: dict[str, dict] = {}

    def marker(self, name: str) -> Path:
        return self.out / name / MARKER

    def done(self, name: str) -> bool:
        return self.marker(name).is_file()

    @contextlib.contextmanager
    def _exclusive(self, name: str, tag: str):
        """Holds the stage's lock; waits (and says so) while another process holds it."""
        path = self.out / LOCKS / f"{name.replace('/', '__')}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.log(f"{tag} {name}: another process is running it; waiting for it")
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def run(self, name: str, fn: Callable[[Path], dict], what: str = "") -> dict:
        """The stage's result: read from its marker, or computed by `fn(work_dir)` and marked."""
        self.count += 1
        tag = f"[{self.count}/{self.total}]" if self.total else f"[{self.count}]"
        if self.done(name):
            result = json.loads(self.marker(name).read_text("utf-8"))
            self.log(f"{tag} {name}: done already, skipped ({self.marker(name)})")
        else:
            with self._exclusive(name, tag):
                result = self._run_locked(name, fn, what, tag)
        self.results[name] = result
        return result

    def _run_locked(self, name: str, fn: Callable[[Path], dict], what: str, tag: str) -> dict:
        if self.done(name):  # another process finished it while this one waited
            self.log(f"{tag} {name}: done by another process ({self.marker(name)})")
            return json.loads(self.marker(name).read_text("utf-8"))
        work = self.out / name
        resumed = work.is_dir() and any(work.iterdir())
        work.mkdir(parents=True, exist_ok=True)
        self.log(f"{tag} {name}: {what or 'running'}" + (" (resuming)" if resumed else ""))
        wall, cpu = time.time(), cpu_seconds()
        result = dict(fn(work))
        result["wall_s"] = round(time.time() - wall, 2)
        result["cpu_s"] = round(cpu_seconds() - cpu, 2)
        write_json_atomic(self.marker(name), result)
        self.ran.append(name)
        self.log(f"{tag} {name}: finished in {result['wall_s']:.0f} s wall, "
                 f"{result['cpu_s']:.0f} s CPU")
        return result
