"""`seqpt bench train --vs hf`: the trainer's step against Hugging Face transformers (PyTorch)
on the same model, batch and optimizer, timed in one process on the same device.

Both sides: AdamW (lr 1e-4), dropout 0, the same token ids, float32 parameters. seqpt runs its
real jitted train step (`train.step.make_train_step`; the MLM head on the masked positions, as
the trainer does) with the hw gin's settings (hw/cpu.gin on a CPU, hw/gpu.gin on a GPU); Hugging
Face runs `model(**batch).loss.backward(); opt.step()` (BertForMaskedLM scores every position
and ignores label -100) with SDPA attention. On a GPU, HF runs on the same GPU under
`torch.autocast(bfloat16)` with fused AdamW, both sides clip the gradient norm at 1.0 (the sizes
of issue 23's measurement), and every timed window ends with `torch.cuda.synchronize()` /
`block_until_ready`. On a CPU, both sides run float32 on every core
(`torch.set_num_threads(os.cpu_count())`, as XLA does). After warm-up (compilation and two
steps each), rounds alternate seqpt variant(s) / HF, each timing `steps` steps; medians are
reported. MFU divides the seqpt ledger's FLOPs per step by the peak of `train.perf`.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from seqpt_jax.errors import UserError

# The comparison configs. "t5"/"bert" (size "small", issue 12): T5 v1.1 4+4 layers and a 4-layer
# BERT, d 256, d_ff 1024. "bert-base"/"mt5-small": issue 23's GPU shapes (clip 1.0 as measured).
CONFIGS = {
    "t5": dict(preset="t5-small", kind="encoder_decoder", batch=32, inputs=128, targets=32, clip=None,
               dims=dict(vocab_size=8000, num_encoder_layers=4, num_decoder_layers=4, d_model=256,
                         num_heads=4, head_dim=64, d_ff=1024, dropout_rate=0.0)),
    "bert": dict(preset="bert-mini", kind="encoder_mlm", batch=32, inputs=128, targets=0, clip=None,
                 dims=dict(vocab_size=8000, num_encoder_layers=4, d_model=256, num_heads=4,
                           head_dim=64, d_ff=1024, dropout_rate=0.0)),
    "bert-base": dict(preset="bert-base", kind="encoder_mlm", batch=64, inputs=512, targets=0, clip=1.0,
                      dims=dict(vocab_size=32000, num_encoder_layers=12, d_model=768, num_heads=12,
                                head_dim=64, d_ff=3072, dropout_rate=0.0)),
    "mt5-small": dict(preset="mt5-small", kind="encoder_decoder", batch=64, inputs=512, targets=114, clip=1.0,
                      dims=dict(vocab_size=250112, num_encoder_layers=8, num_decoder_layers=8, d_model=512,
                                num_heads=6, head_dim=64, d_ff=1024, dropout_rate=0.0)),
    # Seconds on a CPU: for checking the machinery (`seqpt bench gpu-suite --size tiny`, tests).
    "t5-tiny": dict(preset="t5-tiny", kind="encoder_decoder", batch=8, inputs=32, targets=8, clip=1.0,
                    dims=dict(vocab_size=512, num_encoder_layers=2, num_decoder_layers=2, d_model=64,
                              num_heads=2, head_dim=32, d_ff=128, dropout_rate=0.0)),
    "bert-tiny": dict(preset="bert-tiny", kind="encoder_mlm", batch=8, inputs=32, targets=0, clip=1.0,
                      dims=dict(vocab_size=512, num_encoder_layers=2, d_model=64, num_heads=2,
                                head_dim=32, d_ff=128, dropout_rate=0.0)),
}
# --size -> the configs it times ("small" honours --model).
SIZES = {"small": ("t5", "bert"), "bert-base": ("bert-base",), "mt5-small": ("mt5-small",),
         "gpu": ("bert-base", "mt5-small"), "tiny": ("t5-tiny",)}
LR = 1e-4


def on_gpu() -> bool:
    import jax
    return jax.default_backend() == "gpu"


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


def seqpt_config(name: str, gin_files: list[str], bindings: list[str]):
    """The seqpt model config of comparison `name` under the hw gin (hw/gpu.gin on a GPU, else
    hw/cpu.gin, unless `gin_files` names one) and `bindings`."""
    import gin

    from seqpt_jax import gin_config, models
    hw = [] if any("hw/" in f for f in gin_files) else ["hw/gpu.gin" if on_gpu() else "hw/cpu.gin"]
    gin_config.parse([*hw, *gin_files], bindings)
    try:
        spec = CONFIGS[name]
        return gin.get_configurable(models.preset)(spec["preset"], **spec["dims"])
    finally:
        gin.clear_config()


def seqpt_batch(spec: dict, ids: dict) -> tuple[dict, int | None]:
    """(the trainer's batch for these ids, MLM head positions per row or None)."""
    from seqpt_jax.data import mlm_positions
    if spec["kind"] == "encoder_decoder":
        t = ids["targets"]
        return {"encoder_input_tokens": ids["inputs"], "decoder_target_tokens": t,
                "decoder_input_tokens": np.concatenate([np.zeros_like(t[:, :1]), t[:, :-1]], 1),
                "decoder_loss_weights": np.ones(t.shape, np.float32)}, None
    p = mlm_positions.max_predictions(0.15, spec["inputs"])
    return {"encoder_input_tokens": ids["inputs"], **mlm_positions.compact(ids["targets"], ids["weights"], p)}, p


def seqpt_side(spec: dict, ids: dict, cfg):
    """(run(n) -> seconds for n train steps, ledger FLOPs per step, dot FLOPs of the step's
    jaxpr) for the seqpt trainer's step."""
    import jax
    import optax

    from seqpt_jax import models
    from seqpt_jax.train import data, freezing, jaxpr_flops, perf
    from seqpt_jax.train import partitioning as P
    from seqpt_jax.train import state as state_lib
    from seqpt_jax.train import step as step_lib

    model = models.build(spec["kind"], cfg)
    batch, head = seqpt_batch(spec, ids)
    mesh, rules = P.make_mesh((-1, 1, 1)), P.rules("dp")
    shapes = models.param_shapes(model)
    shardings = P.shardings(models.logical_axes(model), shapes, rules, mesh)
    tx = optax.adamw(LR)
    if spec["clip"]:
        tx = optax.chain(optax.clip_by_global_norm(spec["clip"]), tx)
    state = state_lib.create(state_lib.fresh_init(model), tx, shapes, shardings, mesh, seed=0)
    trainable = freezing.all_trainable(shapes)
    step = step_lib.make_train_step(model, tx, lambda s: LR, trainable, mesh, rules)
    batch = data.to_global(batch, mesh)
    flops = perf.train_flops(spec["kind"], cfg, shapes, trainable, spec["batch"], spec["inputs"],
                             spec["targets"], head)["total"]
    traced = jaxpr_flops.jaxpr_flops(step.trace(state, batch))
    holder = {"state": state}

    def run(n: int) -> float:
        jax.block_until_ready(holder["state"])
        t0 = time.perf_counter()
        for _ in range(n):
            holder["state"], metrics = step(holder["state"], batch)
        jax.block_until_ready((holder["state"], metrics))
        return time.perf_counter() - t0

    return run, flops, traced


def hf_model(spec: dict, attn_implementation: str | None = None):
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
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if spec["kind"] == "encoder_decoder":
        config = transformers.T5Config(
            vocab_size=d["vocab_size"], d_model=d["d_model"], d_kv=d["head_dim"], d_ff=d["d_ff"],
            num_layers=d["num_encoder_layers"], num_decoder_layers=d["num_decoder_layers"],
            num_heads=d["num_heads"], feed_forward_proj="gated-gelu", dropout_rate=0.0,
            tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0, **extra)
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
        attention_probs_dropout_prob=0.0, max_position_embeddings=512, **extra))


def hf_side(spec: dict, ids: dict, gpu: bool = False):
    """(run(n) -> seconds for n train steps of the same config in transformers, a description).
    `gpu`: on the CUDA device, bf16 autocast, fused AdamW; else float32 on the CPU's cores."""
    import contextlib
    model = hf_model(spec, "sdpa")
    import torch
    device = torch.device("cuda" if gpu else "cpu")
    if gpu and not torch.cuda.is_available():
        raise UserError("jax runs on a GPU but this torch has no CUDA; install a CUDA torch wheel "
                        "to time HF on the same device.")
    if not gpu:
        torch.set_num_threads(os.cpu_count() or 1)
    model.to(device)
    if spec["kind"] == "encoder_decoder":
        batch = {"input_ids": torch.from_numpy(ids["inputs"]).long(),
                 "labels": torch.from_numpy(ids["targets"]).long()}
    else:
        labels = np.where(ids["weights"] > 0, ids["targets"], -100)
        batch = {"input_ids": torch.from_numpy(ids["inputs"]).long(), "labels": torch.from_numpy(labels).long()}
    batch = {k: v.to(device) for k, v in batch.items()}
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, **({"fused": True} if gpu else {}))
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if gpu else contextlib.nullcontext
    sync = torch.cuda.synchronize if gpu else (lambda: None)

    def run(n: int) -> float:
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            with autocast():
                loss = model(**batch).loss
            loss.backward()
            if spec["clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), spec["clip"])
            opt.step()
        sync()
        return time.perf_counter() - t0

    how = (f"{device.type}, {'bf16 autocast, fused AdamW' if gpu else 'float32'}, "
           f"attention {model.config._attn_implementation}")  # noqa: SLF001 - what HF really runs
    return run, how


def compare(name: str, cfgs, rounds: int = 3, steps: int = 2, log=print, require_hf: bool = True) -> dict:
    """Times seqpt (one or several configs: {label: cfg}, or one cfg) and HF alternately;
    returns medians (ms/step), tokens/s, MFU and each seqpt config's ratio to HF.
    `require_hf=False`: where HF cannot run here (no torch, or no CUDA torch beside a GPU jax),
    seqpt is timed alone and the HF figures are None."""
    from seqpt_jax.train import perf
    cfgs = cfgs if isinstance(cfgs, dict) else {"seqpt": cfgs}
    spec = CONFIGS[name]
    ids = make_batch(spec)
    sides, traced = {}, {}
    for label, cfg in cfgs.items():
        sides[label], flops, traced[label] = seqpt_side(spec, ids, cfg)
    try:
        sides["hf"], hf_how = hf_side(spec, ids, on_gpu())
    except UserError as e:
        if require_hf:
            raise
        hf_how = f"not run: {e}"
    for run in sides.values():
        run(2)  # compile / warm-up
    times = {k: [] for k in sides}
    for r in range(rounds):
        for side, run in sides.items():
            times[side].append(run(steps) / steps)
        log(f"  round {r + 1}: " + ", ".join(f"{k} {1e3 * v[-1]:.1f} ms/step" for k, v in times.items()))
    tokens = spec["batch"] * (spec["inputs"] + spec["targets"])
    med = {k: statistics.median(v) for k, v in times.items()}
    hf = med.get("hf")
    peak, note = perf.peak_flops_per_device()
    seqpt = {k: {"ms": 1e3 * med[k], "tokens_per_s": tokens / med[k], "ratio": hf / med[k] if hf else None,
                 "mfu": flops / med[k] / peak, "jaxpr_gflop": traced[k] / 1e9} for k in cfgs}
    first = seqpt[next(iter(cfgs))]
    return {"config": name, "shape": _shape(spec), "ms_seqpt": first["ms"], "ms_hf": hf and 1e3 * hf,
            "tokens_per_s_seqpt": first["tokens_per_s"], "tokens_per_s_hf": hf and tokens / hf,
            "ratio": first["ratio"], "mfu_seqpt": first["mfu"], "mfu_hf": hf and flops / hf / peak,
            "seqpt": seqpt, "hf": hf_how, "gflop_per_step": flops / 1e9, "peak": note, "steps": steps,
            "rounds": {k: [round(1e3 * x, 2) for x in v] for k, v in times.items()}}


def _shape(spec: dict) -> str:
    tail = f" -> {spec['targets']}" if spec["targets"] else ""
    return f"vocab {spec['dims']['vocab_size']:,}, {spec['batch']} x {spec['inputs']}{tail}"


def report(r: dict) -> str:
    rounds = len(next(iter(r["rounds"].values())))
    rows = [f"{r['config']} ({r['shape']}): medians of {rounds} alternating rounds of {r['steps']} steps "
            f"({r['gflop_per_step']:.1f} GFLOP per seqpt step)"]
    width = max(len(k) for k in r["seqpt"]) + 2
    for label, s in r["seqpt"].items():
        vs = f"  {s['ratio']:.2f}x HF" if s["ratio"] else ""
        rows.append(f"  {label:<{width}} {s['ms']:8.1f} ms/step {s['tokens_per_s']:10,.0f} tokens/s  "
                    f"MFU {100 * s['mfu']:.1f}%{vs}")
    if r["ms_hf"]:
        rows.append(f"  {'hf':<{width}} {r['ms_hf']:8.1f} ms/step {r['tokens_per_s_hf']:10,.0f} tokens/s  "
                    f"(same FLOPs: {100 * r['mfu_hf']:.1f}%)  [{r['hf']}]")
    else:
        rows.append(f"  hf: {r['hf']}")
    rows.append(f"  peak: {r['peak']}")
    return "\n".join(rows)


def markdown(r: dict) -> str:
    """`compare`'s result as a markdown section: one row per seqpt config, then HF."""
    rounds = len(next(iter(r["rounds"].values())))
    lines = [f"## {r['config']} ({r['shape']}), medians of {rounds} rounds x {r['steps']} steps", "",
             "| side | ms/step | tokens/s | MFU | vs HF | ledger GFLOP | jaxpr GFLOP |",
             "|---|---|---|---|---|---|---|"]
    for label, s in r["seqpt"].items():
        vs = f"{s['ratio']:.2f}x" if s["ratio"] else "—"
        lines.append(f"| seqpt, {label} | {s['ms']:.1f} | {s['tokens_per_s']:,.0f} | {100 * s['mfu']:.1f}% | "
                     f"{vs} | {r['gflop_per_step']:.1f} | {s['jaxpr_gflop']:.1f} |")
    if r["ms_hf"]:
        lines.append(f"| HF ({r['hf']}) | {r['ms_hf']:.1f} | {r['tokens_per_s_hf']:,.0f} | "
                     f"({100 * r['mfu_hf']:.1f}%) | 1.00x | | |")
    else:
        lines.append(f"| HF: {r['hf']} | | | | | | |")
    return "\n".join(lines + ["", f"peak: {r['peak']}"])
