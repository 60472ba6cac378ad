"""The numpy pipeline's batches built by several processes: the same batches, in the same order,
with the same resumable position.

One Python process builds about a million tokens of MLM batches a second (per-row masking is
small numpy work), which a GPU consumes faster than that for the small models of `--scale gpu`.
Batch k is a pure function of (seed, k, taken) (feeding.py), and moving the position past a batch
costs only its row-task draw, so worker w of W builds batches w, w + W, w + 2W, ... of one
Pipeline of its own and skips the rest; the consumer takes them round-robin and keeps its own
Pipeline's position (advanced without building rows), which is what `state()` returns.

    feed = ParallelPipeline((specs, split, batch_size, lengths, seed, pack, shard), workers=4)

Workers are spawned (never forked: the parent runs JAX's threads), started at the first batch
and after every `restore`, and stopped by `close()`, when the feed is garbage-collected, or
when the consumer dies (a SIGKILLed trainer leaves no worker behind).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import weakref

from seqpt_jax.data import feeding

_POLL_S = 0.2


def _work(args: tuple, state: dict, index: int, count: int, out, stop, parent: int) -> None:
    """Builds batches index, index + count, ... after `state` into `out` until `stop`, or until
    the consumer process `parent` is gone (killed: it set nothing)."""
    try:
        pipe = feeding.Pipeline(*args)
        pipe.restore(state)
        pipe.skip(index)
        while not stop.is_set() and os.getppid() == parent:
            batch = next(pipe)
            while not stop.is_set() and os.getppid() == parent:
                try:
                    out.put(batch, timeout=_POLL_S)
                    break
                except queue.Full:
                    continue
            pipe.skip(count - 1)
    except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
        out.put(e)


def _stop(processes, stop) -> None:
    stop.set()
    for p in processes:
        p.join(timeout=2.0)
        if p.is_alive():
            p.terminate()


class ParallelPipeline:
    """A `feeding.Pipeline` (constructed from `args`) whose batches `workers` processes build."""

    def __init__(self, args: tuple, workers: int, depth: int = 2):
        self._args, self.workers, self._depth = args, int(workers), depth
        self._position = feeding.Pipeline(*args)  # validates the arguments here, and keeps the position
        self._processes: list = []
        self._finalizer = None

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        self._queues = [context.Queue(self._depth) for _ in range(self.workers)]
        state = self._position.state()
        self._processes = [context.Process(target=_work, daemon=True,
                                           args=(self._args, state, w, self.workers, q, stop, os.getpid()))
                           for w, q in enumerate(self._queues)]
        for p in self._processes:
            p.start()
        self._turn = 0
        self._finalizer = weakref.finalize(self, _stop, self._processes, stop)

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._processes = []

    def state(self) -> dict:
        return self._position.state()

    def restore(self, state: dict) -> None:
        self.close()  # the workers built batches after the old position
        self._position.restore(state)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if not self._processes:
            self._start()
        w = self._turn
        while True:
            try:
                item = self._queues[w].get(timeout=_POLL_S)
                break
            except queue.Empty:
                if not self._processes[w].is_alive():
                    raise RuntimeError(f"feed worker {w} exited (code {self._processes[w].exitcode}); "
                                       f"rerun to resume from the last checkpoint.") from None
        if isinstance(item, BaseException):
            self.close()
            raise item
        self._turn = (w + 1) % self.workers
        self._position.skip(1)
        return item
