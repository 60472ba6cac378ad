"""`seqpt bench gpu-suite --out DIR`: the one-shot GPU check of issue 23, in one process.

  1. attention: whole models (both families, bf16, packed + padded batches) with cuDNN's fused
     attention against the XLA path: loss and gradients; and which implementation `auto` picks
     for every attention pattern of the benchmark shapes (models.layers.attention_implementation).
  2. loss: the chunked vocabulary loss against materialised logits on this device (bf16 and
     float32, a 250,112-row head), loss and gradients, and the compiled steps' temporary memory.
  3. bench: `seqpt bench train --vs hf` at each size, seqpt under hw/gpu.gin beside the same with
     the XLA attention and materialised logits (issue 23's "unrolled" column), HF alternating
     (`--ablate`: also each setting off alone, and the rolled scan).

Each stage's results are written as they finish (DIR/gpu_suite.json, DIR/gpu_suite.md), so a
run cut short keeps what it measured. On a CPU it runs too (`--size tiny`: seconds), with
cuDNN reported as unavailable: that is how the suite itself is tested. Run it with
XLA_PYTHON_CLIENT_MEM_FRACTION=0.5 so torch has room beside JAX (bench/gpu_check.sh does).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import traceback

import numpy as np

from seqpt_jax.bench import vs_hf

# label -> gin bindings on top of the hw gin (hw/gpu.gin on a GPU, hw/cpu.gin on a CPU).
VARIANTS = {"hw gin": [],
            "unrolled only (xla attention, logits)": ["models.preset.attention_impl = 'xla'",
                                                      "models.preset.loss_chunk = 0"]}
ABLATIONS = {"attention xla": ["models.preset.attention_impl = 'xla'"],
             "loss_chunk 0": ["models.preset.loss_chunk = 0"],
             "rolled scan, xla, logits": ["models.preset.scan_unroll = 1", "models.preset.attention_impl = 'xla'",
                                          "models.preset.loss_chunk = 0"]}


def _environment() -> dict:
    import jax
    env = {"jax": jax.__version__, "backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
           "python": platform.python_version(), "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    try:
        import torch
        env["torch"] = torch.__version__
        env["torch_cuda"] = torch.cuda.is_available()
    except ImportError:
        env["torch"] = None
    try:
        from jax._src import cuda_versions  # noqa: SLF001 - the only place jax reports it
        env["cudnn"] = cuda_versions.cudnn_get_version() if cuda_versions else None
    except Exception:  # noqa: BLE001
        env["cudnn"] = None
    return env


def _positions(segments: np.ndarray) -> np.ndarray:
    """Positions of two examples packed per row (segment 2 starts halfway): each counts from 0."""
    n = segments.shape[-1]
    return np.where(segments == 2, np.arange(n) - n // 2, np.arange(n)).astype(np.int32)


def _model_and_batch(family: str, vocab: int = 1000, b: int = 8, length: int = 128, targets: int = 32,
                     d_model: int = 128, layers: int = 2, **kw):
    """A small model with cuDNN-friendly heads (head_dim 64) and a packed + padded batch."""
    from seqpt_jax import models
    cfg = models.preset("t5-tiny" if family == "t5" else "bert-tiny", vocab_size=vocab, d_model=d_model,
                        num_heads=d_model // 64, head_dim=64, d_ff=2 * d_model, num_encoder_layers=layers,
                        num_decoder_layers=layers, dropout_rate=0.0, max_length=length, **kw)
    rng = np.random.default_rng(0)
    tokens = rng.integers(5, vocab, (b, length)).astype(np.int32)
    seg = np.ones((b, length), np.int32)
    seg[:, length // 2:] = 2  # two packed examples per row ...
    seg[::2, -length // 8:] = 0  # ... and trailing padding in every other row
    tokens[seg == 0] = 0
    batch = {"encoder_input_tokens": tokens, "encoder_segment_ids": seg, "encoder_positions": _positions(seg)}
    if family == "t5":
        kind = "encoder_decoder"
        t = rng.integers(5, vocab, (b, targets)).astype(np.int32)
        dseg = np.ones((b, targets), np.int32)
        dseg[:, targets // 2:] = 2
        shifted = np.concatenate([np.zeros_like(t[:, :1]), t[:, :-1]], 1)
        batch.update(decoder_target_tokens=t, decoder_input_tokens=shifted, decoder_segment_ids=dseg,
                     decoder_loss_weights=np.ones(t.shape, np.float32), decoder_positions=_positions(dseg))
    else:
        kind = "encoder_mlm"
        w = ((rng.random((b, length)) < 0.15) & (seg > 0)).astype(np.float32)
        batch.update(mlm_targets=rng.integers(5, vocab, (b, length)).astype(np.int32), mlm_weights=w)
    return kind, cfg, batch


def _loss_and_grads(kind, cfg, batch, params=None):
    """(params, loss, gradients, MB of the compiled step's temporaries or None) on this device."""
    import jax

    from seqpt_jax import models
    from seqpt_jax.train import step as step_lib
    model = models.build(kind, cfg)
    if params is None:
        params = models.init(model, jax.random.key(0), {k: v for k, v in batch.items() if k.endswith("input_tokens")})
    f = jax.jit(jax.value_and_grad(lambda p: step_lib._loss_sums(model, p, batch, None, 1e-4, train=False).loss))  # noqa: SLF001
    compiled = f.lower(params).compile()
    try:
        temp_mb = round(compiled.memory_analysis().temp_size_in_bytes / 2 ** 20, 1)
    except Exception:  # noqa: BLE001 - not every backend reports it
        temp_mb = None
    loss, grads = compiled(params)
    return params, float(loss), grads, temp_mb


def _grad_diff(a, b) -> float:
    """max over leaves of |a - b| / max|b| (0 for equal trees)."""
    import jax
    return max(float(np.abs(np.asarray(x, np.float32) - np.asarray(y, np.float32)).max()
                     / max(float(np.abs(np.asarray(y, np.float32)).max()), 1e-30))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _patterns(name: str) -> list[tuple]:
    """The attention calls of benchmark config `name`: (what, q, k, bias, mask, causal)."""
    import jax
    import jax.numpy as jnp
    spec = vs_hf.CONFIGS[name]
    d, b, li, lt = spec["dims"], spec["batch"], spec["inputs"], spec["targets"]
    sds = jax.ShapeDtypeStruct
    q = lambda length: sds((b, length, d["num_heads"], d["head_dim"]), jnp.bfloat16)  # noqa: E731
    relative = spec["kind"] == "encoder_decoder"  # the comparison's T5 models; its BERTs: absolute
    bias = lambda lq, lk: sds((1, d["num_heads"], lq, lk), jnp.bfloat16) if relative else None  # noqa: E731
    mask = lambda lq, lk: sds((b, 1, lq, lk), jnp.bool_)  # noqa: E731
    out = [("encoder self-attention", q(li), q(li), bias(li, li), mask(li, li), False)]
    if lt:
        out += [("decoder self-attention (causal)", q(lt), q(lt), bias(lt, lt), sds((1, 1, lt, lt), jnp.bool_), True),
                ("cross-attention", q(lt), q(li), None, mask(lt, li), False)]
    return out


def attention_stage(names) -> dict:
    import jax

    from seqpt_jax.models import layers
    out = {"models": {}, "auto_choice": {}}
    for family in ("bert", "t5"):
        row = {}
        kind, cfg, batch = _model_and_batch(family, dtype="bfloat16", attention_impl="xla")
        params, ref_loss, ref_grads, _ = _loss_and_grads(kind, cfg, batch)
        row["xla_loss"] = ref_loss
        if jax.default_backend() != "gpu":
            row["cudnn"] = f"not run: backend {jax.default_backend()} (cuDNN needs an NVIDIA GPU)"
            _, auto_loss, auto_grads, _ = _loss_and_grads(kind, cfg.replace(attention_impl="auto"), batch, params)
            row.update(auto_loss=auto_loss, auto_grad_rel_diff=_grad_diff(auto_grads, ref_grads))
        else:
            try:
                _, loss, grads, _ = _loss_and_grads(kind, cfg.replace(attention_impl="cudnn"), batch, params)
                row.update(cudnn_loss=loss, loss_abs_diff=abs(loss - ref_loss),
                           grad_rel_diff=_grad_diff(grads, ref_grads), ok=abs(loss - ref_loss) < 2e-2 * abs(ref_loss))
            except Exception as e:  # noqa: BLE001 - report what cuDNN refused
                row["cudnn"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
        out["models"][family] = row
    for name in names:
        cfg = _bench_cfg(name, [])
        out["auto_choice"][name] = {
            what: layers.attention_implementation(cfg.replace(attention_impl="auto"), q, k, bias, mask, causal)
            for what, q, k, bias, mask, causal in _patterns(name)}
    return out


# The loss stage's model: mT5-small's head (vocab 250,112, d 512) over 64 x 114 targets, one
# layer each side; "tiny" (CPU): a 4096-row head over 8 x 32 targets.
LOSS_SHAPES = {"gpu": dict(vocab=250112, b=64, length=128, targets=114, d_model=512, layers=1, chunk=2048),
               "tiny": dict(vocab=4096, b=8, length=128, targets=32, d_model=128, layers=1, chunk=64)}


def loss_stage(shape: dict) -> dict:
    """Chunked vs materialised loss on this device: loss, gradients, temporary memory."""
    shape = dict(shape)
    chunk = shape.pop("chunk")
    out = {"shape": dict(shape, chunk=chunk)}
    for dtype in ("float32", "bfloat16"):
        kind, cfg, batch = _model_and_batch("t5", dtype=dtype, **shape)
        params, ref_loss, ref_grads, ref_mb = _loss_and_grads(kind, cfg, batch)
        _, loss, grads, mb = _loss_and_grads(kind, cfg.replace(loss_chunk=chunk), batch, params)
        row = {"loss_logits": ref_loss, "loss_chunked": loss, "loss_rel_diff": abs(loss - ref_loss) / abs(ref_loss),
               "grad_rel_diff": _grad_diff(grads, ref_grads), "temp_mb_loss_chunk_0": ref_mb,
               f"temp_mb_loss_chunk_{chunk}": mb}
        out[dtype] = row
    return out


def _bench_cfg(name: str, bindings: list[str]):
    return vs_hf.seqpt_config(name, [], bindings)


def bench_stage(names, rounds: int, steps: int, ablate: bool, log=print) -> dict:
    out = {}
    variants = {**VARIANTS, **(ABLATIONS if ablate else {})}
    for name in names:
        cfgs = {label: _bench_cfg(name, b) for label, b in variants.items()}
        out[name] = vs_hf.compare(name, cfgs, rounds=rounds, steps=steps, log=log, require_hf=False)
        log(vs_hf.report(out[name]))
    return out


def markdown(results: dict) -> str:
    env = results.get("environment", {})
    lines = ["# seqpt bench gpu-suite", "", f"{env.get('device')} ({env.get('backend')}), jax {env.get('jax')}, "
             f"torch {env.get('torch')}, cuDNN {env.get('cudnn')}, {env.get('time_utc')} UTC", ""]
    att = results.get("attention")
    if att:
        lines += ["## Attention: cuDNN vs XLA (bf16, packed + padded, 2+2 layers, head_dim 64)", "",
                  "| family | result |", "|---|---|"]
        for fam, row in att["models"].items():
            lines.append(f"| {fam} | " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                                for k, v in row.items()) + " |")
        lines += ["", "`auto` picks, per attention call of each benchmark shape:", ""]
        for name, picks in att["auto_choice"].items():
            lines.append(f"- {name}: " + "; ".join(f"{w}: {p}" for w, p in picks.items()))
        lines.append("")
    loss = results.get("loss")
    if loss:
        sh = loss["shape"]
        lines += [f"## Chunked loss (chunk {sh['chunk']}) vs materialised logits: vocab {sh['vocab']:,}, "
                  f"{sh['b']} x {sh['targets']} targets, d {sh['d_model']}", "",
                  "| dtype | loss rel. diff | grad rel. diff | temp MB, logits | temp MB, chunked |",
                  "|---|---|---|---|---|"]
        for dt in ("float32", "bfloat16"):
            r, chunked = loss[dt], f"temp_mb_loss_chunk_{sh['chunk']}"
            lines.append(f"| {dt} | {r['loss_rel_diff']:.2e} | {r['grad_rel_diff']:.2e} | "
                         f"{r['temp_mb_loss_chunk_0']} | {r[chunked]} |")
        lines.append("")
    for r in results.get("bench", {}).values():
        lines += [vs_hf.markdown(r), ""]
    for stage, err in results.get("errors", {}).items():
        lines += [f"**{stage} failed**: `{err}`", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    from seqpt_jax.errors import UserError
    parser = argparse.ArgumentParser(prog="seqpt bench gpu-suite", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for gpu_suite.json and gpu_suite.md")
    parser.add_argument("--size", choices=["gpu", "bert-base", "mt5-small", "tiny"], default="gpu",
                        help="benchmark configs (gpu = bert-base and mt5-small; tiny = seconds on a CPU)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round (default 10 on a GPU, 2 else)")
    parser.add_argument("--ablate", action="store_true", help="also time each setting off alone, and the rolled scan")
    parser.add_argument("--stages", default="attention,loss,bench", help="comma-separated subset to run")
    args = parser.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    if unknown := sorted(set(stages) - {"attention", "loss", "bench"}):
        raise UserError(f"--stages {unknown[0]!r} is unknown; use attention, loss, bench.")
    if args.rounds < 3:
        raise UserError(f"--rounds {args.rounds} gives no median worth reading; use at least 3.")
    os.makedirs(args.out, exist_ok=True)
    names = vs_hf.SIZES[args.size]
    steps = args.steps or (10 if vs_hf.on_gpu() else 2)
    results = {"environment": _environment(), "errors": {}}

    def save():
        with open(os.path.join(args.out, "gpu_suite.json"), "w") as f:
            json.dump(results, f, indent=2, default=str)
        with open(os.path.join(args.out, "gpu_suite.md"), "w") as f:
            f.write(markdown(results))

    loss_shape = LOSS_SHAPES["tiny" if args.size == "tiny" else "gpu"]
    jobs = {"attention": lambda: attention_stage(names), "loss": lambda: loss_stage(loss_shape),
            "bench": lambda: bench_stage(names, args.rounds, steps, args.ablate)}
    for stage in stages:
        t = time.perf_counter()
        print(f"[gpu-suite] {stage} ...", flush=True)
        try:
            results[stage] = jobs[stage]()
        except Exception as e:  # noqa: BLE001 - keep the other stages' results (a UserError too)
            results["errors"][stage] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        results.setdefault("seconds", {})[stage] = round(time.perf_counter() - t, 1)
        save()
        print(f"[gpu-suite] {stage}: {results['seconds'][stage]} s", flush=True)
    print(markdown(results))
    return 1 if results["errors"] else 0
