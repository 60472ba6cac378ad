"""Stop requests: SIGTERM (preemption), SIGINT (Ctrl-C), and JAX's multi-host preemption notice.

The loop asks `stop.at(step)` after every step; on a request it saves a checkpoint of that
step and returns early, and `seqpt train` exits with EXIT_CODES[reason]:

    143  SIGTERM, or JAX's preemption notice (what a TPU VM or SLURM sends before eviction)
    130  SIGINT (Ctrl-C); a second Ctrl-C stops at once, keeping only the saved checkpoints

Single process: Python handlers set a flag. Several processes: JAX's preemption service
(started by `jax.distributed.initialize`) catches SIGTERM on any host and
`reached_preemption_sync_point` turns true on every host at the same step, so all hosts save
that step together; SIGINT keeps its default there (a flag on one host cannot stop the others).
"""

from __future__ import annotations

import signal
import threading

EXIT_CODES = {"SIGTERM": 143, "SIGINT": 130}


class Stopped(Exception):
    """A run that stopped on a request (its checkpoint saved) inside a larger job — an
    experiment's arm, a demo stage: the job stops too, records nothing as finished, and exits
    with EXIT_CODES[reason]; rerunning it resumes the arm."""

    def __init__(self, reason: str, step: int | None):
        super().__init__(f"stopped by {reason} after step {step}; the checkpoint is saved: rerun the same "
                         f"command to continue (exit code {EXIT_CODES[reason]}).")
        self.reason, self.step = reason, step


class StopRequests:
    """A context manager that turns SIGTERM / SIGINT into a stop at the next step boundary."""

    def __init__(self):
        self.reason: str | None = None
        self._announced = False
        self._saved: dict = {}

    def __enter__(self) -> "StopRequests":
        import jax
        self.multi = jax.process_count() > 1
        if threading.current_thread() is threading.main_thread():  # handlers only work there
            wanted = [] if self.multi else [signal.SIGTERM, signal.SIGINT]  # see the module doc
            for sig in wanted:
                if sig == signal.SIGINT and signal.getsignal(sig) is not signal.default_int_handler:
                    continue  # someone else (a notebook kernel, a test runner) owns Ctrl-C
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if name == "SIGINT" and self.reason is not None:  # pressed twice: stop now
            raise KeyboardInterrupt
        if self.reason is None:  # no printing here: the main thread may be inside print()
            self.reason = name

    def at(self, step: int) -> str | None:
        """The stop reason once every host should stop after `step`, else None."""
        if self.multi and self.reason is None:
            from jax.experimental import multihost_utils
            try:
                if multihost_utils.reached_preemption_sync_point(step):
                    self.reason = "SIGTERM"
            except RuntimeError:  # preemption service disabled
                pass
        if self.reason is not None and not self._announced:
            self._announced = True
            print(f"{self.reason} received: saving a checkpoint of step {step}"
                  + (" (Ctrl-C again to stop without saving)" if self.reason == "SIGINT" else ""), flush=True)
        return self.reason

    def __exit__(self, *exc) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()
