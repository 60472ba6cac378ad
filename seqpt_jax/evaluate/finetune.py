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
    Everything random (head init, dropout, batch order) comes from `seed`: same seed, same numbers.
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
    {"step", "score"} per evaluation."""
    n = len(arrays["encoder_input_tokens"])
    steps_per_epoch = -(-n // options.batch_size)
    total = max(1, int(round(options.epochs * steps_per_epoch)))
    # The trainer's AdamW + linear warmup/decay, decaying every weight and without clipping.
    opt = OptimizerConfig(name="adamw", learning_rate=options.learning_rate,
                          warmup_steps=int(options.warmup_fraction * total), decay="linear",
                          weight_decay=options.weight_decay, decay_exclude=(), clip_norm=None)
    opt_state = make_optimizer(opt, params, total)[0].init(params)
    data_rng, key = np.random.default_rng(options.seed), jax.random.key(options.seed)
    losses, curve, best = [], [], None
    bar = tqdm(total=total, desc=desc, leave=False, disable=None if options.progress is None else not options.progress)
    while len(losses) < total:
        for batch in batches(arrays, options.batch_size, data_rng):
            key, sub = jax.random.split(key)
            params, opt_state, loss = _train_step(model, kind, opt, total, params, opt_state, batch, sub)
            losses.append(float(loss))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if len(losses) >= total:
                break
        if validate is not None:
            curve.append({"step": len(losses), "score": float(validate(params))})
            if best is None or curve[-1]["score"] > best[0]:
                best = (curve[-1]["score"], len(curve), params)
            if options.patience and len(curve) - best[1] >= options.patience:
                break
    bar.close()
    if best is not None and options.select_on_validation:
        params = best[2]
    return params, losses, curve


# Module-level programs keyed by what they compute (the model, a hashable Flax module; the
# optimizer's config and length), so the many fine-tunes of an experiment (every encoder x task
# x seed) compile each shape once per process instead of once per call.
@functools.partial(jax.jit, static_argnames=("model", "kind", "opt", "total"))
def _train_step(model, kind: str, opt: OptimizerConfig, total: int, params, opt_state, batch, rng):
    tx, _ = make_optimizer(opt, params, total)
    loss_of = loss_fn(kind)

    def objective(p):
        logits = model.apply({"params": p}, model_inputs(batch), enable_dropout=bool(model.cfg.dropout_rate),
                             rngs={"dropout": rng})
        sums = loss_of(logits, batch)
        return sums.loss / jnp.maximum(sums.weight, 1.0)
    loss, grads = jax.value_and_grad(objective)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


@functools.partial(jax.jit, static_argnames="model")
def _argmax_labels(model, params, inputs):
    return jnp.argmax(model.apply({"params": params}, inputs), -1)


def predict_labels(model, params: dict, arrays: dict, batch_size: int) -> np.ndarray:
    """Argmax labels: [n] for classification, [n, length] for tagging."""
    n = len(arrays["encoder_input_tokens"])
    out = [np.asarray(_argmax_labels(model, params, model_inputs(b))) for b in batches(arrays, batch_size)]
    return np.concatenate(out)[:n]


def generate(model, params: dict, arrays: dict, options: Options, eos_id: int = 1) -> np.ndarray:
    """Decoded token ids [n, target_length] (greedy, or beam search when beam_size > 1)."""
    n = len(arrays["encoder_input_tokens"])
    out = []
    for b in batches({"encoder_input_tokens": arrays["encoder_input_tokens"]}, options.batch_size):
        inputs = {"encoder_input_tokens": b["encoder_input_tokens"]}
        if options.beam_size > 1:
            seqs, _ = decoding.beam_search(model, params, inputs, max_length=options.target_length,
                                           beam_size=options.beam_size, alpha=options.length_alpha,
                                           eos_id=eos_id)
            out.append(np.asarray(seqs[:, 0]))
        else:
            out.append(np.asarray(decoding.greedy(model, params, inputs, max_length=options.target_length,
                                                  eos_id=eos_id)))
    return np.concatenate(out)[:n]


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
