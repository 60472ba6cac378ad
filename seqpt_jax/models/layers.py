"""Building blocks: norms, attention with an explicit heads axis, MLP, relative position bias.

Every parameter is created through `nn.with_logical_partitioning`, so its logical axis names
(`vocab, embed, heads, kv, mlp, relpos_buckets`; `layers` is added by the scan) travel with it.
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from seqpt_jax.errors import UserError
from seqpt_jax.models.config import TransformerConfig

Array = jax.Array


def _constrain(x: Array, axes: tuple) -> Array:
    """Logical sharding hint for an activation (a no-op outside a mesh/rules context)."""
    return nn.with_logical_constraint(x, axes)


def _init(cfg: TransformerConfig, fan_in: int) -> nn.initializers.Initializer:
    """BERT uses N(0, 0.02); T5 scales by fan-in (T5X's variance scaling, 'fan_in', normal)."""
    if cfg.family == "bert":
        return nn.initializers.normal(0.02)
    return nn.initializers.normal(fan_in ** -0.5)


def _param(module: nn.Module, name: str, init, shape: tuple, axes: tuple) -> Array:
    return module.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.float32)


def activation(cfg: TransformerConfig):
    """The MLP (and MLM head) nonlinearity: exact GELU (BERT), tanh GELU (T5 v1.1), or ReLU."""
    return {"gelu": lambda v: jax.nn.gelu(v, approximate=False),
            "gelu_tanh": lambda v: jax.nn.gelu(v, approximate=True),
            "relu": jax.nn.relu}[cfg.activation]


class Norm(nn.Module):
    """LayerNorm (scale + bias, mean-centred) or RMSNorm (scale only), computed in float32."""

    cfg: TransformerConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.cfg
        dim = x.shape[-1]
        x32 = x.astype(jnp.float32)
        scale = _param(self, "scale", nn.initializers.ones, (dim,), ("embed",))
        if cfg.norm == "rmsnorm":
            y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), -1, keepdims=True) + cfg.norm_eps)
            return (y * scale).astype(cfg.compute_dtype)
        mean = jnp.mean(x32, -1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), -1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + cfg.norm_eps)
        bias = _param(self, "bias", nn.initializers.zeros, (dim,), ("embed",))
        return (y * scale + bias).astype(cfg.compute_dtype)


def dense(x: Array, kernel: Array, n_in: int, dtype) -> Array:
    """x @ kernel in `dtype`, contracting the last `n_in` axes of x with the first of kernel."""
    # Contract a 2-D [tokens, features] operand: the weight gradient's transpose then folds
    # into the dot. Over [batch, length, ...] XLA CPU materialises the transposed activation
    # gradient instead (a copy as large as the MLP's hidden state, ~40% of a small T5 step).
    lead = x.shape[:x.ndim - n_in]
    x = x.reshape((-1,) + x.shape[len(lead):])
    contract = (tuple(range(x.ndim - n_in, x.ndim)), tuple(range(n_in)))
    y = jax.lax.dot_general(x.astype(dtype), kernel.astype(dtype), (contract, ((), ())))
    return y.reshape(lead + y.shape[x.ndim - n_in:])


class DenseGeneral(nn.Module):
    """y = x @ kernel (+ bias) contracting the last `len(in_shape)` axes of x.

    Kernels keep their natural multi-axis shape (`[embed, heads, kv]`, `[heads, kv, embed]`), so
    width mappings can act on named axes.
    """

    cfg: TransformerConfig
    in_shape: tuple
    out_shape: tuple
    axes: tuple  # logical names of kernel axes (in + out)
    init_fan_in: Optional[int] = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.cfg
        fan_in = self.init_fan_in or int(np.prod(self.in_shape))
        kernel = _param(self, "kernel", _init(cfg, fan_in), self.in_shape + self.out_shape, self.axes)
        n_in = len(self.in_shape)
        y = dense(x, kernel, n_in, cfg.compute_dtype)
        if cfg.use_bias:
            bias = _param(self, "bias", nn.initializers.zeros, self.out_shape, self.axes[n_in:])
            y = y + bias.astype(cfg.compute_dtype)
        return y


_FUSED_DTYPES = (jnp.bfloat16, jnp.float16)  # cuDNN's fused attention takes no float32


def _scale(cfg: TransformerConfig) -> float:
    """T5 folds 1/sqrt(head_dim) into the query init and uses no scaling at attention time."""
    return 1.0 if cfg.family == "t5" else 1.0 / math.sqrt(cfg.head_dim)


def _shape_key(x: Optional[Array]):
    return None if x is None else (tuple(x.shape), jnp.dtype(x.dtype).name)


@functools.lru_cache(maxsize=None)
def _compiles(impl: str, q, k, bias, mask, scale: float, causal: bool) -> bool:
    """Whether attention of this exact pattern (shapes, dtypes, bias/mask broadcast, causal)
    lowers and compiles with `impl`, forward and backward. jax checks some limits at trace time
    (dtype, head_dim <= 128/256 and a multiple of 8, even lengths with a bias in training) and
    cuDNN others only when it builds its plan (e.g. which bias gradients it can produce), so the
    probe compiles the real pattern once; a bias gets a gradient as the T5 position bias does."""
    args = [jax.ShapeDtypeStruct(*q), jax.ShapeDtypeStruct(*k), jax.ShapeDtypeStruct(*k)]
    args += [jax.ShapeDtypeStruct(*x) for x in (bias, mask) if x is not None]

    def loss(query, key, value, *rest):
        b = rest[0] if bias is not None else None
        m = rest[-1] if mask is not None else None
        out = jax.nn.dot_product_attention(query, key, value, bias=b, mask=m, scale=scale,
                                           is_causal=causal, implementation=impl)
        return jnp.sum(out.astype(jnp.float32))

    argnums = (0, 1, 2, 3) if bias is not None else (0, 1, 2)
    try:
        jax.jit(jax.grad(loss, argnums)).lower(*args).compile()
    except Exception:  # noqa: BLE001 - any refusal (trace-time check or cuDNN plan) means "no"
        return False
    return True


def attention_implementation(cfg: TransformerConfig, query: Array, key: Array, bias: Optional[Array],
                             mask: Optional[Array], causal: bool = False, decode: bool = False,
                             backend: Optional[str] = None) -> str:
    """'xla' or 'cudnn' for one attention call, decided at trace time from `cfg.attention_impl`,
    the backend and the call's shapes. 'auto' takes cuDNN's fused kernel only on a GPU, in
    bf16/fp16, outside step-by-step decoding (a growing cache), and where the pattern compiles
    (`_compiles`); everything else runs the XLA path."""
    if cfg.attention_impl != "auto":
        return cfg.attention_impl
    backend = backend or jax.default_backend()
    if decode or backend != "gpu" or query.dtype not in _FUSED_DTYPES:
        return "xla"
    pattern = (_shape_key(query), _shape_key(key), _shape_key(bias), _shape_key(mask), _scale(cfg), causal)
    return "cudnn" if _compiles("cudnn", *pattern) else "xla"


def attend(cfg: TransformerConfig, query: Array, key: Array, value: Array, bias: Optional[Array],
           mask: Optional[Array], causal: bool = False, decode: bool = False) -> Array:
    """softmax(q k^T * scale + bias, masked) v over `[batch, length, heads, kv]` operands, through
    `jax.nn.dot_product_attention` with the implementation `attention_implementation` picks.
    `causal` (decoder self-attention; `mask` already holds it) lets cuDNN skip the upper
    triangle; the XLA path gets the mask alone, as before."""
    if bias is not None:
        bias = bias.astype(query.dtype)
    impl = attention_implementation(cfg, query, key, bias, mask, causal, decode)
    if impl == "cudnn" and jax.default_backend() != "gpu":
        raise UserError(f"attention_impl='cudnn' needs an NVIDIA GPU, and this backend is "
                        f"{jax.default_backend()}; set models.preset.attention_impl = 'auto' or 'xla'.")
    return jax.nn.dot_product_attention(query, key, value, bias=bias, mask=mask, scale=_scale(cfg),
                                        is_causal=causal and impl == "cudnn", implementation=impl)


class Attention(nn.Module):
    """Multi-head attention through `jax.nn.dot_product_attention` (fused where available).

    `decode=True` (decoder self-attention at generation time) keeps keys and values in the
    "cache" collection (`cached_key`, `cached_value`, `cache_index`), as Flax's
    MultiHeadDotProductAttention does: the first call, with the full target length, only
    creates the zero cache; later calls append this step's keys/values and attend to the
    cache prefix, causal within the step. Params are the same in both modes.
    """

    cfg: TransformerConfig
    decode: bool = False
    causal: bool = False  # decoder self-attention (the mask is causal): see `attend`

    def _update_cache(self, key: Array, value: Array, mask: Optional[Array]):
        initialized = self.has_variable("cache", "cached_key")
        cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
        cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
        if not initialized:
            return key, value, mask
        index, steps, length = cache_index.value, key.shape[1], cached_key.value.shape[1]
        cached_key.value = jax.lax.dynamic_update_slice(cached_key.value, key, (0, index, 0, 0))
        cached_value.value = jax.lax.dynamic_update_slice(cached_value.value, value, (0, index, 0, 0))
        cache_index.value = index + steps
        visible = jnp.arange(length)[None, :] <= index + jnp.arange(steps)[:, None]  # [q, k]
        visible = visible[None, None]
        mask = visible if mask is None else mask & visible
        return cached_key.value, cached_value.value, mask

    @nn.compact
    def __call__(self, x: Array, kv_input: Array, mask: Optional[Array],
                 bias: Optional[Array], deterministic: bool) -> Array:
        cfg = self.cfg
        d, h, k = cfg.d_model, cfg.num_heads, cfg.head_dim
        qkv_axes = ("embed", "heads", "kv")
        # T5's query init carries 1/sqrt(head_dim) (see `_scale`).
        q_fan_in = d * k if cfg.family == "t5" else d
        query = DenseGeneral(cfg, (d,), (h, k), qkv_axes, init_fan_in=q_fan_in, name="query")(x)
        key = DenseGeneral(cfg, (d,), (h, k), qkv_axes, name="key")(kv_input)
        value = DenseGeneral(cfg, (d,), (h, k), qkv_axes, name="value")(kv_input)
        query = _constrain(query, ("batch", "length", "heads", "kv"))
        key = _constrain(key, ("batch", "length", "heads", "kv"))
        value = _constrain(value, ("batch", "length", "heads", "kv"))
        if self.decode:
            key, value, mask = self._update_cache(key, value, mask)
        out = attend(cfg, query, key, value, bias, mask, self.causal, self.decode)
        if cfg.dropout_rate and not deterministic:
            out = nn.Dropout(cfg.dropout_rate)(out, deterministic=False)
        out = _constrain(out, ("batch", "length", "heads", "kv"))
        return DenseGeneral(cfg, (h, k), (d,), ("heads", "kv", "embed"), name="out")(out)


class Mlp(nn.Module):
    """Feed-forward block: act(x wi) wo, or gated act(x wi_0) * (x wi_1) wo."""

    cfg: TransformerConfig

    @nn.compact
    def __call__(self, x: Array, deterministic: bool) -> Array:
        cfg = self.cfg
        act = activation(cfg)
        axes_in = ("embed", "mlp")
        if cfg.gated_mlp:
            h = act(DenseGeneral(cfg, (cfg.d_model,), (cfg.d_ff,), axes_in, name="wi_0")(x))
            h = h * DenseGeneral(cfg, (cfg.d_model,), (cfg.d_ff,), axes_in, name="wi_1")(x)
        else:
            h = act(DenseGeneral(cfg, (cfg.d_model,), (cfg.d_ff,), axes_in, name="wi")(x))
        h = _constrain(h, ("batch", "length", "mlp"))
        if cfg.dropout_rate and not deterministic:
            h = nn.Dropout(cfg.dropout_rate)(h, deterministic=False)
        return DenseGeneral(cfg, (cfg.d_ff,), (cfg.d_model,), ("mlp", "embed"), name="wo")(h)


def relative_position_buckets(q_pos: np.ndarray, k_pos: np.ndarray, bidirectional: bool,
                              num_buckets: int, max_distance: int):
    """T5's bucketing of (key - query) distances; exact below num_buckets/2, log-spaced above."""
    rel = k_pos[..., None, :] - q_pos[..., :, None]
    xp = jnp if isinstance(rel, jax.Array) else np
    buckets = 0
    if bidirectional:
        num_buckets //= 2
        buckets = (rel > 0).astype(np.int32) * num_buckets
        rel = xp.abs(rel)
    else:
        rel = -xp.minimum(rel, 0)
    max_exact = num_buckets // 2
    is_small = rel < max_exact
    safe = xp.maximum(rel, 1).astype(np.float32)
    large = max_exact + (xp.log(safe / np.float32(max_exact)) / np.float32(math.log(max_distance / max_exact))
                         * (num_buckets - max_exact)).astype(np.int32)
    large = xp.minimum(large, num_buckets - 1)
    return buckets + xp.where(is_small, rel, large)


class RelativePositionBias(nn.Module):
    """Learned per-head scalar bias per distance bucket, shared by all layers of a stack."""

    cfg: TransformerConfig
    bidirectional: bool

    @nn.compact
    def __call__(self, q_pos: Array, k_pos: Array) -> Array:
        cfg = self.cfg
        table = _param(self, "rel_embedding", nn.initializers.normal(cfg.num_heads ** -0.5),
                       (cfg.relpos_buckets, cfg.num_heads), ("relpos_buckets", "heads"))
        buckets = relative_position_buckets(q_pos, k_pos, self.bidirectional,
                                            cfg.relpos_buckets, cfg.relpos_max_distance)
        bias = jnp.take(table, buckets, axis=0)  # [..., q, k, heads]
        bias = jnp.moveaxis(bias, -1, -3)  # [..., heads, q, k]
        return bias if bias.ndim == 4 else bias[None]
