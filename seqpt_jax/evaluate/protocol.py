"""The cross-lingual protocol: fine-tune on the source language, test on every language
(zero-shot), plus in-language fine-tuning where a language has its own training data.

Returns one results dict (what `report` writes as results.json): per run, the training
language, the validation scores and, per test language, the metrics, the example count and
how many examples were cut to the model length. `run_seeds` returns one per fine-tuning seed,
the seeds trained together (one program step for all) on data encoded once; `run_replicas` the
same for several starting points of one shape (an experiment's encoders), every one with every
seed, all in one program.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import jax
import numpy as np

from seqpt_jax import models
from seqpt_jax.errors import UserError
from seqpt_jax.evaluate import data, finetune, metrics
from seqpt_jax.evaluate.tasks import Task

PRIMARY = {"classification": "accuracy", "tagging": "f1", "generation": "chrf"}


def primary_metric(kind: str, labels) -> str:
    """The score a task is ranked by: span F1 for BIO tags, token accuracy for plain tags (POS)."""
    return "token_accuracy" if kind == "tagging" and not metrics.is_bio(labels) else PRIMARY[kind]


def _encode(kind, vocab, examples, labels, options):
    if kind == "classification":
        return data.encode_classification(vocab, examples, labels, options.max_length)
    if kind == "tagging":
        return data.encode_tagging(vocab, examples, labels, options.max_length, spaced=options.spaced_words)
    return data.encode_generation(vocab, examples, options.max_length, options.target_length)


def _decode_text(vocab, ids: np.ndarray, eos_id: int = 1) -> list[str]:
    out = []
    for row in ids.tolist():
        row = row[:row.index(eos_id)] if eos_id in row else row
        out.append(vocab.decode([t for t in row if t != 0]))
    return out


def score(kind: str, model, params, vocab, examples, labels, options, lang: str) -> dict:
    """Metrics of one split, with `n` and `truncated` (cut examples are scored, not dropped)."""
    enc = _encode(kind, vocab, examples, labels, options)
    return score_replicas(kind, model, finetune.stack([params]), vocab, examples, enc, labels, options, lang)[0]


def score_replicas(kind: str, model, params, vocab, examples, enc, labels, options, lang: str) -> list[dict]:
    """`score` of every replica (params stacked on axis 0) on one encoded split; the models
    predict (or decode) together, vmapped over the replicas."""
    if kind == "generation":
        predictions = finetune.generate_replicas(model, params, enc.arrays, options)
    else:
        predictions = finetune.predict_replicas(model, params, enc.arrays, options.batch_size)
    return [_metrics(kind, pred, vocab, examples, enc, labels, lang) for pred in predictions]


def _metrics(kind: str, pred: np.ndarray, vocab, examples, enc, labels, lang: str) -> dict:
    result = {"n": len(examples), "truncated": enc.truncated}
    if kind == "classification":
        gold = [ex["label"] for ex in examples]
        guess = [labels[i] for i in pred]
        result.update(accuracy=metrics.accuracy(guess, gold), macro_f1=metrics.macro_f1(guess, gold))
    elif kind == "tagging":
        fallback = "O" if "O" in labels else labels[0]  # words past the model length
        gold, guess = [], []
        for i, ex in enumerate(examples):
            kept = [labels[pred[i, p]] for p in enc.word_index[i]]
            guess.append(kept + [fallback] * (len(ex["tags"]) - len(kept)))
            gold.append(ex["tags"])
        result["token_accuracy"] = metrics.token_accuracy(gold, guess)
        if metrics.is_bio(labels):
            spans = metrics.span_f1(gold, guess)
            result.update(precision=spans["precision"], recall=spans["recall"], f1=spans["f1"])
    else:
        hyps = _decode_text(vocab, pred)
        refs = [ex["target"] for ex in examples]
        result.update(bleu=metrics.bleu(hyps, refs, lang), chrf=metrics.chrf(hyps, refs),
                      exact_match=metrics.exact_match(hyps, refs), samples=hyps[:3])
    return result


def majority(kind: str, train: list[dict], examples: list[dict], labels: list[str]) -> dict | None:
    """The baseline that predicts the training split's most frequent label (tag) everywhere,
    scored like a model (`score`); ties go to the first label in sorted order. None for generation."""
    if kind == "classification":
        counts = Counter(ex["label"] for ex in train)
        top = min(counts, key=lambda l: (-counts[l], l))
        gold = [ex["label"] for ex in examples]
        return {"label": top, "accuracy": metrics.accuracy([top] * len(gold), gold),
                "macro_f1": metrics.macro_f1([top] * len(gold), gold)}
    if kind == "tagging":
        counts = Counter(t for ex in train for t in ex["tags"])
        top = min(counts, key=lambda l: (-counts[l], l))
        gold = [ex["tags"] for ex in examples]
        guess = [[top] * len(tags) for tags in gold]
        out = {"label": top, "token_accuracy": metrics.token_accuracy(gold, guess)}
        if metrics.is_bio(labels):
            out["f1"] = metrics.span_f1(gold, guess)["f1"]
        return out
    return None


def _read(task: Task, split: str, lang: str, limit: int = 0) -> list[dict]:
    """The examples of one split, the first `limit` only when limit > 0."""
    examples = task.read(split, lang)
    return examples[:limit] if limit > 0 else examples


def _check_lengths(cfg, options) -> None:
    if cfg.positions == "absolute":
        longest = max(options.max_length, options.target_length)
        if longest + cfg.position_offset > cfg.max_length:
            raise UserError(f"max_length/target_length {longest} exceed the model's {cfg.max_length} "
                            "learned positions; lower them (Options.max_length / target_length).")


def run(task: Task, init_kind: str, cfg, init_params: dict, vocab, options,
        save_dir: str | None = None) -> dict:
    """Every fine-tuning run of the protocol with `options.seed`; a dict ready for results.json.
    The first run's model (the source-language one) is saved to `save_dir` for `seqpt eval`."""
    return run_seeds(task, init_kind, cfg, init_params, vocab, options, (options.seed,), save_dir)[0]


def run_seeds(task: Task, init_kind: str, cfg, init_params: dict, vocab, options, seeds: tuple,
              save_dir: str | None = None) -> list[dict]:
    """`run` with each fine-tuning seed of `seeds` (in place of options.seed): one results dict
    per seed, the seeds trained together as replicas (`finetune.train_replicas`) on data encoded
    once. `save_dir`: the first seed's first model."""
    return run_replicas(task, init_kind, cfg, [init_params], vocab, options, seeds, save_dir)[0]


def run_replicas(task: Task, init_kind: str, cfg, inits: list[dict], vocab, options, seeds: tuple,
                 save_dir: str | None = None) -> list[list[dict]]:
    """`run_seeds` of every starting point in `inits` (params of one kind and config, e.g. the
    encoders an experiment compares and their random init) at once: replica (i, seed) is what
    `run` of inits[i] with that seed reports, all of them one program step. [init][seed] results
    dicts; `save_dir`: the first init's first seed's first model."""
    if options.dropout_rate is not None:
        cfg = cfg.replace(dropout_rate=options.dropout_rate)
    options = dataclasses.replace(options, spaced_words=task.spaced)
    _check_lengths(cfg, options)
    if vocab.vocab_size > cfg.vocab_size:
        raise UserError(f"the vocabulary has {vocab.vocab_size} ids but the model only {cfg.vocab_size}; "
                        "use the vocabulary the checkpoint was trained with (--vocab).")
    train_langs = task.langs("train")
    if not train_langs:
        raise UserError(f"task {task.name!r} has no training split; pass --train FILE (or the corpus's).")
    source = task.source_lang if task.source_lang in train_langs else None
    plan = [(source, "zero-shot")] if source else []
    if options.in_language or not source:
        plan += [(lang, "in-language") for lang in train_langs if lang != source]

    replicas = [(i, seed) for i in range(len(inits)) for seed in seeds]
    runs = []  # per plan entry, one entry per replica
    for train_lang, mode in plan:
        entries, params = _fine_tune(task, init_kind, cfg, inits, vocab, options, replicas, train_lang, mode)
        runs.append(entries)
        if save_dir and len(runs) == 1:
            finetune.save(save_dir, task.kind, cfg, entries[0]["labels"], params[0])
    results = [{"task": task.name, "kind": task.kind, "primary_metric": primary_metric(task.kind, runs[0][0]["labels"]),
                "skipped_empty_files": task.skipped, "runs": [entries[r] for entries in runs]}
               for r in range(len(replicas))]
    return [results[i * len(seeds):(i + 1) * len(seeds)] for i in range(len(inits))]


def _fine_tune(task: Task, init_kind: str, cfg, inits: list[dict], vocab, options, replicas: list[tuple],
               train_lang: str, mode: str) -> tuple[list[dict], list[dict]]:
    """One run of the protocol (training language `train_lang`) for every replica (index into
    `inits`, seed): (the results entry of each, the params each tested)."""
    train_examples = _read(task, "train", train_lang, options.max_train)
    labels = data.label_list(task.kind, train_examples)
    if task.kind != "generation" and len(labels) < 2:
        raise UserError(f"{task.files['train'][train_lang]} has a single label {labels}; a "
                        "classifier needs at least two.")
    test_langs = task.langs("test") if mode == "zero-shot" else [train_lang]
    test_langs = [l for l in test_langs if l in task.files.get("test", {})]
    evals = {l: _read(task, "test", l, options.max_eval) for l in test_langs}
    val = (_read(task, "validation", train_lang, options.max_eval)
           if train_lang in task.files.get("validation", {}) else None)
    for lang, examples in [*evals.items(), *([("validation", val)] if val else [])]:
        data.check_labels(task.kind, examples, labels,
                          f"{task.name} {lang} ({'validation' if lang == 'validation' else 'test'})")

    model = finetune.build_model(task.kind, cfg, len(labels))
    train_enc = _encode(task.kind, vocab, train_examples, labels, options)
    sample = {k: v[:1] for k, v in train_enc.arrays.items()}
    start = [finetune.transfer(init_kind, inits[i],
                               models.init(model, jax.random.key(seed), finetune.model_inputs(sample)))
             for i, seed in replicas]
    seeds = tuple(seed for _, seed in replicas)
    metric, val_scores = primary_metric(task.kind, labels), []
    val_enc = _encode(task.kind, vocab, val, labels, options) if val else None

    def validate(replicas):  # after every epoch (finetune.train_replicas); each epoch's scores kept per seed
        # Restacked (a copy of R small models an epoch) to predict for all replicas in one program.
        val_scores.append(score_replicas(task.kind, model, finetune.stack(replicas), vocab, val, val_enc, labels,
                                         options, train_lang))
        return [s[metric] for s in val_scores[-1]]

    params, losses, curves = finetune.train_replicas(model, start, task.kind, train_enc.arrays, options, seeds,
                                                     desc=f"{task.name} [{train_lang}]",
                                                     validate=validate if val else None)
    entries = [{"train_lang": train_lang, "mode": mode, "labels": labels, "n_train": len(train_examples),
                "train_truncated": train_enc.truncated, "steps": len(l), "first_loss": l[0],
                "final_loss": float(np.mean(l[-5:])), "test": {}} for l in losses]
    for r, curve in enumerate(curves):
        if curve:  # the per-epoch validation scores, and the epoch whose model is tested below
            chosen = (max(range(len(curve)), key=lambda i, c=curve: (c[i]["score"], -i))
                      if options.select_on_validation else len(curve) - 1)
            entries[r].update(validation=val_scores[chosen][r], validation_curve=curve,
                              selected_step=curve[chosen]["step"])
    tested = finetune.stack(params)
    for lang, examples in evals.items():
        enc = _encode(task.kind, vocab, examples, labels, options)
        base = majority(task.kind, train_examples, examples, labels)
        for entry, result in zip(entries, score_replicas(task.kind, model, tested, vocab, examples, enc, labels,
                                                         options, lang)):
            entry["test"][lang] = {**result, **({"majority": dict(base)} if base else {})}
    return entries, params


def evaluate_saved(task: Task, cfg, labels: list, params: dict, vocab, options) -> dict:
    """Scores a saved fine-tuned model on every test language of `task` (no training)."""
    _check_lengths(cfg, options)
    options = dataclasses.replace(options, spaced_words=task.spaced)
    model = finetune.build_model(task.kind, cfg, len(labels))
    entry = {"train_lang": "saved model", "mode": "eval", "labels": labels, "test": {}}
    if not task.langs("test"):
        raise UserError(f"task {task.name!r} has no test split; pass --test FILE.")
    for lang in task.langs("test"):
        examples = _read(task, "test", lang)
        data.check_labels(task.kind, examples, labels, f"{task.name} {lang} (test)")
        entry["test"][lang] = score(task.kind, model, params, vocab, examples, labels, options, lang)
    return {"task": task.name, "kind": task.kind, "primary_metric": primary_metric(task.kind, labels),
            "runs": [entry]}
