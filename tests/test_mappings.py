"""Properties of the mappings on tiny models of both families (random-init weights).

The trained-model checks (loss far below random init, the random-map gap on real text) are in
test_mappings_loss.py.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seqpt_jax import mappings, models
from seqpt_jax.errors import UserError
from seqpt_jax.mappings import checks
from seqpt_jax.mappings.grow import map_flat

VOCAB = 101


def _cfg(family, **kw):
    base = dict(vocab_size=VOCAB, d_model=32, num_heads=2, head_dim=16, d_ff=64, dropout_rate=0.0,
                num_encoder_layers=2, num_decoder_layers=2, max_length=32)
    return models.preset(f"{family}-tiny", **{**base, **kw})


def _batch(kind, seed=0):
    r = np.random.default_rng(seed)
    tokens = r.integers(3, VOCAB, (2, 10)).astype(np.int32)
    tokens[1, 7:] = 0  # padding takes part
    batch = {"encoder_input_tokens": tokens}
    if kind == "encoder_decoder":
        batch["decoder_input_tokens"] = r.integers(3, VOCAB, (2, 6)).astype(np.int32)
    return batch


@functools.lru_cache(maxsize=None)
def _init(kind, cfg, seed=1):
    return models.init(models.build(kind, cfg), jax.random.key(seed), _batch(kind))


@functools.lru_cache(maxsize=None)
def _forward(kind, cfg):
    return jax.jit(models.build(kind, cfg).apply)


def _apply(kind, cfg, params, batch):
    return _forward(kind, cfg)({"params": params}, batch)


# Hidden x2 (a multiple, so the tile map keeps norm statistics), heads x2, d_ff x1.5.
WIDER = dict(d_model=64, num_heads=4, d_ff=96)
HEAD_DIM = dict(d_model=64, num_heads=2, head_dim=32, d_ff=128)  # head_dim grows too
CASES = [("bert", "encoder_mlm", {}, WIDER), ("t5", "encoder_mlm", {}, WIDER),
         # t5 with a tied lm head exercises the d^-1/2 rescale before the tied projection;
         # bert's growing head_dim makes the query absorb sqrt(head_dim'/head_dim).
         ("t5", "encoder_decoder", dict(tie_embeddings=True), dict(WIDER, head_dim=32)),
         ("bert", "encoder_decoder", {}, HEAD_DIM), ("bert", "encoder", {}, WIDER)]


@pytest.mark.parametrize("family,kind,src_kw,dst_kw", CASES)
def test_fpi_tile_preserves_function_exactly(family, kind, src_kw, dst_kw):
    src = _cfg(family, **src_kw)
    dst = src.replace(**dst_kw)
    params, batch = _init(kind, src), _batch(kind)
    grown = mappings.grow(params, src, dst, method="fpi", rng=jax.random.key(2), unit_map="tile")
    want, got = _apply(kind, src, params, batch), _apply(kind, dst, grown, batch)
    if kind == "encoder":  # hidden states: grown unit j is a copy of source unit g(j)
        plan = mappings.growth_plan(kind, src, dst, rng=jax.random.key(2), unit_map_kind="tile")
        want = want[..., plan.maps["hidden"].index]
    assert got.shape[-1] == want.shape[-1] and float(jnp.abs(want).max()) > 0.1
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def _kernel_io(path, names):
    """(in axes, out axes) of a kernel after dropping `layers`."""
    core = [n for n in names if n != "layers"]
    n_out = 2 if tuple(core[-2:]) == ("heads", "kv") else 1
    return core[:-n_out], core[-n_out:]


@pytest.mark.parametrize("family", ["bert", "t5"])
def test_fpi_random_map_keeps_every_linear_part_exact_and_measures_norm_gap(family):
    src = _cfg(family)
    dst = src.replace(d_model=48, num_heads=3, d_ff=80)  # non-multiples: counts are unequal
    params = _init("encoder_mlm", src)
    key = jax.random.key(5)
    grown = mappings.grow(params, src, dst, method="fpi", rng=key, unit_map="random")
    plan = mappings.growth_plan("encoder_mlm", src, dst, rng=key, unit_map_kind="random")
    assert plan.maps["hidden"].counts.min() != plan.maps["hidden"].counts.max()
    index = {n: plan.maps[m].index for n, m in mappings.width.MAPPED.items()}
    flat_src, flat_dst, checked = checks.flat(params), checks.flat(grown), 0
    rng = np.random.default_rng(0)
    for path, w in flat_src.items():
        if path[-1] != "kernel" or path[-2] == "query":  # the query also carries the kv split
            continue
        names = plan.names[path]
        w, w2 = (w[0], flat_dst[path][0]) if names[0] == "layers" else (w, flat_dst[path])
        ins, outs = _kernel_io(path, names)
        x = rng.normal(size=w.shape[:len(ins)]).astype(np.float32)
        x2 = x
        for axis, name in enumerate(ins):  # a copied input: unit j holds source unit g(j)
            x2 = np.take(x2, index[name], axis=axis) if name in index else x2
        y = np.tensordot(x, np.asarray(w), len(ins))
        y2 = np.tensordot(x2, np.asarray(w2), len(ins))
        for axis, name in enumerate(outs):
            y = np.take(y, index[name], axis=axis) if name in index else y
        np.testing.assert_allclose(y2, y, atol=1e-5, err_msg="/".join(path))
        checked += 1
    assert checked >= 6
    batch = _batch("encoder_mlm")
    gap = float(jnp.abs(_apply("encoder_mlm", dst, grown, batch) - _apply("encoder_mlm", src, params, batch)).max())
    print(f"\n{family}: random unit map, max |logit difference| from the norms alone = {gap:.4f}")
    assert 0 < gap < 1.0


@pytest.mark.parametrize("old,new,expected", [
    (6, 8, [0, 1, 2, 3, 4, 5, 4, 5]),        # bert2BERT: leftover layers from the top of the source
    (2, 4, [0, 1, 0, 1]),                    # StackBERT doubling: the whole stack on top of itself
    (3, 8, [0, 1, 2, 0, 1, 2, 1, 2]),
    (4, 4, [0, 1, 2, 3])])
def test_stack_depth_map_fills_leftover_layers_from_the_top(old, new, expected):
    assert mappings.depth_map(old, new, "stack").tolist() == expected


def test_interpolate_depth_map_repeats_each_layer_in_place():
    assert mappings.depth_map(6, 8, "interpolate").tolist() == [0, 0, 1, 2, 3, 3, 4, 5]
    assert mappings.depth_map(2, 4, "interpolate").tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("how,expected", [("stack", [0, 1, 0, 1, 1]), ("interpolate", [0, 0, 0, 1, 1])])
def test_depth_growth_copies_the_right_layers(how, expected):
    src = _cfg("t5")
    dst = src.replace(num_encoder_layers=5, num_decoder_layers=4)
    params = _init("encoder_decoder", src)
    grown = mappings.grow(params, src, dst, method=how)
    for path, x in checks.flat(grown).items():
        s = checks.flat(params)[path]
        if path[1] != "layers":
            np.testing.assert_array_equal(x, s)
            continue
        want = expected if path[0] == "encoder" else mappings.depth_map(2, 4, how).tolist()
        assert x.shape[0] == len(want)
        for i, j in enumerate(want):
            np.testing.assert_array_equal(x[i], s[j], err_msg=f"{'/'.join(path)} layer {i}")


def test_aki_takes_new_units_of_layer_l_from_layer_l_plus_1():
    src = _cfg("bert", num_encoder_layers=3)
    dst = src.replace(**WIDER)
    params = _init("encoder_mlm", src)
    key = jax.random.key(3)
    aki = checks.flat(mappings.grow(params, src, dst, method="aki", rng=key))
    fpi = checks.flat(mappings.grow(params, src, dst, method="fpi", rng=key))
    plan = mappings.growth_plan("encoder_mlm", src, dst, rng=key)
    new_mlp, old_mlp = plan.maps["mlp"].is_new, ~plan.maps["mlp"].is_new
    new_heads, new_hidden = plan.maps["heads"].is_new, plan.maps["hidden"].is_new
    wi = ("encoder", "layers", "mlp", "wi", "kernel")
    # Read back: layer l's new mlp columns are layer l+1's FPI columns (g maps them), i.e.
    # the source's layer l+1 weights at rows g_h(j) / c_h(j), columns g_f(new).
    g_h, c_h, g_f = plan.maps["hidden"].index, plan.maps["hidden"].copies, plan.maps["mlp"].index
    src_wi = np.asarray(checks.flat(params)[wi])
    for layer in range(3):
        upper = min(layer + 1, 2)
        want = src_wi[upper][g_h][:, g_f[new_mlp]] / c_h[:, None]
        np.testing.assert_allclose(aki[wi][layer][:, new_mlp], want, rtol=1e-6)
        np.testing.assert_array_equal(aki[wi][layer][:, old_mlp], fpi[wi][layer][:, old_mlp])
    q = ("encoder", "layers", "attention", "query", "kernel")
    np.testing.assert_array_equal(aki[q][0][:, new_heads], fpi[q][1][:, new_heads])
    np.testing.assert_array_equal(aki[q][2], fpi[q][2])  # top layer: FPI
    wo_b = ("encoder", "layers", "mlp", "wo", "bias")
    np.testing.assert_array_equal(aki[wo_b][0][new_hidden], fpi[wo_b][1][new_hidden])
    norm = ("encoder", "layers", "mlp_norm", "scale")
    np.testing.assert_array_equal(aki[norm], fpi[norm])  # norms follow FPI
    assert not np.allclose(aki[wi][0], fpi[wi][0])


def test_aki_with_head_dim_growth_takes_new_query_key_and_value_dims_from_the_same_layer():
    """bert2BERT's AKI: every new head dimension of layer l (q, k and v alike) comes from
    layer l+1, so the new dims' logits q'.k' pair a query and a key of the same layer."""
    src = _cfg("bert", num_encoder_layers=3)
    dst = src.replace(**HEAD_DIM)  # head_dim 16 -> 32 (and d_model 32 -> 64)
    params = _init("encoder_mlm", src)
    key = jax.random.key(4)
    aki = checks.flat(mappings.grow(params, src, dst, method="aki", rng=key))
    fpi = checks.flat(mappings.grow(params, src, dst, method="fpi", rng=key))
    new_kv = mappings.growth_plan("encoder_mlm", src, dst, rng=key).maps["kv"].is_new
    assert new_kv.any()
    for module in ("query", "key", "value"):
        for leaf in ("kernel", "bias"):
            path = ("encoder", "layers", "attention", module, leaf)
            for layer in range(3):
                upper = min(layer + 1, 2)
                np.testing.assert_array_equal(aki[path][layer][..., new_kv], fpi[path][upper][..., new_kv],
                                              err_msg=f"{'/'.join(path)} layer {layer}: new head dims")
            if leaf == "kernel":  # (biases are zero at init)
                assert not np.array_equal(aki[path][0][..., new_kv], fpi[path][0][..., new_kv])


def test_direct_copy_puts_the_source_in_the_top_left_block():
    src = _cfg("t5")
    dst = src.replace(**WIDER)
    params = _init("encoder_mlm", src)
    grown = checks.flat(mappings.grow(params, src, dst, method="direct_copy"))
    for path, s in checks.flat(params).items():
        block = grown[path][tuple(slice(0, n) for n in s.shape)]
        np.testing.assert_array_equal(block, s, err_msg="/".join(path))
    q = grown[("encoder", "layers", "attention", "query", "kernel")]
    assert q.shape == (2, 64, 4, 16) and float(jnp.abs(q[:, 32:]).max()) > 0


@pytest.mark.parametrize("change,needle", [
    (dict(d_model=16, head_dim=8), "d_model"), (dict(d_ff=32), "d_ff"), (dict(num_heads=1, head_dim=32), "num_heads"),
    (dict(num_encoder_layers=1), "num_encoder_layers"), (dict(vocab_size=200), "vocab_size"),
    (dict(family="t5"), "family"), (dict(use_bias=False), "use_bias"),
])
def test_growing_to_a_smaller_or_incompatible_model_fails_naming_the_dimension(change, needle):
    src = _cfg("bert")
    params = _init("encoder_mlm", src)
    dst = src.replace(**change) if "family" not in change else _cfg("t5")
    with pytest.raises(UserError) as e:
        mappings.grow(params, src, dst, method="fpi")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_bad_method_wrong_params_and_width_with_stack_fail_in_one_line():
    src = _cfg("t5")
    params = _init("encoder_mlm", src)
    for call, needle in [
        (lambda: mappings.grow(params, src, src, method="net2net"), "method"),
        (lambda: mappings.grow(params, src.replace(d_model=64), src.replace(d_model=64)), "shape"),
        (lambda: mappings.grow(params, src, src.replace(d_model=64), method="stack"), "d_model"),
        (lambda: mappings.grow(params, src, src, unit_map="zigzag"), "unit_map"),
    ]:
        with pytest.raises(UserError) as e:
            call()
        assert needle in str(e.value) and "\n" not in str(e.value)


def test_growing_sharded_on_8_devices_equals_one_device():
    from seqpt_jax.train import partitioning
    assert len(jax.devices()) == 8
    src = _cfg("t5")
    dst = src.replace(**WIDER, num_encoder_layers=4, num_decoder_layers=4)
    params = _init("encoder_decoder", src)
    mesh = partitioning.make_mesh((2, 2, 2))
    kw = dict(method="aki", rng=jax.random.key(7), unit_map="random")
    sharded = mappings.grow_sharded(params, src, dst, mesh, "fsdp_tp", **kw)
    single = mappings.grow(params, src, dst, **kw)
    wanted = mappings.target_shardings("encoder_decoder", dst, mesh, "fsdp_tp")
    n_split = 0
    for (path, a), b, s in zip(checks.flat(sharded).items(), checks.flat(single).values(),
                               checks.flat(wanted).values()):
        assert a.sharding.is_equivalent_to(s, a.ndim), "/".join(path)
        n_split += len(a.sharding.device_set) == 8 and not a.sharding.is_fully_replicated
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg="/".join(path))
    assert n_split > 10  # really laid out over the mesh, not replicated


def test_adam_moments_grow_like_the_grown_models_gradients():
    # t5 seq2seq with a tied output and a growing head_dim: every factor of width.py is used.
    kind = "encoder_decoder"
    src = _cfg("t5", tie_embeddings=True)
    dst = src.replace(**WIDER, head_dim=32)
    params, batch = _init(kind, src), _batch(kind)
    labels = np.random.default_rng(1).integers(0, VOCAB, batch.get("decoder_input_tokens", batch["encoder_input_tokens"]).shape)

    def loss(cfg):
        return lambda p: optax.softmax_cross_entropy_with_integer_labels(_apply(kind, cfg, p, batch), labels).mean()

    key = jax.random.key(4)
    grown = mappings.grow(params, src, dst, method="fpi", rng=key, unit_map="tile")
    grads, grads_big = jax.jit(jax.grad(loss(src)))(params), jax.jit(jax.grad(loss(dst)))(grown)
    # The gradient map (what the moments use) reproduces the grown model's own gradient.
    plan = mappings.growth_plan(kind, src, dst, rng=key, unit_map_kind="tile")
    mapped = map_flat(checks.flat(grads), plan, "fpi", "grad")
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads_big))
    for path, g in checks.flat(grads_big).items():
        np.testing.assert_allclose(mapped[path], g, atol=1e-5 * scale, err_msg="/".join(path))
    # Two Adam steps on the source, grown, equal two steps taken by the grown model on
    # the mapped gradients; the step count (bias correction, schedule) carries over.
    opt = optax.adamw(optax.linear_schedule(1e-3, 0.0, 100))
    update = jax.jit(lambda g, st, p: opt.update(g, st, p)[1])
    state, ref = opt.init(params), opt.init(grown)
    for _ in range(2):
        state, ref = update(grads, state, params), update(grads_big, ref, grown)
    big_state = mappings.grow_optimizer_state(state, src, dst, method="fpi", rng=key, unit_map="tile")
    assert int(big_state[0].count) == 2
    for field in ("mu", "nu"):
        got, want = checks.flat(getattr(big_state[0], field)), checks.flat(getattr(ref[0], field))
        top = max(float(jnp.abs(w).max()) for w in want.values())
        for path in want:
            np.testing.assert_allclose(got[path], want[path], atol=1e-5 * top, err_msg=f"{field} {'/'.join(path)}")
    # AKI moves the moments of new units with their weights; direct_copy zeros new units.
    dc = mappings.grow_optimizer_state(state, src, dst, method="direct_copy", rng=key)
    mu = checks.flat(dc[0].mu)[("encoder", "layers", "mlp", "wo", "kernel")]
    assert float(jnp.abs(mu[:, 64:]).max()) == 0 and float(jnp.abs(mu[:, :64, :32]).max()) > 0


@functools.lru_cache(maxsize=None)
def _capturing(kind, cfg):
    return jax.jit(functools.partial(models.build(kind, cfg).apply, capture_intermediates=True))


def _encoded(kind, cfg, params, batch):
    """(the model's output, the encoder stack's output captured inside the forward pass)."""
    out, state = _capturing(kind, cfg)({"params": params}, batch)
    return out, state["intermediates"]["encoder"]["__call__"][0]


@pytest.mark.parametrize("family,decoder_init", [("bert", "random"), ("t5", "encoder")])
def test_warm_start_and_extraction_keep_the_encoder_outputs(family, decoder_init):
    enc_cfg = _cfg(family, num_encoder_layers=3)
    s2s_cfg = enc_cfg.replace(num_decoder_layers=2)  # a smaller decoder
    mlm = _init("encoder_mlm", enc_cfg)
    s2s = mappings.encoder_to_seq2seq(mlm, enc_cfg, s2s_cfg, rng=jax.random.key(9), decoder_init=decoder_init)
    batch = _batch("encoder_decoder")
    want = _encoded("encoder_mlm", enc_cfg, mlm, batch)[1]
    logits, encoded = _encoded("encoder_decoder", s2s_cfg, s2s, batch)
    np.testing.assert_array_equal(encoded, want)
    assert np.isfinite(logits).all() and logits.shape == (2, 6, VOCAB)
    flat = checks.flat(s2s)
    self_q = ("decoder", "layers", "self_attention", "query", "kernel")
    enc_q = np.asarray(checks.flat(mlm)[("encoder", "layers", "attention", "query", "kernel")])
    assert np.array_equal(flat[self_q][1], enc_q[1]) == (decoder_init == "encoder")
    back = mappings.seq2seq_to_encoder(s2s, s2s_cfg, enc_cfg, rng=jax.random.key(1))
    np.testing.assert_array_equal(_encoded("encoder_mlm", enc_cfg, back, batch)[1], want)
    assert set(back) == set(mlm) and "decoder" not in back


def test_warm_start_and_extraction_refuse_mismatched_configs():
    cfg = _cfg("t5")
    mlm = _init("encoder_mlm", cfg)
    with pytest.raises(UserError, match="d_model"):
        mappings.encoder_to_seq2seq(mlm, cfg, cfg.replace(d_model=64))
    with pytest.raises(UserError, match="decoder_init"):
        mappings.encoder_to_seq2seq(mlm, cfg, cfg, decoder_init="copy")
    with pytest.raises(UserError, match="not a seq2seq"):
        mappings.seq2seq_to_encoder(mlm, cfg)


def _copied_units(kernel) -> int:
    """How many output units (last axis) of a [.., in, out] kernel equal another exactly."""
    cols = np.asarray(kernel).reshape(-1, kernel.shape[-1]).T
    return len(cols) - len(np.unique(cols, axis=0))


def test_fpi_noise_breaks_copy_symmetry_and_keeps_the_function_close():
    """Net2Net's noise: FPI's copied MLP / hidden units are exact copies without it (identical
    gradients forever at dropout 0), all distinct with it, the output barely moved."""
    src = _cfg("bert")
    dst = src.replace(**WIDER)
    params, key = _init("encoder_mlm", src), jax.random.key(3)
    plain = checks.flat(mappings.grow(params, src, dst, method="fpi", rng=key))
    noisy = mappings.grow(params, src, dst, method="fpi", rng=key, noise=1e-3)
    wi, emb = ("encoder", "layers", "mlp", "wi", "kernel"), ("token_embedder", "embedding")
    assert _copied_units(plain[wi][0]) > 0 and _copied_units(plain[emb]) > 0
    assert _copied_units(checks.flat(noisy)[wi][0]) == 0 and _copied_units(checks.flat(noisy)[emb]) == 0
    batch = _batch("encoder_mlm")
    ref = _apply("encoder_mlm", dst, checks.unflat(plain), batch)
    np.testing.assert_allclose(_apply("encoder_mlm", dst, noisy, batch), ref, atol=0.05)
    with pytest.raises(UserError, match="width methods"):
        mappings.grow(params, src, dst, method="direct_copy", rng=key, noise=1e-3)
