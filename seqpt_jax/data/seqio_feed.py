"""Any seqio task or mixture as the trainer's batches: seqio's dataset + a feature converter.

    source = SeqioSource(seqio.get_mixture_or_task(name), "train", batch_size=64,
                         lengths={"inputs": 512, "targets": 114}, seed=0, shard=(0, 1))
    batch = next(source); state = source.state(); source.restore(state)

Tasks whose examples carry "weights" (an encoder objective: inputs, targets, weights) go
through `MLMFeatureConverter` -> encoder_input_tokens, mlm_targets, mlm_weights; every other
task through seqio's EncDecFeatureConverter -> the seq2seq features. Packing is on by default.

Resumable position: count and skip. The dataset is deterministic for a seed (seeded shuffle,
seeded mixture sampling, seqio's per-example seeds), so the state is just the number of
batches taken; `restore` rebuilds the pipeline and skips that many batches inside tf.data.
Its cost: resuming after N batches runs the input pipeline (read, tokenize, objective, pack)
for N batches again, without the model. (Checkpointing the tf.data iterator instead would
not work here: the objectives run as `tf.numpy_function`, which tf.data cannot save.)

Hosts: each host reads its own shard (seqio.ShardInfo) and takes batch_size / hosts rows, as
T5X does, so the data order depends on the host count; resume on the same count is exact.
"""

from __future__ import annotations

import logging
from typing import Mapping

import numpy as np

from seqpt_jax.data.tasks import Objective
from seqpt_jax.data.tf_tempfiles import delete_autograph_sources, import_tensorflow
from seqpt_jax.errors import UserError

tf = import_tensorflow()  # before seqio, which imports it
import seqio  # noqa: E402

log = logging.getLogger(__name__)
STATE_VERSION = 1


class MLMFeatureConverter(seqio.FeatureConverter):
    """inputs / targets / weights of an encoder objective -> the trainer's MLM features."""

    TASK_FEATURES = {k: seqio.FeatureConverter.FeatureSpec(dtype=tf.int32)
                     for k in ("inputs", "targets", "weights")}
    MODEL_FEATURES = {k: seqio.FeatureConverter.FeatureSpec(dtype=tf.int32)
                      for k in ("encoder_input_tokens", "mlm_targets", "mlm_weights")}
    PACKING_FEATURE_DTYPES = {"encoder_segment_ids": tf.int32, "encoder_positions": tf.int32}

    def _convert_features(self, ds, task_feature_lengths: Mapping[str, int]):
        def convert(ex):
            out = {"encoder_input_tokens": ex["inputs"], "mlm_targets": ex["targets"],
                   "mlm_weights": ex["weights"]}
            if self.pack:
                out["encoder_segment_ids"] = ex["inputs_segment_ids"]
                out["encoder_positions"] = ex["inputs_positions"]
            return out
        return self._pack_or_pad(ds, task_feature_lengths).map(convert, num_parallel_calls=tf.data.AUTOTUNE)

    def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> Mapping[str, int]:
        n = task_feature_lengths["inputs"]
        names = ["encoder_input_tokens", "mlm_targets", "mlm_weights"]
        if self.pack:
            names += ["encoder_segment_ids", "encoder_positions"]
        return dict.fromkeys(names, n)


def _converter_and_lengths(provider, lengths: dict, pack: bool):
    """(feature converter, task feature lengths) for the provider's examples."""
    if _is_encoder_task(provider):
        n = lengths["inputs"]
        return MLMFeatureConverter(pack=pack), {"inputs": n, "targets": n, "weights": n}
    if "targets" not in lengths:
        raise UserError("seq2seq tasks need TASK_FEATURE_LENGTHS with 'inputs' and 'targets', e.g. "
                        "{'inputs': 512, 'targets': 114}.")
    return seqio.EncDecFeatureConverter(pack=pack), {"inputs": lengths["inputs"], "targets": lengths["targets"]}


def _is_encoder_task(provider) -> bool:
    """True when the tasks end in an encoder objective (their examples carry "weights")."""
    leaves = provider.tasks if isinstance(provider, seqio.Mixture) else [provider]
    kinds = {any(isinstance(p, Objective) and p.encoder_only for p in t.preprocessors) for t in leaves}
    if len(kinds) > 1:
        raise UserError(f"{provider.name} mixes encoder (MLM) and seq2seq tasks; mix tasks of one kind.")
    return kinds.pop()


class SeqioSource:
    """An iterator of numpy batches (this host's rows) over a seqio task or mixture."""

    def __init__(self, provider, split: str, batch_size: int, lengths: dict, seed: int = 0,
                 shard: tuple[int, int] = (0, 1), pack: bool = True, shuffle: bool = True):
        delete_autograph_sources()  # a user task's map functions leave no files in /tmp
        index, count = shard
        if batch_size % count:
            raise UserError(f"global batch size {batch_size} is not divisible by {count} hosts.")
        if split not in provider.splits:
            raise UserError(f"{provider.name} has no {split!r} split (it has {', '.join(provider.splits)}); "
                            f"add one to the task's source, or set loop.train.eval_every=0.")
        self.provider, self.split, self.seed, self.shard = provider, split, int(seed), (index, count)
        self.rows, self.shuffle = batch_size // count, shuffle
        self.converter, self.lengths = _converter_and_lengths(provider, dict(lengths), pack)
        self.taken = 0
        self._iter = self._batches(0)

    def _batches(self, skip: int):
        kwargs = dict(sequence_length=self.lengths, split=self.split, shuffle=self.shuffle, seed=self.seed,
                      shard_info=seqio.ShardInfo(*self.shard) if self.shard[1] > 1 else None,
                      num_epochs=None, try_in_mem_cache=False)
        if isinstance(self.provider, seqio.Task):
            kwargs["trim_output_features"] = True
        ds = self.converter(self.provider.get_dataset(**kwargs), self.lengths)
        ds = ds.batch(self.rows, drop_remainder=True).skip(skip).prefetch(2)
        return ds.as_numpy_iterator()

    def state(self) -> dict:
        return {"version": STATE_VERSION, "name": self.provider.name, "split": self.split, "seed": self.seed,
                "hosts": self.shard[1], "batches": self.taken}

    def restore(self, state: dict) -> None:
        if (state.get("version") != STATE_VERSION or state.get("name") != self.provider.name
                or state.get("seed") != self.seed or state.get("split") != self.split):
            raise UserError("the saved data position belongs to a different pipeline (task, seed or split "
                            "differ); resume with the same data settings or start fresh.")
        if state.get("hosts") != self.shard[1]:
            log.warning("the data position was saved with %s hosts, now %d: each host's shard differs, so "
                        "the batches after resume are not the ones the saved run would have seen",
                        state.get("hosts"), self.shard[1])
        self.taken = int(state["batches"])
        self._iter = self._batches(self.taken)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = next(self._iter)
        self.taken += 1
        return {k: v.astype(np.float32) if k.endswith("weights") else v for k, v in batch.items()}
