"""`seqpt bench train --vs hf`: the trainer's step against Hugging Face transformers (PyTorch)
on the same model, batch and optimizer, timed in one process.

Both sides: float32, AdamW (lr 1e-4, no clipping), dropout 0, the same token ids. seqpt runs
its real jitted train step (`train.step.make_train_step`; the MLM head on the masked positions,
as the trainer does); Hugging Face runs `model(**batch).loss.backward(); opt.step()`
(BertForMaskedLM scores every position and ignores label -100). torch gets every core
(`torch.set_num_threads(os.cpu_count())`), as XLA does. After warm-up (compilation and two
steps each), rounds alternate seqpt / HF, each timing `steps` steps; medians are reported.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from seqpt_jax.errors import UserError

# The comparison configs (issue 12): T5 v1.1 4+4 layers and a 4-layer BERT, d 256, d_ff 1024.
CONFIGS = {
    "t5": dict(preset="t5-small", kind="encoder_decoder", batch=32, inputs=128, targets=32,
               dims=dict(vocab_size=8000, num_encoder_layers=4, num_decoder_layers=4, d_model=256,
                         num_heads=4, head_dim=64, d_ff=1024, dropout_rate=0.0)),
    "bert": dict(preset="bert-mini", kind="encoder_mlm", batch=32, inputs=128, targets=0,
                 dims=dict(vocab_size=8000, num_encoder_layers=4, d_model=256, num_heads=4,
                           head_dim=64, d_ff=1024, dropout_rate=0.0)),
}
LR = 1e-4


def make_batch(spec: dict, seed: int = 0) -> dict:
    """Numpy ids both frameworks train on: MLM masking at 15% (bert) or random seq2seq pairs."""
    rng = np.random.default_rng(seed)
    b, li, v = spec["batch"], spec["inputs"], spec["dims"]["vocab_size"]
    tokens = rng.integers(5, v, (b, li)).astype(np.int32)
    if spec["kind"] == "encoder_decoder":
        targets = rng.integers(5, v, (b, spec["targets"])).astype(np.int32)
        return {"inputs": tokens, "targets": targets}
    weights = (rng.random((b, li)) < 0.15).astype(np.float32)
    return {"inputs": np.where(weights > 0, 4, tokens).astype(np.int32), "targets": tokens, "weights": weights}


def seqpt_side(spec: dict, ids: dict, cfg):
    """(run(n) -> seconds for n train steps, FLOPs per step) for the seqpt trainer's step."""
    import jax
    import optax

    from seqpt_jax import models
    from seqpt_jax.data import mlm_positions
    from seqpt_jax.train import data, freezing, perf
    from seqpt_jax.train import partitioning as P
    from seqpt_jax.train import state as state_lib
    from seqpt_jax.train import step as step_lib

    model = models.build(spec["kind"], cfg)
    if spec["kind"] == "encoder_decoder":
        t = ids["targets"]
        batch = {"encoder_input_tokens": ids["inputs"], "decoder_target_tokens": t,
                 "decoder_input_tokens": np.concatenate([np.zeros_like(t[:, :1]), t[:, :-1]], 1),
                 "decoder_loss_weights": np.ones(t.shape, np.float32)}
        head = None
    else:
        p = mlm_positions.max_predictions(0.15, spec["inputs"])
        batch = {"encoder_input_tokens": ids["inputs"], **mlm_positions.compact(ids["targets"], ids["weights"], p)}
        head = p
    mesh, rules = P.make_mesh((-1, 1, 1)), P.rules("dp")
    shapes = models.param_shapes(model)
    shardings = P.shardings(models.logical_axes(model), shapes, rules, mesh)
    tx = optax.adamw(LR)
    state = state_lib.create(state_lib.fresh_init(model), tx, shapes, shardings, mesh, seed=0)
    trainable = freezing.all_trainable(shapes)
    step = step_lib.make_train_step(model, tx, lambda s: LR, trainable, mesh, rules)
    batch = data.to_global(batch, mesh)
    flops = perf.train_flops(spec["kind"], cfg, shapes, trainable, spec["batch"], spec["inputs"],
                             spec["targets"], head)["total"]
    holder = {"state": state}

    def run(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            holder["state"], metrics = step(holder["state"], batch)
        jax.block_until_ready(metrics)
        return time.perf_counter() - t0

    return run, flops


def hf_model(spec: dict):
    """The config in transformers: T5ForConditionalGeneration (T5 v1.1: gated GELU, untied
    head) or BertForMaskedLM, randomly initialised (seed 0)."""
    try:
        import torch
        import transformers
    except ImportError as e:
        raise UserError(f"--vs hf needs torch and transformers ({e.name} is missing); "
                        f"pip install -e '.[hf]'.") from None
    torch.manual_seed(0)
    d = spec["dims"]
    if spec["kind"] == "encoder_decoder":
        config = transformers.T5Config(
            vocab_size=d["vocab_size"], d_model=d["d_model"], d_kv=d["head_dim"], d_ff=d["d_ff"],
            num_layers=d["num_encoder_layers"], num_decoder_layers=d["num_decoder_layers"],
            num_heads=d["num_heads"], feed_forward_proj="gated-gelu", dropout_rate=0.0,
            tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0)
        # transformers 5 resets tie_word_embeddings to True in T5Config.__init__ (keeping only
        # "no output rescaling"); T5 v1.1 has its own lm_head, as the seqpt config does.
        # That also unties the encoder's and decoder's input tables from `shared`: tie them back.
        config.tie_word_embeddings = False
        model = transformers.T5ForConditionalGeneration(config)
        model.encoder.set_input_embeddings(model.shared)
        model.decoder.set_input_embeddings(model.shared)
        return model
    return transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=d["vocab_size"], hidden_size=d["d_model"], num_hidden_layers=d["num_encoder_layers"],
        num_attention_heads=d["num_heads"], intermediate_size=d["d_ff"], hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, max_position_embeddings=512))


def hf_side(spec: dict, ids: dict):
    """run(n) -> seconds for n train steps of the same config in transformers (PyTorch)."""
    model = hf_model(spec)
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    if spec["kind"] == "encoder_decoder":
        batch = {"input_ids": torch.from_numpy(ids["inputs"]).long(),
                 "labels": torch.from_numpy(ids["targets"]).long()}
    else:
        labels = np.where(ids["weights"] > 0, ids["targets"], -100)
        batch = {"input_ids": torch.from_numpy(ids["inputs"]).long(), "labels": torch.from_numpy(labels).long()}
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR)

    def run(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            model(**batch).loss.backward()
            opt.step()
        return time.perf_counter() - t0

    return run


def compare(name: str, cfg, rounds: int = 3, steps: int = 2, log=print) -> dict:
    """Times seqpt and HF alternately; returns medians (ms/step), tokens/s and the ratio."""
    from seqpt_jax.train import perf
    spec = CONFIGS[name]
    ids = make_batch(spec)
    seqpt, flops = seqpt_side(spec, ids, cfg)
    hf = hf_side(spec, ids)
    seqpt(2), hf(2)  # compile / warm-up
    times = {"seqpt": [], "hf": []}
    for r in range(rounds):
        for side, run in (("seqpt", seqpt), ("hf", hf)):
            times[side].append(run(steps) / steps)
        log(f"  round {r + 1}: seqpt {1e3 * times['seqpt'][-1]:.0f} ms/step, "
            f"hf {1e3 * times['hf'][-1]:.0f} ms/step")
    tokens = spec["batch"] * (spec["inputs"] + spec["targets"])
    med = {k: statistics.median(v) for k, v in times.items()}
    peak, note = perf.peak_flops_per_device()
    out = {"config": name, "ms_seqpt": 1e3 * med["seqpt"], "ms_hf": 1e3 * med["hf"],
           "tokens_per_s_seqpt": tokens / med["seqpt"], "tokens_per_s_hf": tokens / med["hf"],
           "ratio": med["hf"] / med["seqpt"], "mfu_seqpt": flops / med["seqpt"] / peak,
           "mfu_hf": flops / med["hf"] / peak, "gflop_per_step": flops / 1e9, "peak": note,
           "rounds": {k: [round(1e3 * x, 1) for x in v] for k, v in times.items()}}
    return out


def report(r: dict) -> str:
    return "\n".join([
        f"{r['config']}: medians of {len(r['rounds']['seqpt'])} alternating rounds "
        f"({r['gflop_per_step']:.1f} GFLOP per seqpt step)",
        f"  seqpt {r['ms_seqpt']:8.0f} ms/step {r['tokens_per_s_seqpt']:9,.0f} tokens/s  MFU {100 * r['mfu_seqpt']:.1f}%",
        f"  hf    {r['ms_hf']:8.0f} ms/step {r['tokens_per_s_hf']:9,.0f} tokens/s  (same FLOPs: {100 * r['mfu_hf']:.1f}%)",
        f"  seqpt / hf tokens/s: {r['ratio']:.2f}x",
        f"  peak: {r['peak']}"])
