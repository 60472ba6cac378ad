"""The trainer's one data interface, and the sources gin can plug into it.

A *source factory* is any callable `(split, batch_size, seed, shard) -> source`, where a
source is an iterator of numpy dict batches (this host's rows of a global batch) with
`state() -> JSON-able` and `restore(state)`. `batch_size` is global; `shard` is
(process_index, process_count). Gin picks the factory: `train.data = @data.mixture_or_task`
(any registered seqio task or mixture) or `@data.synthetic` (deterministic random tokens for
tests).
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Protocol, Sequence

import jax
import numpy as np

from seqpt_jax.data import mlm_positions
from seqpt_jax.train import partitioning


class Source(Protocol):
    def __next__(self) -> dict: ...
    def state(self) -> Any: ...
    def restore(self, state: Any) -> None: ...


def mixture_or_task(split: str, batch_size: int, seed: int, shard: tuple[int, int], *,
                    name: str = "seqpt_local_mlm", task_feature_lengths: dict | None = None,
                    module: str | Sequence[str] | None = None, vocab_path: str | None = None,
                    corpus_dir: str | None = None, tfds_data_dir: str | None = None,
                    mc4_langs: Sequence[str] | None = None, pack: bool = True, feed_workers: int = 0,
                    batch_cache: str | None = None) -> Source:
    """Batches of the seqio task or mixture `name` (T5X's MIXTURE_OR_TASK_NAME).

    `module` (MIXTURE_OR_TASK_MODULE) is imported first so its tasks register; the project's
    own names (seqpt_local_*, seqpt_mc4_*) are registered here for `vocab_path`, `corpus_dir`
    and `tfds_data_dir`. Embedded-corpus tasks are fed by the numpy pipeline (`feeding`: O(1)
    exact resume); every other task by seqio's tf.data pipeline (`seqio_feed`: count-and-skip
    resume). With `corpus_dir` at an exported corpus (`seqpt corpus export`), the embedded-corpus
    names are fed from it by the same numpy pipeline, importing neither seqio nor TensorFlow.
    `feed_workers`: processes building the numpy pipeline's training batches (`feed_workers`:
    the same batches; 0 builds them in this process). `batch_cache`: a folder where the numpy
    pipeline's batches are stored once and read by every later run that feeds the same ones
    (`batch_cache`: the experiment runner's arms of one seed share it, their training batches and
    the held-out ones every arm evaluates on; off by default).
    """
    from seqpt_jax.data import exported, feeding, names
    lengths = dict(task_feature_lengths or {"inputs": 128})
    def numpy_feed(specs):
        args = (specs, split, batch_size, lengths, seed, pack, shard)
        from seqpt_jax.data import batch_cache as cache, feed_workers as workers
        parallel = feed_workers and split == "train"  # evaluation batches: in-process
        source = workers.ParallelPipeline(args, feed_workers) if parallel else feeding.Pipeline(*args)
        return cache.cached(source, args, batch_cache) if batch_cache else source

    if exported.is_export(corpus_dir) and name.startswith(names.LOCAL):
        return numpy_feed(exported.fast_specs(corpus_dir, name, vocab_path))
    from seqpt_jax.data import tasks
    tasks.import_module(module)
    tasks.register_project_tasks(name, vocab_path, corpus_dir, tfds_data_dir, mc4_langs)
    provider = tasks.get(name)
    specs = tasks.fast_specs(provider)
    if specs is not None:
        return numpy_feed(specs)
    from seqpt_jax.data import seqio_feed
    return seqio_feed.SeqioSource(provider, split, batch_size, lengths, seed, shard, pack)


class SyntheticSource:
    """Random-token MLM or span batches; batch k is a pure function of (seed, split, k)."""

    def __init__(self, split, batch_size, seed, shard, objective, vocab_size, length, target_length):
        index, count = shard
        self.rows = slice(index * batch_size // count, (index + 1) * batch_size // count)
        self.batch_size, self.split_id = batch_size, {"train": 0, "validation": 1}.get(split, 2)
        self.seed, self.objective, self.vocab = seed, objective, vocab_size
        self.length, self.target_length, self.k = length, target_length, 0

    def state(self):
        return {"k": self.k}

    def restore(self, state):
        self.k = int(state["k"])

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        rng = np.random.default_rng([self.seed, self.split_id, self.k])
        self.k += 1
        b, n, v = self.batch_size, self.length, self.vocab
        tokens = rng.integers(2, v, (b, n)).astype(np.int32)
        lengths = rng.integers(n // 2, n + 1, b)
        tokens[np.arange(n)[None] >= lengths[:, None]] = 0
        if self.objective == "mlm":  # predict the token itself at 15% of the positions
            weights = ((rng.random((b, n)) < 0.15) & (tokens != 0)).astype(np.float32)
            inputs = np.where(weights > 0, 1, tokens).astype(np.int32)
            batch = {"encoder_input_tokens": inputs,
                     **mlm_positions.compact(tokens, weights, mlm_positions.max_predictions(0.15, n))}
        else:  # learnable seq2seq: targets are the first target_length inputs, reversed
            t = self.target_length
            targets = tokens[:, :t][:, ::-1].copy()
            batch = {"encoder_input_tokens": tokens, "decoder_target_tokens": targets,
                     "decoder_input_tokens": np.concatenate([np.zeros((b, 1), np.int32), targets[:, :-1]], 1),
                     "decoder_loss_weights": (targets != 0).astype(np.float32)}
            if self.objective == "seq2seq_masked":  # + the encoder MLM targets (seq2seq_masked_encoder.gin)
                weights = ((rng.random((b, n)) < 0.15) & (tokens != 0)).astype(np.float32)
                batch.update(encoder_input_tokens=np.where(weights > 0, 1, tokens).astype(np.int32),
                             **mlm_positions.compact(tokens, weights, mlm_positions.max_predictions(0.15, n)))
        return {k: x[self.rows] for k, x in batch.items()}


def synthetic(split: str, batch_size: int, seed: int, shard: tuple[int, int], *, objective: str = "mlm",
              vocab_size: int = 101, length: int = 16, target_length: int = 8) -> Source:
    """Deterministic random batches (objective mlm | seq2seq | seq2seq_masked: seq2seq whose encoder
    input is also MLM-masked) for tests and benchmarks."""
    return SyntheticSource(split, batch_size, seed, shard, objective, vocab_size, length, target_length)


class Prefetcher:
    """Reads batches on a thread; `state()` is the source state after the last batch *taken*,
    so a checkpoint resumes with exactly the next batch however far the thread ran ahead."""

    def __init__(self, source: Source, depth: int = 2):
        self.source, self._state = source, source.state()
        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            while not self._stop.is_set():
                item = (next(self.source), self.source.state())
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            self._queue.put(e)

    def __next__(self) -> dict:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        batch, self._state = item
        return batch

    def state(self):
        return self._state

    def close(self):
        self._stop.set()


def to_global(local: dict, mesh) -> dict:
    """This host's rows -> global jax arrays split over data x fsdp."""
    return {k: jax.make_array_from_process_local_data(partitioning.batch_sharding(mesh, x.ndim), x)
            for k, x in local.items()}


def vocab_size(path: str) -> int:
    """Ids in a SentencePiece vocabulary with its sentinels (the model's vocab_size)."""
    from seqpt_jax.data import vocab
    sp = vocab.processor(path)
    return int(sp.get_piece_size()) + vocab.extra_ids_of(sp)


def recorded_vocab(checkpoint: str) -> str:
    """The vocabulary the checkpoint at `checkpoint` records (`data.vocab_record`: `seqpt train`
    runs, and `seqpt convert --from-hf` imports), for continuing its pre-training."""
    from seqpt_jax.data import vocab_record
    from seqpt_jax.errors import UserError
    found = vocab_record.resolve(checkpoint)
    if found is None:
        raise UserError(f"{checkpoint} records no vocabulary; pass --gin.VOCAB=SPM_MODEL, the one it was "
                        f"trained with.")
    return found
