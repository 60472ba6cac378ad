"""Fine-tuning one model on one split, and predicting with it.

The downstream model takes its shared subtree (embeddings + encoder, or the whole seq2seq
model) from a pre-trained checkpoint and starts its head fresh (`mappings.transfer.take`).
Training is a small jitted loop on one device with the trainer's parts: AdamW with linear
warmup and decay from `train.optimizers`, the loss from `train.losses`. A fine-tuned model is
saved in the one checkpoint format (`params_io`), its task and labels in model.json.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from seqpt_jax import models, params_io
from seqpt_jax.errors import UserError
from seqpt_jax.evaluate import decoding
from seqpt_jax.mappings import transfer as transfer_lib
from seqpt_jax.train.losses import cross_entropy
from seqpt_jax.train.optimizers import OptimizerConfig, make_optimizer

# The subtrees an EncoderMLM, EncoderDecoder and the classifiers share (DESIGN.md §2).
SHARED = ("token_embedder", "position_embedder", "token_type_embedder", "embedding_norm", "encoder")


@dataclasses.dataclass(frozen=True)
class Options:
    """Fine-tuning and decoding settings (bound from gin files by `seqpt finetune`).

    The defaults follow BERT's fine-tuning recipe (Devlin et al. 2019, appendix A.3: batch 16 or
    32, 2-4 epochs, Adam lr 2e-5..5e-5 for BERT-base): AdamW, 10% linear warmup then linear decay,
    batch 32, 3 epochs. The rate is 1e-4 because the project pre-trains small models, which take
    larger rates (the google-research/bert grid for its small BERTs runs 3e-5..3e-4); sweep it
    for a model of BERT-base size or larger. When the training language has a
    validation split, it is scored after every epoch and the model of the best epoch is kept
    (XTREME selects on the English dev set); `patience` stops after that many epochs without a gain.
    Everything random (head init, dropout, batch order) comes from `seed`: same seed, same numbers
    (also where several seeds train together: `train_replicas`, `protocol.run_seeds`).
    """

    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    epochs: float = 3.0
    batch_size: int = 32
    select_on_validation: bool = True  # keep the epoch with the best validation score
    patience: int = 0  # stop after this many epochs without a validation gain; 0: run every epoch
    max_train: int = 0  # use the first N training examples; 0: all
    max_eval: int = 0  # use the first N examples of each validation/test split; 0: all
    max_length: int = 128  # encoder tokens; longer inputs are cut and counted
    target_length: int = 64  # generation targets and decoding length
    beam_size: int = 1  # 1 = greedy
    length_alpha: float = 0.6
    dropout_rate: float | None = None  # None: the checkpoint's own
    seed: int = 0
    in_language: bool = True  # also fine-tune on each other language that has training data
    spaced_words: bool = True  # tagging: False for words written without spaces (Task.spaced)
    progress: bool | None = None  # a progress bar; None: only when writing to a terminal


def build_model(kind: str, cfg: models.TransformerConfig, num_labels: int):
    if kind == "classification":
        return models.SequenceClassifier(cfg, num_labels)
    if kind == "tagging":
        return models.TokenClassifier(cfg, num_labels)
    return models.EncoderDecoder(cfg)


def transfer(init_kind: str, init_params: dict, fresh: dict) -> dict:
    """`fresh` with every subtree it shares with the checkpoint replaced by the checkpoint's.

    A seq2seq target takes all of a seq2seq checkpoint, or embeddings + encoder of an encoder
    checkpoint (the decoder then starts fresh: the warm start of Soltan et al.).
    """
    if "encoder" not in init_params:
        hint = ("; extract its discriminator first: seqpt extract --electra MODEL_DIR --out DIR"
                if init_kind == "electra" else "")
        raise UserError(f"checkpoint of kind {init_kind!r} has no encoder to fine-tune{hint}.")
    shared = tuple(fresh) if init_kind == "encoder_decoder" and "decoder" in fresh else SHARED
    keys = [k for k in shared if k in fresh and k in init_params]
    return transfer_lib.take(fresh, init_params, keys, what="the pre-trained checkpoint")


def loss_fn(kind: str):
    """(logits, batch) -> LossSums for the task kind."""
    if kind == "classification":
        return lambda logits, b: cross_entropy(logits, b["labels"], b["weights"])
    if kind == "tagging":
        return lambda logits, b: cross_entropy(logits, b["labels"], b["label_weights"] * b["weights"][:, None])
    return lambda logits, b: cross_entropy(logits, b["decoder_target_tokens"],
                                           b["decoder_loss_weights"] * b["weights"][:, None])


def model_inputs(batch: dict) -> dict:
    keep = ("encoder_input_tokens", "encoder_token_type_ids", "decoder_input_tokens")
    return {k: v for k, v in batch.items() if k in keep}


def batches(arrays: dict, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[dict]:
    """Fixed-size batches (one compiled shape). The last batch is filled with weight-0 rows."""
    n = len(next(iter(arrays.values())))
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        fill = batch_size - len(idx)
        weights = np.concatenate([np.ones(len(idx), np.float32), np.zeros(fill, np.float32)])
        idx = np.concatenate([idx, np.zeros(fill, idx.dtype)])
        yield {**{k: v[idx] for k, v in arrays.items()}, "weights": weights}


def train(model, params: dict, kind: str, arrays: dict, options: Options, desc: str = "fine-tune",
          validate=None) -> tuple[dict, list, list]:
    """Fine-tunes `params` on `arrays`; returns (params, per-step losses, validation curve).

    `validate(params) -> score` (higher is better), when given, runs after every epoch and at the
    last step; the params returned are then those of the best score (`Options.select_on_validation`),
    and `Options.patience` epochs without a gain end training early. The curve lists
    {"step", "score"} per evaluation. The one-replica case of `train_replicas`."""
    each = None if validate is None else (lambda replicas: [validate(replicas[0])])
    (params,), (losses,), (curve,) = train_replicas(model, [params], kind, arrays, options, (options.seed,),
                                                    desc, each)
    return params, losses, curve


def train_replicas(model, params: list, kind: str, arrays: dict, options: Options, seeds: tuple,
                   desc: str = "fine-tune", validate=None) -> tuple[list, list, list]:
    """Fine-tunes R models at once, one program step for all (the fine-tuning seeds of a task as a
    leading replica axis: tiny models are latency-bound on an accelerator); per replica, returns
    (params, per-step losses, validation curve) as `train` does.

    Replica r starts from params[r] and sees exactly what `train` with Options.seed = seeds[r]
    sees: its batch order, its dropout stream, the same step count and schedule.
    `validate(replica params) -> replica scores` runs after every epoch; each replica keeps its own
    best epoch. Early stopping (`patience`) is per replica: a replica that stops keeps the params
    it would return and reports its losses and curve up to then, while the others train on (it
    keeps stepping with them, its later numbers unused)."""
    n = len(arrays["encoder_input_tokens"])
    total = max(1, int(round(options.epochs * -(-n // options.batch_size))))
    # The trainer's AdamW + linear warmup/decay, decaying every weight and without clipping.
    opt = OptimizerConfig(name="adamw", learning_rate=options.learning_rate,
                          warmup_steps=int(options.warmup_fraction * total), decay="linear",
                          weight_decay=options.weight_decay, decay_exclude=(), clip_norm=None)
    stacked = stack(params)
    opt_state = jax.vmap(make_optimizer(opt, params[0], total)[0].init)(stacked)
    orders = [np.random.default_rng(seed) for seed in seeds]
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
    kept = _Kept(len(seeds), options)
    losses = []  # [R] per step
    bar = tqdm(total=total, desc=desc, leave=False, disable=None if options.progress is None else not options.progress)
    while len(losses) < total and kept.running():
        epoch = []  # read back at the epoch's end: no host sync between steps
        for batch in replica_batches(arrays, options.batch_size, orders):
            stacked, opt_state, loss, keys = _train_step(model, kind, opt, total, stacked, opt_state, batch, keys)
            epoch.append(loss)
            bar.update(1)
            if len(losses) + len(epoch) >= total:
                break
        losses += jax.device_get(epoch)
        bar.set_postfix(loss=f"{float(np.mean(losses[-1])):.3f}")
        if validate is not None:
            replicas = unstack(stacked, len(seeds))
            kept.epoch(len(losses), validate(replicas), replicas)
    bar.close()
    final = kept.params if validate is not None else unstack(stacked, len(seeds))
    per_replica = np.stack(losses, axis=1)  # [R, steps]
    return final, [per_replica[r, :kept.steps(r, len(losses))].tolist() for r in range(len(seeds))], kept.curves


class _Kept:
    """Per replica: its validation curve, the params it returns, and whether patience stopped it."""

    def __init__(self, replicas: int, options: Options):
        self.options = options
        self.curves = [[] for _ in range(replicas)]
        self.params = [None] * replicas
        self.best = [None] * replicas  # (score, epoch)
        self.stopped_at = [None] * replicas  # the step where patience stopped the replica

    def running(self) -> bool:
        return None in self.stopped_at

    def steps(self, r: int, done: int) -> int:
        """How many of the `done` steps replica r reports."""
        return done if self.stopped_at[r] is None else self.stopped_at[r]

    def epoch(self, step: int, scores, replicas: list) -> None:
        for r, (score, params) in enumerate(zip(scores, replicas)):
            if self.stopped_at[r] is not None:
                continue
            curve = self.curves[r]
            curve.append({"step": step, "score": float(score)})
            if self.best[r] is None or curve[-1]["score"] > self.best[r][0]:
                self.best[r] = (curve[-1]["score"], len(curve))
                self.params[r] = params
            elif not self.options.select_on_validation:
                self.params[r] = params
            if self.options.patience and len(curve) - self.best[r][1] >= self.options.patience:
                self.stopped_at[r] = step


def stack(trees: list) -> dict:
    """Param trees stacked on a leading replica axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(stacked, replicas: int) -> list:
    return [jax.tree.map(lambda x, r=r: x[r], stacked) for r in range(replicas)]


def replica_batches(arrays: dict, batch_size: int, orders: list) -> Iterator[dict]:
    """One epoch of `batches` per replica, each in its own order, stacked on a leading replica axis."""
    for rows in zip(*(batches(arrays, batch_size, rng) for rng in orders)):
        yield {k: np.stack([b[k] for b in rows]) for k in rows[0]}


# Module-level programs keyed by what they compute (the model, a hashable Flax module; the
# optimizer's config and length), so the many fine-tunes of an experiment (every encoder x task
# x seed) compile each shape once per process instead of once per call.
@functools.partial(jax.jit, static_argnames=("model", "kind", "opt", "total"))
def _train_step(model, kind: str, opt: OptimizerConfig, total: int, params, opt_state, batch, keys):
    """One step of every replica: params, opt_state, batch and keys carry a leading replica axis."""
    step = functools.partial(_replica_step, model, kind, opt, total)
    return jax.vmap(step)(params, opt_state, batch, keys)


def _replica_step(model, kind: str, opt: OptimizerConfig, total: int, params, opt_state, batch, key):
    tx, _ = make_optimizer(opt, params, total)
    loss_of = loss_fn(kind)
    key, rng = jax.random.split(key)

    def objective(p):
        logits = model.apply({"params": p}, model_inputs(batch), enable_dropout=bool(model.cfg.dropout_rate),
                             rngs={"dropout": rng})
        sums = loss_of(logits, batch)
        return sums.loss / jnp.maximum(sums.weight, 1.0)
    loss, grads = jax.value_and_grad(objective)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, key


@functools.partial(jax.jit, static_argnames="model")
def _argmax_labels(model, params, inputs):
    """Every replica's labels for one batch (params stacked, inputs shared)."""
    return jax.vmap(lambda p: jnp.argmax(model.apply({"params": p}, inputs), -1))(params)


def predict_labels(model, params: dict, arrays: dict, batch_size: int) -> np.ndarray:
    """Argmax labels: [n] for classification, [n, length] for tagging."""
    return predict_replicas(model, stack([params]), arrays, batch_size)[0]


def predict_replicas(model, params: dict, arrays: dict, batch_size: int) -> np.ndarray:
    """`predict_labels` of each replica (params stacked on axis 0): [R, n] or [R, n, length]."""
    n = len(arrays["encoder_input_tokens"])
    out = [np.asarray(_argmax_labels(model, params, model_inputs(b))) for b in batches(arrays, batch_size)]
    return np.concatenate(out, axis=1)[:, :n]


@functools.partial(jax.jit, static_argnames=("model", "max_length", "beam_size", "alpha", "eos_id"))
def _decode(model, params, inputs, max_length: int, beam_size: int, alpha: float, eos_id: int):
    """Every replica's decoded ids for one batch (params stacked, inputs shared)."""
    def one(p):
        if beam_size > 1:
            seqs, _ = decoding.beam_search(model, p, inputs, max_length=max_length, beam_size=beam_size,
                                           alpha=alpha, eos_id=eos_id)
            return seqs[:, 0]
        return decoding.greedy(model, p, inputs, max_length=max_length, eos_id=eos_id)
    return jax.vmap(one)(params)


def generate(model, params: dict, arrays: dict, options: Options, eos_id: int = 1) -> np.ndarray:
    """Decoded token ids [n, target_length] (greedy, or beam search when beam_size > 1)."""
    return generate_replicas(model, stack([params]), arrays, options, eos_id)[0]


def generate_replicas(model, params: dict, arrays: dict, options: Options, eos_id: int = 1) -> np.ndarray:
    """`generate` of each replica (params stacked on axis 0), decoding vmapped: [R, n, target_length]."""
    n = len(arrays["encoder_input_tokens"])
    out = [np.asarray(_decode(model, params, {"encoder_input_tokens": b["encoder_input_tokens"]},
                              options.target_length, options.beam_size, options.length_alpha, eos_id))
           for b in batches({"encoder_input_tokens": arrays["encoder_input_tokens"]}, options.batch_size)]
    return np.concatenate(out, axis=1)[:, :n]


# ------------------------------------------------------------------------------ saved models

# The model kind each task kind saves as (params_io's kinds).
MODEL_KINDS = {"classification": "sequence_classifier", "tagging": "token_classifier",
               "generation": "encoder_decoder"}


def save(path: str, kind: str, cfg: models.TransformerConfig, labels: list, params: dict) -> None:
    """A fine-tuned model in the one checkpoint format; model.json adds its task and labels."""
    params_io.save_params(path, MODEL_KINDS[kind], cfg, params, overwrite=True,
                          extra={"task": kind, "labels": labels})


def load(path: str) -> tuple[str, models.TransformerConfig, list, dict]:
    """(task kind, config, labels, params) of a model written by `save`."""
    meta = params_io.metadata(path)
    if "task" not in meta:
        raise UserError(f"{path} holds no fine-tuned model (its model.json names no task); point --model "
                        "at OUT/model of a `seqpt finetune` run.")
    _, cfg, params = params_io.load(path)
    return meta["task"], cfg, meta["labels"], params
