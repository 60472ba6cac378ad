"""`seqpt experiment run NAME --plan --measure`: the plan's device figures timed on this machine
instead of taken from the scale gin's assumptions.

For every distinct model shape among the arms (kind, layers, width, vocabulary, batch, lengths),
the trainer's own full-model train step and its evaluation step (`loop.setup`, as `seqpt bench
phases` builds them) are compiled and timed on synthetic batches of the run's shapes. Every
phase of an arm then takes the full step's time scaled by the ledger's FLOPs (the ledger follows
the compiled step: `seqpt bench phases` shows the ratio), every evaluation pass `eval_batches`
evaluation steps, every distinct program the mean compile time measured. One fine-tune of each
downstream task's size (the encoder's shape, synthetic tokens, the scale's examples, epochs and
length, then scoring `test` examples in each of TEST_LANGS languages) gives the seconds per
fine-tune. The feed's rate and the per-run overhead stay the gin's (they are host-side and
corpus-bound: `seqpt bench data` measures the feed).
"""

from __future__ import annotations

import statistics
import time

TEST_LANGS = 15  # zero-shot tests: at most the exported corpus's 15 languages
JA_NER_TRAIN = 450  # evaluate/packaged.py: ja_ner's training sentences (90% of the package's 500)


def shape_key(row: dict) -> tuple:
    """What makes two arms' compiled steps the same program (for `--plan`'s rows)."""
    return (row["kind"], tuple(row["layers"]), row["d_model"], row["vocab_size"], row["batch_size"],
            tuple(row["lengths"]), row["params"])


def _timed(fn, *args, steps: int):
    """(seconds of the first call, which compiles, minus a step; median seconds per later call)."""
    import jax
    t = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    first = time.perf_counter() - t
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    step = statistics.median(times)
    return max(first - step, 0.0), step


def time_parsed(steps: int = 5) -> dict:
    """Compile and step seconds of the parsed arm's full-model train step and evaluation step, and
    the ledger's FLOPs of one full step."""
    from seqpt_jax.bench import phases as bench_phases
    from seqpt_jax.experiment import spec
    lengths = spec.value("data.mixture_or_task.task_feature_lengths", {"inputs": 128})
    built = bench_phases.from_config(spec.train_config(), lengths, phases=("full",))
    (row,), state, batch = built["rows"], built["state"], built["batch"]
    # the train step donates its state: each call gets the one the last returned
    holder = {"state": state}

    def train_step(b):
        holder["state"], metrics = row["fn"](holder["state"], b)
        return metrics
    compile_train, step = _timed(train_step, batch, steps=steps)
    eval_step = built["trainer"].eval_step
    compile_eval, eval_s = _timed(lambda b: eval_step(holder["state"].params, b), batch, steps=steps)
    return {"compile_s": [compile_train, compile_eval], "step_s": step, "eval_step_s": eval_s,
            "flops_per_step": row["counted"]}


def time_finetune(encoder_cfg, settings: dict, test_langs: int = TEST_LANGS, replicas: int | None = None) -> float:
    """Seconds of one downstream fine-tuning run (`replicas` models, default `settings["seeds"]`,
    trained together, `finetune.train_replicas`: the runner's run holds every encoder x fine-tuning
    seed), the mean over the experiment's tasks' sizes (section: classification; UI tagging and
    ja_ner: tagging, ja_ner JA_NER_TRAIN sentences for `ner_epochs`), each timed after a first run
    that compiles (the runner fine-tunes many models of one shape in one process)."""
    import jax
    import numpy as np

    from seqpt_jax import models
    from seqpt_jax.evaluate import finetune as ft
    rng = np.random.default_rng(0)
    length, test = settings["length"], settings["test"]
    sizes = [("classification", settings["train"], settings["epochs"], test_langs),
             ("tagging", settings["train"], settings["epochs"], test_langs),
             ("tagging", JA_NER_TRAIN, settings["ner_epochs"], 1)]  # ja_ner: Japanese only
    seconds = []
    for kind, n, epochs, langs in sizes:
        model = ft.build_model(kind, encoder_cfg, 5)
        tokens = rng.integers(5, encoder_cfg.vocab_size, (n, length)).astype(np.int32)
        labels = rng.integers(0, 5, n if kind == "classification" else (n, length)).astype(np.int32)
        arrays = {"encoder_input_tokens": tokens, "labels": labels}
        if kind == "tagging":
            arrays["label_weights"] = np.ones((n, length), np.float32)
        tests = {"encoder_input_tokens": tokens[:test]}
        options = ft.Options(epochs=epochs, batch_size=32, max_length=length, progress=False)

        seeds = tuple(range(replicas or settings["seeds"]))

        def once():
            params = [models.init(model, jax.random.key(s), {"encoder_input_tokens": tokens[:1]}) for s in seeds]
            params, _, _ = ft.train_replicas(model, params, kind, arrays, options, seeds)
            for _ in range(langs):
                ft.predict_replicas(model, ft.stack(params), tests, options.batch_size)
        once()  # compiles
        t = time.perf_counter()
        once()
        seconds.append(time.perf_counter() - t)
    return float(np.mean(seconds))
