"""`seqpt bench data`: the input pipeline's tokens/s for MLM and span corruption at length 512,
beside the tokens/s bert-small trains at on this machine, and their ratio (want >= 10).

The pipeline runs on the embedded corpus when --corpus and --vocab are given, else on a
synthetic tokenized corpus of the same shape (the pipeline's cost does not depend on the
token values). Training is timed in the same process: EncoderMLM(bert-small), AdamW, 8x512.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from seqpt_jax.data import feeding, sources, vocab

LENGTH = 512


def _synthetic_spec(name: str, objective: str, vocab_size: int = 32128, docs: int = 4000):
    rng = np.random.default_rng(0)
    info = vocab.synthetic_token_info(vocab_size, every=3)
    lo, hi = info.random_range
    store = sources.TokenStore.from_token_lists(
        rng.integers(lo, hi, int(n)) for n in rng.geometric(1 / 300, docs) + 20)
    kind = feeding.ENCODER if objective == "mlm" else feeding.ENCDEC
    return feeding.TaskSpec(name, kind, lambda split, n, pack: sources.Windows(store, n, pack),
                            info, objective)


def pipeline_tokens_per_s(task, batch_size: int = 32, seconds: float = 3.0) -> float:
    """Encoder input tokens per second produced by make_pipeline (after one warm-up batch)."""
    pipe = feeding.make_pipeline(task, "train", batch_size, {"inputs": LENGTH}, seed=0, shard=(0, 1))
    next(pipe)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(pipe)
        steps += 1
    return steps * batch_size * LENGTH / (time.perf_counter() - start)


def train_tokens_per_s(preset: str = "bert-small", batch_size: int = 8, steps: int = 3) -> float:
    """Tokens per second of bert-small MLM training steps (forward, backward, AdamW update)."""
    import jax
    import jax.numpy as jnp
    import optax

    from seqpt_jax import models
    from seqpt_jax.data import mlm_positions

    cfg = models.preset(preset, vocab_size=32128)
    model = models.EncoderMLM(cfg)
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 32000, (batch_size, LENGTH)).astype(np.int32)
    weights = (rng.random((batch_size, LENGTH)) < 0.15).astype(np.float32)
    # As the trainer's batches: the MLM head runs on the masked positions only.
    batch = {"encoder_input_tokens": tokens,
             **mlm_positions.compact(tokens, weights, mlm_positions.max_predictions(0.15, LENGTH))}
    params = models.init(model, jax.random.key(0), {"encoder_input_tokens": tokens})
    opt = optax.adamw(1e-4)
    state = opt.init(params)

    def loss_fn(p, b):
        logits = model.apply({"params": p}, b)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), b["mlm_targets"])
        return (ce * b["mlm_weights"]).sum() / b["mlm_weights"].sum()

    @jax.jit
    def step(p, s, b):
        loss, grads = jax.value_and_grad(loss_fn)(p, b)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    params, state, loss = step(params, state, batch)  # compile
    jax.block_until_ready(loss)
    start = time.perf_counter()
    for _ in range(steps):
        params, state, loss = step(params, state, batch)
    jax.block_until_ready(loss)
    return steps * batch_size * LENGTH / (time.perf_counter() - start)


def run_data_bench(corpus=None, vocab_path=None, batch_size: int = 32, seconds: float = 3.0,
                   train_steps: int = 3) -> dict[str, float]:
    """Prints the table and returns {"mlm", "span_corruption", "train", "ratio"} (tokens/s)."""
    if corpus and vocab_path:
        from seqpt_jax.data import tasks
        jobs = {}
        for objective in ("mlm", "span_corruption"):
            tasks.register_local(corpus, vocab_path, objectives=(objective,))
            jobs[objective] = tasks.fast_specs(tasks.get(f"seqpt_local_{objective}"))
        where = f"corpus {corpus}"
    else:
        jobs = {o: _synthetic_spec(o, o) for o in ("mlm", "span_corruption")}
        where = "synthetic corpus (pass --corpus and --vocab for the embedded one)"
    figures = {name: pipeline_tokens_per_s(task, batch_size, seconds) for name, task in jobs.items()}
    figures["train"] = train_tokens_per_s(steps=train_steps)
    figures["ratio"] = min(figures["mlm"], figures["span_corruption"]) / figures["train"]
    print(f"input pipeline at length {LENGTH}, one process, {where}:")
    print(f"  MLM (15%, 80/10/10)          {figures['mlm']:>12,.0f} tokens/s")
    print(f"  span corruption (0.15, 3)    {figures['span_corruption']:>12,.0f} tokens/s")
    print(f"bert-small MLM training, 8x{LENGTH}: {figures['train']:>10,.0f} tokens/s")
    verdict = "OK" if figures["ratio"] >= 10 else "TOO SLOW (want >= 10x)"
    print(f"pipeline / training ratio: {figures['ratio']:.1f}x  {verdict}")
    return figures


def main_data(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="seqpt bench data", description=__doc__)
    parser.add_argument("--corpus", help="corpus directory (default: a synthetic corpus)")
    parser.add_argument("--vocab", help="SentencePiece model (with --corpus)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per pipeline measurement")
    args = parser.parse_args(argv)
    run_data_bench(args.corpus, args.vocab, args.batch_size, args.seconds)
    return 0


if __name__ == "__main__":
    import sys
    raise SystemExit(main_data(sys.argv[1:]))
