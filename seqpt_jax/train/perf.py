"""Compute accounting: analytical training FLOPs per step, the peak table, MFU.

The ledger counts every matrix multiply the train step runs, exactly (a test compares it with
the dot_general FLOPs of the step's jaxpr, `train.jaxpr_flops`). Forward: each kernel costs
2 * size * the tokens it sees (encoder tokens B*Le; decoder tokens B*Ld; cross-attention
key/value kernels see encoder tokens; the MLM head sees `head_positions` per row, default all),
each attention 2 * B * H * D * Lq * Lk for the scores and as much for the weighted sum.
Backward, per multiply y = x W, as JAX's autodiff emits it:
  + the forward cost for dW   when W trains,
  + the forward cost for dx   when x is *live*: it depends on a trainable parameter.
Attention: dQ / dK when Q / K is live, dP when Q, K or the position bias is live, dV when V
is live. Liveness follows the data flow (embeddings -> encoder -> decoder, cross-attention
keys/values from the encoder's output), with one rule from `lax.scan`: a scan's carry is live
in every layer when anything its body reads is (a layer's params, the stack's relpos_bias,
the encoder output in a decoder): the body is one program, so the first layer of a trained
stack pays its input gradient too; a frozen bottom scan (bert2BERT sub-
models, `encoder/layers` below `encoder/layers_top`) runs forward only. Frozen parts with
nothing trainable below them cost forward only; everything trainable gives the usual
6 N T + 12 L B T^2 d_attn. Embedding lookups are gathers (0 FLOPs); norms, softmax,
activations and the optimizer are left out, as in the PaLM MFU.
An MLM batch with `mlm_positions` [B, P] runs the head (transform + vocabulary projection) on
B * P positions only (`head_positions=P`), and that is what is counted.
ELECTRA (kind "electra"): the generator (projection, encoder, MLM head on B * P positions, tied
vocabulary projection), then the discriminator and its RTD head on every position; sampling
is elementwise (0 FLOPs here).
"""

from __future__ import annotations

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
_SEGMENTS = ("layers", "layers_top")  # an encoder split in two scans (train.freezing.SubModel)


class _Ledger:
    """Forward / backward FLOPs of one step, accumulated multiply by multiply."""

    def __init__(self, shapes, trainable):
        self.size, self.live = {}, {}
        for path, x, t in zip(jax.tree.leaves(path_tree(shapes)), jax.tree.leaves(shapes),
                              jax.tree.leaves(trainable)):
            self.size[path] = x.shape
            self.live[path] = bool(np.any(t))
        self.fwd = self.bwd = 0.0

    def trains(self, prefix: str) -> bool:
        """Any parameter under `prefix` trains."""
        return any(v for p, v in self.live.items() if p.startswith(prefix))

    def has(self, prefix: str) -> bool:
        return any(p.startswith(prefix) for p in self.size)

    def matmul(self, flops: float, x_live: bool, w_live: bool) -> None:
        self.fwd += flops
        self.bwd += flops * (int(x_live) + int(w_live))

    def dense(self, prefix: str, tokens: int, x_live: bool, stacked: bool = False) -> bool:
        """y = x W for the kernel at `prefix`/kernel; returns whether y is live."""
        shape = self.size[f"{prefix}/kernel"]
        size = int(np.prod(shape[1:] if stacked else shape))
        w_live = self.trains(prefix + "/")
        self.matmul(2.0 * size * tokens, x_live, self.live[f"{prefix}/kernel"])
        return x_live or w_live

    def attention(self, cfg, batch: int, lq: int, lk: int, q: bool, k: bool, v: bool, bias: bool) -> bool:
        f = 2.0 * batch * cfg.num_heads * cfg.head_dim * lq * lk
        self.fwd += 2 * f
        p = q or k or bias
        self.bwd += f * (int(q) + int(k) + int(p) + int(v))
        return p or v


def _attention_block(led: _Ledger, cfg, pre: str, batch: int, lq: int, lk: int, q_in: bool, kv_in: bool,
                     bias: bool) -> bool:
    """q/k/v projections, attention, output projection of the block at `pre`; output liveness."""
    tq, tk = batch * lq, batch * lk
    q = led.dense(f"{pre}/query", tq, q_in, True)
    k = led.dense(f"{pre}/key", tk, kv_in, True)
    v = led.dense(f"{pre}/value", tk, kv_in, True)
    ctx = led.attention(cfg, batch, lq, lk, q, k, v, bias)
    return led.dense(f"{pre}/out", tq, ctx, True)


def _mlp(led: _Ledger, cfg, pre: str, tokens: int, x: bool) -> bool:
    if cfg.gated_mlp:
        gate, up = led.dense(f"{pre}/wi_0", tokens, x, True), led.dense(f"{pre}/wi_1", tokens, x, True)
        h = gate or up
    else:
        h = led.dense(f"{pre}/wi", tokens, x, True)
    return led.dense(f"{pre}/wo", tokens, h, True)


def _layer(led: _Ledger, cfg, seg: str, decoder: bool, batch: int, lq: int, lk: int, x: bool,
           enc_out: bool, bias: bool) -> bool:
    """One layer of the scan at `seg` (encoder/layers, decoder/layers, ...); output liveness."""
    t, norm_pre = batch * lq, cfg.norm_position == "pre"
    blocks = [("self_attention" if decoder else "attention", None)]
    if decoder:
        blocks.append(("cross_attention", enc_out))
    for name, kv in blocks:
        norm = led.trains(f"{seg}/{name}_norm/")
        h = x or (norm_pre and norm)
        out = _attention_block(led, cfg, f"{seg}/{name}", batch, lq, lk if kv is not None else lq, h,
                               h if kv is None else kv, bias if kv is None else False)
        x = x or out or (not norm_pre and norm)
    norm = led.trains(f"{seg}/mlp_norm/")
    h = x or (norm_pre and norm)
    out = _mlp(led, cfg, f"{seg}/mlp", t, h)  # evaluated first: it books FLOPs
    return x or out or (not norm_pre and norm)


def _stack(led: _Ledger, cfg, stack: str, batch: int, lq: int, lk: int, x: bool, enc_out: bool = False) -> bool:
    """The scans of a stack in order; each scan's carry is live in every layer when any of its
    layers trains (the scan body is one program). Returns the stack output's liveness."""
    bias = led.trains(f"{stack}/relpos_bias/")
    for seg in (f"{stack}/{s}" for s in _SEGMENTS if led.has(f"{stack}/{s}/")):
        n = next(shape[0] for p, shape in led.size.items() if p.startswith(seg + "/"))
        # The body's output carry is live if its params, the shared position bias or (decoder)
        # the encoder's output are: then the carry is live from the first layer on.
        carry = x or led.trains(seg + "/") or bias or enc_out
        saved = (led.fwd, led.bwd)
        _layer(led, cfg, seg, stack == "decoder", batch, lq, lk, carry, enc_out, bias)
        one = (led.fwd - saved[0], led.bwd - saved[1])
        led.fwd, led.bwd = saved[0] + n * one[0], saved[1] + n * one[1]
        x = carry
    return x or led.trains(f"{stack}/final_norm/")


def _vocab(led: _Ledger, cfg, head: str, tokens: int, x: bool) -> None:
    if cfg.tie_embeddings:
        vocab, d = led.size["token_embedder/embedding"]
        led.matmul(2.0 * vocab * d * tokens, x, led.live["token_embedder/embedding"])
    else:
        led.dense(head, tokens, x)


def _electra(led: _Ledger, cfg, batch: int, length: int, head_positions: int | None) -> None:
    """ELECTRA (models.electra): the generator on the shared embeddings (projected to its
    width), its MLM head on the masked positions with the tied vocabulary projection; the
    sampling (0 matmul FLOPs: it reads the logits the MLM loss needs); the discriminator over
    every position and its RTD head. One backward through both: the samples are integers, so
    the generator's gradient comes from its MLM loss only, which the liveness already gives."""
    d, g = "discriminator", "generator"
    q = led.size[f"{g}/encoder/layers/attention/query/kernel"]  # [layers, d_g, heads, head_dim]
    gen_cfg = cfg.replace(d_model=q[1], num_heads=q[2], head_dim=q[3], encoder_scan_split=0)
    tokens, heads = batch * length, batch * (head_positions or length)
    emb = any(led.trains(f"{d}/{p}") for p in ("token_embedder/", "position_embedder/", "token_type_embedder/"))
    x = emb or led.trains(f"{d}/embedding_norm/")
    y = led.dense(f"{g}/embeddings_project", tokens, x) if led.has(f"{g}/embeddings_project/") else x
    y = _stack(led, gen_cfg, f"{g}/encoder", batch, length, length, y)
    h = led.dense(f"{g}/mlm_head/transform", heads, y) or led.trains(f"{g}/mlm_head/transform_norm/")
    vocab, width = led.size[f"{d}/token_embedder/embedding"]
    led.matmul(2.0 * vocab * width * heads, h, led.live[f"{d}/token_embedder/embedding"])
    x = _stack(led, cfg, f"{d}/encoder", batch, length, length, x)
    h = led.dense(f"{d}/rtd_head/transform", tokens, x)
    led.dense(f"{d}/rtd_head/output", tokens, h)


def train_flops(kind: str, cfg, shapes, trainable, batch: int, enc_len: int, dec_len: int = 0,
                head_positions: int | None = None) -> dict:
    """{'forward', 'backward', 'total'} FLOPs of one train step (see the module docstring).

    shapes / trainable: the tree the step's model runs (a sub-model's view for bert2BERT
    stages). head_positions: positions per row the MLM head runs on (default: every one).
    """
    led = _Ledger(shapes, trainable)
    if kind == "electra":
        _electra(led, cfg, batch, enc_len, head_positions)
        return {"forward": led.fwd, "backward": led.bwd, "total": led.fwd + led.bwd}
    emb = any(led.trains(p) for p in ("token_embedder/", "position_embedder/", "token_type_embedder/"))
    x = emb or led.trains("embedding_norm/")
    enc_out = _stack(led, cfg, "encoder", batch, enc_len, enc_len, x)
    if led.has("mlm_head/"):  # MLM head (also an encoder-side loss of a seq2seq model)
        tokens = batch * (head_positions or enc_len)
        h = led.dense("mlm_head/transform", tokens, enc_out) or led.trains("mlm_head/transform_norm/")
        _vocab(led, cfg, "mlm_head/output", tokens, h)
    if kind == "encoder_decoder":
        y = emb or led.trains("decoder/embedding_norm/")
        y = _stack(led, cfg, "decoder", batch, dec_len, enc_len, y, enc_out)
        _vocab(led, cfg, "lm_head", batch * dec_len, y)
    return {"forward": led.fwd, "backward": led.bwd, "total": led.fwd + led.bwd}


def forward_flops(kind: str, cfg, shapes, batch: int, enc_len: int, dec_len: int = 0,
                  head_positions: int | None = None) -> float:
    """FLOPs of a forward pass alone (nothing trains): an evaluation, or a distillation teacher."""
    frozen = jax.tree.map(lambda _: False, shapes)
    return train_flops(kind, cfg, shapes, frozen, batch, enc_len, dec_len, head_positions)["forward"]


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
