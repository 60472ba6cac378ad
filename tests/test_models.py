"""Model family: configs, shapes, the parameter tree convention, packing, and CLI errors."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqpt_jax import cli, models
from seqpt_jax.errors import UserError

TINY = {"bert": models.preset("bert-tiny", vocab_size=97, dropout_rate=0.0),
        "t5": models.preset("t5-tiny", vocab_size=97)}


def _flat(tree):
    return flax.traverse_util.flatten_dict(tree, sep="/")


def _tokens(rng, batch, length, vocab, pad_from=None):
    tokens = rng.integers(3, vocab, size=(batch, length)).astype(np.int32)
    if pad_from is not None:
        tokens[:, pad_from:] = 0
    return tokens


@pytest.mark.parametrize("family", ["bert", "t5"])
def test_encoder_subtree_identical_across_models(family):
    cfg = TINY[family]
    shapes = {kind: _flat(models.param_shapes(models.build(kind, cfg))) for kind in models.KINDS}
    enc = {k: v.shape for k, v in shapes["encoder"].items()}
    for kind in ("encoder_mlm", "encoder_decoder"):
        sub = {k: v.shape for k, v in shapes[kind].items() if k in enc}
        assert sub == enc, kind
    assert any(k.startswith("mlm_head/") for k in shapes["encoder_mlm"])
    # ELECTRA's discriminator is the same encoder (and tables) under discriminator/, + rtd_head/
    disc = {k[len("discriminator/"):]: v.shape for k, v in shapes["electra"].items() if k.startswith("discriminator/")}
    assert {k: v for k, v in disc.items() if not k.startswith("rtd_head/")} == enc
    assert any(k.startswith("decoder/layers/cross_attention/") for k in shapes["encoder_decoder"])


def test_parameter_tree_convention():
    bert = _flat(models.param_shapes(models.EncoderMLM(TINY["bert"])))
    c = TINY["bert"]
    assert bert["token_embedder/embedding"].shape == (c.vocab_size, c.d_model)
    assert bert["position_embedder/embedding"].shape == (c.max_length, c.d_model)
    assert bert["encoder/layers/attention/query/kernel"].shape == (
        c.num_encoder_layers, c.d_model, c.num_heads, c.head_dim)
    assert bert["encoder/layers/attention/out/kernel"].shape == (
        c.num_encoder_layers, c.num_heads, c.head_dim, c.d_model)
    assert bert["encoder/layers/mlp/wi/kernel"].shape == (c.num_encoder_layers, c.d_model, c.d_ff)
    assert "embedding_norm/bias" in bert and "encoder/final_norm/scale" not in bert
    t5 = _flat(models.param_shapes(models.EncoderDecoder(TINY["t5"])))
    c = TINY["t5"]
    assert t5["encoder/relpos_bias/rel_embedding"].shape == (c.relpos_buckets, c.num_heads)
    assert t5["decoder/layers/mlp/wi_1/kernel"].shape == (c.num_decoder_layers, c.d_model, c.d_ff)
    assert t5["lm_head/kernel"].shape == (c.d_model, c.vocab_size)
    assert not any(k.endswith("/bias") for k in t5), "t5 family has no biases"


@pytest.mark.parametrize("family", ["bert", "t5"])
def test_every_parameter_has_logical_axes(family):
    model = models.EncoderDecoder(TINY[family])
    shapes = _flat(models.param_shapes(model))
    axes = _flat(models.logical_axes(model))
    assert set(axes) == set(shapes)
    for name, spec in axes.items():
        assert len(spec) == len(shapes[name].shape), name
        assert all(isinstance(a, str) for a in spec), (name, spec)
        if "/layers/" in name:
            assert spec[0] == "layers", name


@pytest.mark.parametrize("family", ["bert", "t5"])
def test_padding_does_not_change_real_tokens(family):
    cfg = TINY[family]
    model = models.EncoderMLM(cfg)
    rng = np.random.default_rng(0)
    short = _tokens(rng, 2, 6, cfg.vocab_size)
    padded = np.concatenate([short, np.zeros((2, 5), np.int32)], axis=1)
    params = models.init(model, jax.random.key(0), {"encoder_input_tokens": padded})
    a = model.apply({"params": params}, {"encoder_input_tokens": short})
    b = model.apply({"params": params}, {"encoder_input_tokens": padded})
    np.testing.assert_allclose(a, b[:, :6], atol=1e-5)


@pytest.mark.parametrize("family", ["bert", "t5"])
def test_packed_batch_equals_separate_examples(family):
    """Two examples packed in one row (segment ids + positions) give each one's own outputs."""
    cfg = TINY[family]
    model = models.EncoderDecoder(cfg)
    rng = np.random.default_rng(1)
    e1, e2 = _tokens(rng, 1, 5, cfg.vocab_size), _tokens(rng, 1, 4, cfg.vocab_size)
    d1, d2 = _tokens(rng, 1, 3, cfg.vocab_size), _tokens(rng, 1, 4, cfg.vocab_size)
    d1[0, 0] = d2[0, 0] = 0  # decoder inputs start with the pad/BOS id, as in T5
    packed = {
        "encoder_input_tokens": np.concatenate([e1, e2], 1),
        "encoder_segment_ids": np.array([[1] * 5 + [2] * 4], np.int32),
        "encoder_positions": np.array([list(range(5)) + list(range(4))], np.int32),
        "decoder_input_tokens": np.concatenate([d1, d2], 1),
        "decoder_segment_ids": np.array([[1] * 3 + [2] * 4], np.int32),
        "decoder_positions": np.array([list(range(3)) + list(range(4))], np.int32),
    }
    params = models.init(model, jax.random.key(0), packed)
    out = model.apply({"params": params}, packed)
    one = model.apply({"params": params}, {"encoder_input_tokens": e1, "decoder_input_tokens": d1})
    two = model.apply({"params": params}, {"encoder_input_tokens": e2, "decoder_input_tokens": d2})
    np.testing.assert_allclose(out[:, :3], one, atol=1e-5)
    np.testing.assert_allclose(out[:, 3:], two, atol=1e-5)


def test_decoder_is_causal():
    cfg = TINY["t5"]
    model = models.EncoderDecoder(cfg)
    rng = np.random.default_rng(2)
    batch = {"encoder_input_tokens": _tokens(rng, 2, 6, cfg.vocab_size),
             "decoder_input_tokens": _tokens(rng, 2, 5, cfg.vocab_size)}
    params = models.init(model, jax.random.key(0), batch)
    base = model.apply({"params": params}, batch)
    changed = dict(batch, decoder_input_tokens=batch["decoder_input_tokens"].copy())
    changed["decoder_input_tokens"][:, 3:] = 5
    out = model.apply({"params": params}, changed)
    np.testing.assert_allclose(base[:, :3], out[:, :3], atol=1e-6)
    assert np.abs(base[:, 3:] - out[:, 3:]).max() > 1e-4


def test_bfloat16_compute_keeps_float32_params_and_logits():
    cfg = TINY["t5"].replace(dtype="bfloat16")
    model = models.EncoderDecoder(cfg)
    params = models.init(model, jax.random.key(0))
    assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("float32")}
    logits = model.apply({"params": params}, models.dummy_batch(model))
    assert logits.dtype == jnp.float32
    ref = models.EncoderDecoder(TINY["t5"]).apply({"params": params}, models.dummy_batch(model))
    assert np.abs(np.asarray(logits) - np.asarray(ref)).max() < 0.05 * np.abs(ref).max()


def test_classifier_heads_shapes():
    cfg = TINY["bert"]
    batch = {"encoder_input_tokens": _tokens(np.random.default_rng(3), 2, 7, cfg.vocab_size)}
    seq = models.SequenceClassifier(cfg, num_classes=5)
    tok = models.TokenClassifier(TINY["t5"], num_labels=4)
    assert seq.apply({"params": models.init(seq, jax.random.key(0), batch)}, batch).shape == (2, 5)
    assert tok.apply({"params": models.init(tok, jax.random.key(0), batch)}, batch).shape == (2, 7, 4)


def test_dropout_is_active_only_when_enabled():
    cfg = TINY["bert"].replace(dropout_rate=0.3)
    model = models.EncoderMLM(cfg)
    batch = models.dummy_batch(model, 2, 6)
    params = models.init(model, jax.random.key(0), batch)
    a = model.apply({"params": params}, batch)
    b = model.apply({"params": params}, batch, enable_dropout=True, rngs={"dropout": jax.random.key(1)})
    assert np.abs(a - b).max() > 1e-3
    np.testing.assert_array_equal(a, model.apply({"params": params}, batch))


@pytest.mark.parametrize("remat", ["full", "dots"])
def test_remat_does_not_change_values(remat):
    cfg = TINY["t5"]
    model, rematted = models.EncoderMLM(cfg), models.EncoderMLM(cfg.replace(remat=remat))
    batch = models.dummy_batch(model, 2, 6)
    params = models.init(model, jax.random.key(0), batch)
    loss = lambda m: lambda p: m.apply({"params": p}, batch).sum()
    g1, g2 = jax.grad(loss(model))(params), jax.grad(loss(rematted))(params)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("overrides, field", [
    ({"family": "gpt"}, "family"),
    ({"norm": "batchnorm"}, "norm"),
    ({"num_heads": 5}, "num_heads * head_dim"),
    ({"d_model": 0}, "d_model"),
    ({"colour": 3}, "colour"),
])
def test_bad_config_names_the_field(overrides, field):
    with pytest.raises(UserError, match=field.replace("*", r"\*")) as e:
        models.preset("bert-tiny", **overrides)
    assert "\n" not in str(e.value)


def test_cli_models_table_and_errors(capsys):
    assert cli.main(["models", "bert-base", "mt5-small"]) == 0
    out = capsys.readouterr().out
    assert "109,514,298" in out and "300,176,768" in out
    assert cli.main(["models", "bert-huge"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bert-huge" in err and "bert-base" in err
    assert cli.main(["no-such-command"]) == 2
    assert cli.main(["--help"]) == 0
