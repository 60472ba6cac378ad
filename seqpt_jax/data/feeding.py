"""Feeding: the batches the trainer consumes, with an exact resumable position.

    pipe = feeding.Pipeline([(spec, rate), ...], split, batch_size, lengths, seed=0,
                            pack=True, shard=(jax.process_index(), jax.process_count()))
    batch = next(pipe)        # dict of numpy arrays: this host's batch_size // count rows
    state = pipe.state()      # small JSON-able dict; save it with the checkpoint
    pipe.restore(state)       # the next batch is exactly the one that would have come next

The specs come from seqio tasks (`tasks.fast_specs`: the embedded corpus's tasks and
mixtures); this module knows nothing of seqio or TensorFlow. `lengths`: {"inputs": L} for encoder objectives, {"inputs":
Li, "targets": Lt} for seq2seq (for span corruption "targets" defaults to T5's helper:
512 -> 114). `batch_size` is GLOBAL; every host gets its slice of the same global batch.

Batch features (int32 unless noted; `*_segment_ids` / `*_positions` only when pack=True):
  encoder objectives (mlm, wwm, span_mlm): encoder_input_tokens, encoder_segment_ids,
      encoder_positions, and per row the first P = ceil(rate * inputs) selected positions
      (`mlm_positions`.compact): mlm_positions, mlm_targets (original ids), mlm_weights
      (float32, 0 = padding) [B, P], mlm_dropped [B] (selected positions beyond P)
  seq2seq objectives (seqio EncDecFeatureConverter names): encoder_input_tokens,
      decoder_input_tokens, decoder_target_tokens, decoder_loss_weights (float32),
      encoder/decoder_segment_ids, encoder/decoder_positions; span_corruption_masked adds
      mlm_targets, mlm_weights aligned with the encoder input

Design — why resume is exact and O(1): every source is indexable (windows of a tokenized,
in-memory corpus). Batch `step` is a pure function of
(seed, step, taken): the rows' tasks are drawn from rng(seed, step) with the mixture rates,
the k-th window a task serves is perm(seed, task, epoch)[k mod n], and each row's objective
uses rng(seed, step, global row). The state is just {step, taken per task}. Sharding picks a
host's rows of the global batch, so the data does not depend on the host count.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Callable, Sequence

import numpy as np

from seqpt_jax.data import mlm_positions, preprocessors
from seqpt_jax.data.vocab import TokenInfo
from seqpt_jax.errors import UserError

ENCODER, ENCDEC = "encoder", "encdec"
STATE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What feeding needs of a task. `source(split, raw_length, pack)` returns windows:
    an object with `__len__` and `get(i) -> (ids, segment ids)`."""

    name: str
    kind: str                      # ENCODER | ENCDEC
    source: Callable[[str, int, bool], Any]
    info: TokenInfo
    objective: str                 # a name in preprocessors.OBJECTIVES
    options: dict = dataclasses.field(default_factory=dict)


def raw_length(objective: str | None, options: dict, lengths: dict[str, int]) -> int:
    """Tokens per window so the objective's outputs fit `lengths`."""
    if objective in preprocessors.ENCODER_OBJECTIVES:
        return lengths["inputs"]
    if objective.startswith("span_corruption"):
        raw, targets = preprocessors.span_corruption_lengths(
            lengths["inputs"], options.get("noise_density", 0.15), options.get("mean_span", 3.0))
        if lengths.get("targets", targets) < targets:
            raise UserError(f"targets length {lengths['targets']} is too short for span corruption of "
                            f"{lengths['inputs']} inputs; use at least {targets}.")
        return raw
    if objective == "prefix_lm":
        return min(lengths["inputs"], lengths["targets"]) - 1
    return lengths["targets"] - 1  # causal_lm


def check_sentinels(objective: str | None, info: TokenInfo, task: str) -> None:
    """Span corruption needs the sentinel ids, which a vocabulary with its own <mask> lacks."""
    if objective and objective.startswith("span_corruption") and not info.extra_ids:
        raise UserError(f"task {task}: its vocabulary has no sentinel ids (it brings its own <mask>, as "
                        f"XLM-R's), so it cannot feed {objective}; use an encoder objective (mlm, wwm).")


def _positions(seg: np.ndarray) -> np.ndarray:
    idx = np.arange(len(seg))
    starts = np.concatenate([[True], seg[1:] != seg[:-1]])
    return (idx - np.maximum.accumulate(np.where(starts, idx, 0))).astype(np.int32)


def _shift_right(targets: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Decoder inputs: targets shifted right, 0 (the start id) at each segment's start."""
    out = np.concatenate([[0], targets[:-1]]).astype(np.int32)
    out[np.concatenate([[True], seg[1:] != seg[:-1]])] = 0
    return out


def _put(batch: dict, row: int, name: str, values: np.ndarray) -> None:
    n = min(len(values), batch[name].shape[1])
    batch[name][row, :n] = values[:n]


class Pipeline:
    """An iterator of numpy batches over a mixture of tasks; see the module docstring."""

    def __init__(self, tasks: Sequence[tuple[TaskSpec, float]], split: str, batch_size: int,
                 lengths: dict[str, int] | int, seed: int = 0, pack: bool = True,
                 shard: tuple[int, int] = (0, 1)):
        lengths = {"inputs": lengths} if isinstance(lengths, int) else dict(lengths)
        index, count = shard
        if batch_size % count:
            raise UserError(f"global batch size {batch_size} is not divisible by {count} hosts.")
        kinds = {spec.kind for spec, _ in tasks}
        if len(kinds) != 1:
            raise UserError(f"cannot mix task kinds {sorted(kinds)} in one batch; mix tasks of one kind.")
        self.kind = kinds.pop()
        for spec, _ in tasks:
            check_sentinels(spec.objective, spec.info, spec.name)
        self.pad_id = tasks[0][0].info.pad_id
        if self.kind == ENCDEC and "targets" not in lengths:
            obj = [s.objective for s, _ in tasks]
            if not all(o and o.startswith("span_corruption") for o in obj):
                raise UserError("seq2seq tasks need lengths {'inputs': Li, 'targets': Lt}.")
            lengths["targets"] = preprocessors.span_corruption_lengths(lengths["inputs"])[1]
        rates = np.array([r for _, r in tasks], np.float64)
        self.specs = [s for s, _ in tasks]
        self.rates = rates / rates.sum()
        self.lengths, self.split, self.seed, self.pack = lengths, split, int(seed), pack
        self.batch_size, self.rows = batch_size, range(index * batch_size // count,
                                                       (index + 1) * batch_size // count)
        self.sources = [s.source(split, raw_length(s.objective, s.options, lengths), pack)
                        for s in self.specs]
        self.fns = [preprocessors.objective(s.objective, **s.options) for s in self.specs]
        self.step, self.taken = 0, [0] * len(self.specs)
        self.max_predictions = max(mlm_positions.max_predictions(
            s.options.get("rate", s.options.get("mask_rate", 0.15)), lengths["inputs"]) for s in self.specs)
        self._perms: dict[int, tuple[int, np.ndarray]] = {}

    # ----- position -----------------------------------------------------------------------
    def state(self) -> dict:
        return {"version": STATE_VERSION, "seed": self.seed, "split": self.split, "step": self.step,
                "taken": {s.name: k for s, k in zip(self.specs, self.taken)}}

    def restore(self, state: dict) -> None:
        names = [s.name for s in self.specs]
        if (state.get("version") != STATE_VERSION or state.get("seed") != self.seed
                or state.get("split") != self.split or sorted(state.get("taken", {})) != sorted(names)):
            raise UserError("the saved data position belongs to a different pipeline (tasks, seed or "
                            "split differ); resume with the same data settings or start fresh.")
        self.step = int(state["step"])
        self.taken = [int(state["taken"][n]) for n in names]

    # ----- batches --------------------------------------------------------------------------
    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        choices = (np.random.default_rng([self.seed, self.step, 0xFFFFFFFF])
                   .choice(len(self.specs), self.batch_size, p=self.rates)
                   if len(self.specs) > 1 else np.zeros(self.batch_size, np.int64))
        rank = np.zeros(self.batch_size, np.int64)  # a row's place among its task's rows
        for t in range(len(self.specs)):
            rank[choices == t] = np.arange(int((choices == t).sum()))
        batch = self._empty(len(self.rows))
        for out_row, row in enumerate(self.rows):
            t = int(choices[row])
            self._fill(batch, out_row, t, self._item(t, self.taken[t] + int(rank[row])), row)
        self.taken = [k + int((choices == t).sum()) for t, k in enumerate(self.taken)]
        self.step += 1
        if "mlm_targets" in batch:  # an MLM head (also a seq2seq's encoder one) runs on the masked positions only
            batch.update(mlm_positions.compact(batch["mlm_targets"], batch["mlm_weights"],
                                               self.max_predictions))
        return batch

    def _item(self, t: int, k: int):
        source = self.sources[t]
        n = len(source)
        epoch = k // n
        if self._perms.get(t, (None,))[0] != epoch:
            key = zlib.crc32(self.specs[t].name.encode())
            self._perms[t] = (epoch, np.random.default_rng([self.seed, key, epoch]).permutation(n))
        return source.get(int(self._perms[t][1][k % n]))

    def _empty(self, rows: int) -> dict[str, np.ndarray]:
        li, lt = self.lengths["inputs"], self.lengths.get("targets", 0)
        names = {ENCODER: {"encoder_input_tokens": li, "mlm_targets": li, "mlm_weights": li},
                 ENCDEC: {"encoder_input_tokens": li, "decoder_input_tokens": lt,
                          "decoder_target_tokens": lt, "decoder_loss_weights": lt}}[self.kind]
        if self.kind == ENCDEC and any(s.objective == "span_corruption_masked" for s in self.specs):
            names.update(mlm_targets=li, mlm_weights=li)
        if self.pack:
            names.update(encoder_segment_ids=li, encoder_positions=li)
            if self.kind == ENCDEC:
                names.update(decoder_segment_ids=lt, decoder_positions=lt)
        batch = {k: np.zeros((rows, n), np.float32 if k.endswith("weights") else np.int32)
                 for k, n in names.items()}
        batch["encoder_input_tokens"][:] = self.pad_id  # the model masks pad_id (not 0 for XLM-R)
        return batch

    def _fill(self, batch: dict, out_row: int, t: int, item, row: int) -> None:
        ids, seg = item
        out = self.fns[t](ids, preprocessors.example_rng(self.seed, self.step, row), self.specs[t].info)
        if self.kind == ENCODER:
            _put(batch, out_row, "encoder_input_tokens", out["inputs"])
            _put(batch, out_row, "mlm_targets", out["targets"])
            _put(batch, out_row, "mlm_weights", out["weights"])
            enc_seg = seg
        else:  # objectives see the window as one example (as T5 does)
            inputs, targets = out["inputs"], out["targets"]
            enc_seg, dec_seg = np.ones(len(inputs), np.int32), np.ones(len(targets), np.int32)
            if "mlm_targets" in out:
                _put(batch, out_row, "mlm_targets", out["mlm_targets"])
                _put(batch, out_row, "mlm_weights", out["mlm_weights"])
            _put(batch, out_row, "encoder_input_tokens", inputs)
            _put(batch, out_row, "decoder_target_tokens", targets)
            _put(batch, out_row, "decoder_input_tokens", _shift_right(targets, dec_seg))
            _put(batch, out_row, "decoder_loss_weights", np.ones(len(targets), np.float32))
            if self.pack:
                _put(batch, out_row, "decoder_segment_ids", dec_seg)
                _put(batch, out_row, "decoder_positions", _positions(dec_seg))
        if self.pack:
            _put(batch, out_row, "encoder_segment_ids", enc_seg)
            _put(batch, out_row, "encoder_positions", _positions(enc_seg))


def make_pipeline(tasks, split: str, batch_size: int, lengths: dict[str, int] | int,
                  seed: int = 0, pack: bool = True, shard: tuple[int, int] | None = None) -> Pipeline:
    """A Pipeline over a TaskSpec or a list of (TaskSpec, rate). `shard` defaults to
    (jax.process_index(), jax.process_count())."""
    if shard is None:
        import jax
        shard = (jax.process_index(), jax.process_count())
    if isinstance(tasks, TaskSpec):
        tasks = [(tasks, 1.0)]
    return Pipeline(tasks, split, batch_size, lengths, seed, pack, shard)
