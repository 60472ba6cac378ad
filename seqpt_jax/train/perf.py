"""Compute accounting: analytical training FLOPs per step, the peak table, MFU.

FLOPs formula (per step; "6N-style" refined per unit of the network):
The network is cut into units in forward order: embeddings, encoder layer 0..L-1, decoder
layer 0..L-1, head (+ the tied output projection). A unit's forward cost is
  F_mm = 2 * sum(kernel sizes) * tokens it sees   (encoder tokens B*Le, decoder tokens B*Ld;
         cross-attention key/value kernels see encoder tokens; the vocabulary projection sees
         every output position)
  F_at = 4 * B * Lq * Lk * heads * head_dim        (scores and weighted sum, per attention)
Its backward cost is
  2 F_mm + 2 F_at   when the unit trains (weight gradients + activation gradients),
  F_mm + 2 F_at     when it is frozen but a unit below it trains (activation gradients only),
  0                 when it is frozen and nothing below it trains (XLA prunes it).
So frozen parts count as forward only, exactly what the stop-gradient step computes; with
everything trainable this is the usual 6 N T + 12 L B T^2 d_attn. Embedding lookups are
gathers (0 FLOPs); norms, softmax and activations are left out, as in the PaLM MFU. An MLM
batch with `mlm_positions` [B, P] runs the head (transform + vocabulary projection) on B * P
positions only, and that is what is counted.
"""

from __future__ import annotations

import re
import time

import jax
import jax.numpy as jnp
import numpy as np

from seqpt_jax.train.optimizers import path_tree

# Dense bf16 peak FLOP/s per chip (vendor datasheets). Matched against `device_kind`.
PEAKS = [
    ("TPU v6 lite", 918e12), ("TPU v6e", 918e12),
    ("TPU v5 lite", 197e12), ("TPU v5e", 197e12), ("TPU v5p", 459e12), ("TPU v5", 459e12),
    ("TPU v4", 275e12),
    ("H200", 989e12), ("H100", 989e12), ("A100", 312e12),
]
_EMBED = re.compile(r"^(token_embedder|position_embedder|token_type_embedder|embedding_norm)/")
_HEAD = re.compile(r"^(mlm_head|lm_head|pooler|classifier)/")


def _units(kind: str, cfg, shapes, trainable, batch: int, enc_len: int, dec_len: int,
           head_len: int | None = None):
    """[(name, F_mm, F_at, trainable)] in forward order. `head_len`: positions per row the
    output head runs on (an MLM batch's `mlm_positions`); default every output position."""
    t_enc, t_dec = batch * enc_len, batch * dec_len
    t_out = t_dec if kind == "encoder_decoder" else t_enc
    if head_len is not None:
        t_out = batch * head_len
    attn = 4 * batch * cfg.num_heads * cfg.head_dim
    units = {"embed": [0.0, 0.0, False]}
    for i in range(cfg.num_encoder_layers):
        units[f"encoder/{i}"] = [0.0, attn * enc_len * enc_len, False]
    if kind == "encoder_decoder":
        for i in range(cfg.num_decoder_layers):
            units[f"decoder/{i}"] = [0.0, attn * dec_len * (dec_len + enc_len), False]
    units["head"] = [0.0, 0.0, False]
    units["output"] = [0.0, 0.0, False]
    flat_paths = jax.tree.leaves(path_tree(shapes))
    for path, x, t in zip(flat_paths, jax.tree.leaves(shapes), jax.tree.leaves(trainable)):
        stack = re.match(r"^(encoder|decoder)/layers/", path)
        tokens = t_enc if path.startswith("encoder") or "cross_attention/key" in path \
            or "cross_attention/value" in path else t_dec
        kernel = path.endswith("kernel")
        if stack:
            n_layers = x.shape[0]
            per_layer = int(np.prod(x.shape[1:]))
            mask = np.broadcast_to(np.asarray(t), (n_layers,))
            for i in range(n_layers):
                u = units[f"{stack.group(1)}/{i}"]
                u[0] += 2.0 * per_layer * tokens if kernel else 0.0
                u[2] = u[2] or bool(mask[i])
            continue
        if _EMBED.match(path):
            units["embed"][2] = units["embed"][2] or bool(np.any(t))
            if path == "token_embedder/embedding" and cfg.tie_embeddings:
                units["output"][0] += 2.0 * int(np.prod(x.shape)) * t_out
                units["output"][2] = bool(np.any(t))
            continue
        name = "head" if _HEAD.match(path) else path.split("/")[0] + "/0"
        u = units.get(name, units["head"])
        u[0] += 2.0 * int(np.prod(x.shape)) * t_out if (kernel and _HEAD.match(path)) else 0.0
        u[2] = u[2] or bool(np.any(t))
    return [(k, *v) for k, v in units.items()]


def train_flops(kind: str, cfg, shapes, trainable, batch: int, enc_len: int, dec_len: int = 0,
                head_len: int | None = None) -> dict:
    """{'forward', 'backward', 'total'} FLOPs of one train step (see the module docstring)."""
    fwd = bwd = 0.0
    below = False
    for _, f_mm, f_at, trains in _units(kind, cfg, shapes, trainable, batch, enc_len, dec_len, head_len):
        fwd += f_mm + f_at
        if trains:
            bwd += 2 * f_mm + 2 * f_at
        elif below:
            bwd += f_mm + 2 * f_at
        below = below or trains
    return {"forward": fwd, "backward": bwd, "total": fwd + bwd}


MATMUL_N, MATMUL_REPEATS = 1024, 10


def _best_seconds(run, repeats: int) -> float:
    run()  # warm-up (compile, thread pools)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return best


def matmul_throughput(n: int = MATMUL_N, repeats: int = MATMUL_REPEATS) -> dict[str, float]:
    """{library: FLOP/s} of a float32 n x n matmul, best of `repeats`, for jax and (when it is
    installed) torch on all cores: the same measurement every time, so MFU has a fixed anchor."""
    x = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    out = {"jax": 2.0 * n ** 3 / _best_seconds(lambda: f(x).block_until_ready(), repeats)}
    try:
        import torch
    except ImportError:
        return out
    import os
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        y = torch.ones((n, n), dtype=torch.float32)
        out["torch"] = 2.0 * n ** 3 / _best_seconds(lambda: y @ y, repeats)
    finally:
        torch.set_num_threads(threads)
    return out


_MEASURED: dict = {}


def peak_flops_per_device(device=None) -> tuple[float, str]:
    """(peak FLOP/s, where it came from) for one device of this kind: the datasheet on
    accelerators; on CPU the best large-matmul throughput of jax and torch (`matmul_throughput`)."""
    device = device or jax.devices()[0]
    kind = getattr(device, "device_kind", "") or ""
    for key, peak in PEAKS:
        if key.lower() in kind.lower():
            return peak, f"{kind}: {peak / 1e12:.0f} TFLOP/s bf16 (datasheet)"
    if "cpu" not in _MEASURED:
        # Fake CPU devices share the host's cores: the host peak is split between them.
        local = max(len([d for d in jax.local_devices() if d.platform == "cpu"]), 1)
        libs = matmul_throughput()
        _MEASURED["cpu"] = (max(libs.values()) / local, libs, local)
    peak, libs, local = _MEASURED["cpu"]
    each = ", ".join(f"{k} {v / 1e9:.1f}" for k, v in libs.items())
    split = f" / {local} devices" if local > 1 else ""
    return peak, (f"{kind or device.platform}: {peak / 1e9:.1f} GFLOP/s per device (best f32 "
                  f"{MATMUL_N}^3 matmul of {each} GFLOP/s{split})")


def mfu(flops_per_step: float, step_seconds: float, num_devices: int, peak_per_device: float) -> float:
    return flops_per_step / max(step_seconds, 1e-12) / (num_devices * peak_per_device)


class Throughput:
    """Steady-state timing per phase: windows of steps between syncs, compile and eval/save
    time left out. `close()` syncs on the last step's outputs and books the window."""

    def __init__(self, num_devices: int, peak_per_device: float):
        self.n_dev, self.peak = num_devices, peak_per_device
        self.totals: dict = {}
        self._phase, self._t, self._pending = None, None, None
        self._win = {"steps": 0, "tokens": 0, "flops": 0.0}

    def start(self, phase: str, outputs=None) -> None:
        """Begins timing after `outputs` (e.g. the compile step's metrics) are ready."""
        if outputs is not None:
            jax.block_until_ready(outputs)
        self._phase, self._t = phase, time.perf_counter()
        self._win = {"steps": 0, "tokens": 0, "flops": 0.0}

    def add(self, tokens: int, flops: float, outputs) -> None:
        self._win["steps"] += 1
        self._win["tokens"] += tokens
        self._win["flops"] += flops
        self._pending = outputs

    def close(self) -> dict:
        """Books the current window; returns its rates ({} when empty). Restart with `start`."""
        if self._phase is None or not self._win["steps"]:
            return {}
        jax.block_until_ready(self._pending)
        dt = time.perf_counter() - self._t
        tot = self.totals.setdefault(self._phase, {"seconds": 0.0, "steps": 0, "tokens": 0, "flops": 0.0})
        tot["seconds"] += dt
        for k in ("steps", "tokens", "flops"):
            tot[k] += self._win[k]
        rates = self.rates(dt, **self._win)
        self.start(self._phase)
        return rates

    def rates(self, seconds: float, steps: int, tokens: int, flops: float) -> dict:
        step_time = seconds / max(steps, 1)
        return {"tokens_per_s": tokens / seconds, "step_time": step_time,
                "tflops_per_device": flops / seconds / self.n_dev / 1e12,
                "mfu": mfu(flops / max(steps, 1), step_time, self.n_dev, self.peak)}

    def summary(self) -> dict:
        return {name: {**self.rates(t["seconds"], t["steps"], t["tokens"], t["flops"]), "steps_timed": t["steps"]}
                for name, t in self.totals.items() if t["steps"]}
