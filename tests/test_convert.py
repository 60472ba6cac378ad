"""Numerics against Hugging Face transformers: small random HF models -> ours -> HF again.

Every comparison is float32 logits (hidden states for T5EncoderModel) on one right-padded
batch, at non-padding positions only: padded queries are meaningless in both, and XLM-R even
gives pad tokens a different position id. The decoder has no padding mask in either
implementation, so it is compared at every position before its padding.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import torch
import transformers as tf

from seqpt_jax import cli, convert, models
from seqpt_jax.errors import UserError

TOL = 1e-4

# name -> (HF class, config, untie lm_head by hand, class that reloads our export)
CASES = {
    "bert_h6_v99": (tf.BertForMaskedLM, lambda: tf.BertConfig(
        vocab_size=99, hidden_size=48, num_hidden_layers=2, num_attention_heads=6, intermediate_size=37,
        max_position_embeddings=16, type_vocab_size=2), False, tf.AutoModelForMaskedLM),
    "bert_h3_v251_untied_tanh": (tf.BertForMaskedLM, lambda: tf.BertConfig(
        vocab_size=251, hidden_size=24, num_hidden_layers=3, num_attention_heads=3, intermediate_size=40,
        max_position_embeddings=12, type_vocab_size=3, hidden_act="gelu_new", tie_word_embeddings=False,
        layer_norm_eps=1e-5), False, tf.AutoModelForMaskedLM),
    "xlmr_h3_v251": (tf.XLMRobertaForMaskedLM, lambda: tf.XLMRobertaConfig(
        vocab_size=251, hidden_size=36, num_hidden_layers=2, num_attention_heads=3, intermediate_size=50,
        max_position_embeddings=20, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        layer_norm_eps=1e-5), False, tf.AutoModelForMaskedLM),
    "roberta_h6_v99": (tf.RobertaForMaskedLM, lambda: tf.RobertaConfig(
        vocab_size=99, hidden_size=24, num_hidden_layers=1, num_attention_heads=6, intermediate_size=30,
        max_position_embeddings=12, type_vocab_size=1, pad_token_id=1), False, tf.AutoModelForMaskedLM),
    "t5_gated_untied_h3_v99": (tf.T5ForConditionalGeneration, lambda: tf.T5Config(
        vocab_size=99, d_model=24, d_kv=8, num_heads=3, d_ff=40, num_layers=2, num_decoder_layers=3,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False, relative_attention_num_buckets=8,
        relative_attention_max_distance=16), True, tf.AutoModelForSeq2SeqLM),
    "t5_relu_tied_h6_v251": (tf.T5ForConditionalGeneration, lambda: tf.T5Config(
        vocab_size=251, d_model=30, d_kv=5, num_heads=6, d_ff=20, num_layers=2, num_decoder_layers=2,
        feed_forward_proj="relu", relative_attention_num_buckets=8, relative_attention_max_distance=16),
        False, tf.AutoModelForSeq2SeqLM),
    "mt5_untied_h6_v251": (tf.MT5ForConditionalGeneration, lambda: tf.MT5Config(
        vocab_size=251, d_model=24, d_kv=4, num_heads=6, d_ff=32, num_layers=2, num_decoder_layers=2),
        True, tf.MT5ForConditionalGeneration),
    "mt5_tied_h3_v99": (tf.MT5ForConditionalGeneration, lambda: tf.MT5Config(
        vocab_size=99, d_model=12, d_kv=4, num_heads=3, d_ff=20, num_layers=1, num_decoder_layers=2),
        False, tf.AutoModelForSeq2SeqLM),
    "t5_encoder_h3_v99": (tf.T5EncoderModel, lambda: tf.T5Config(
        vocab_size=99, d_model=24, d_kv=8, num_heads=3, d_ff=40, num_layers=3, feed_forward_proj="gated-gelu",
        relative_attention_num_buckets=8, relative_attention_max_distance=16), False, tf.T5EncoderModel),
    "mt5_encoder_h6_v251": (tf.MT5EncoderModel, lambda: tf.MT5Config(
        vocab_size=251, d_model=24, d_kv=4, num_heads=6, d_ff=32, num_layers=2), False, tf.MT5EncoderModel),
}


def _random_hf(name: str, seed: int = 0):
    cls, config, untie, _ = CASES[name]
    torch.manual_seed(seed)
    model = cls(config())
    if untie:  # transformers >= 5 always ties T5 at construction; real mT5 checkpoints are untied
        model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.lm_head.weight))
    with torch.no_grad():  # every tensor random, norms and biases too, so no mix-up hides
        for pname, p in model.named_parameters():
            norm = "norm" in pname.lower() and pname.endswith("weight")
            p.copy_(1 + 0.2 * torch.randn_like(p) if norm else 0.2 * torch.randn_like(p))
    return model.eval()


def _batch(cfg: models.TransformerConfig, kind: str, seed: int = 1):
    rng = np.random.default_rng(seed)
    lengths, length = np.array([7, 5, 2]), 7
    tokens = rng.integers(cfg.pad_id + 1, cfg.vocab_size, (3, length))
    valid = np.arange(length)[None] < lengths[:, None]
    batch = {"encoder_input_tokens": np.where(valid, tokens, cfg.pad_id).astype(np.int32)}
    if kind == "encoder_decoder":
        dec_lengths, dec_len = np.array([4, 6, 1]), 6
        dec = rng.integers(1, cfg.vocab_size, (3, dec_len))
        dec[:, 0] = 0  # decoder start id
        dec_valid = np.arange(dec_len)[None] < dec_lengths[:, None]
        batch["decoder_input_tokens"] = np.where(dec_valid, dec, 0).astype(np.int32)
        return batch, dec_valid
    return batch, valid


def _hf_out(model, batch, cfg) -> np.ndarray:
    ids = torch.from_numpy(batch["encoder_input_tokens"]).long()
    kwargs = dict(input_ids=ids, attention_mask=(ids != cfg.pad_id).long())
    if "decoder_input_tokens" in batch:
        kwargs["decoder_input_ids"] = torch.from_numpy(batch["decoder_input_tokens"]).long()
    with torch.no_grad():
        out = model(**kwargs)
    return (out.logits if hasattr(out, "logits") else out.last_hidden_state).numpy()


def _ours(kind, cfg, params, batch) -> np.ndarray:
    model = models.build(kind, cfg)
    return np.asarray(jax.jit(model.apply)({"params": params}, batch))


def _max_diff(a, b, valid) -> float:
    assert a.shape == b.shape
    return float(np.abs(a - b)[valid].max())


@pytest.mark.parametrize("name", list(CASES))
def test_hf_to_ours_and_back(name, tmp_path):
    hf = _random_hf(name)
    hf.save_pretrained(tmp_path / "hf")
    kind, cfg, params = convert.from_hf(str(tmp_path / "hf"))
    batch, valid = _batch(cfg, kind)
    reference = _hf_out(hf, batch, cfg)
    ours = _ours(kind, cfg, params, batch)
    assert np.isfinite(ours).all()
    assert _max_diff(ours, reference, valid) <= TOL
    assert np.abs(reference[valid]).max() > 0.1  # the comparison is not between near-zeros

    convert.to_hf(kind, cfg, params, str(tmp_path / "back"))
    reload_cls = CASES[name][3]
    back, info = reload_cls.from_pretrained(str(tmp_path / "back"), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert _max_diff(_hf_out(back.eval(), batch, cfg), ours, valid) <= TOL
    kind2, cfg2, params2 = convert.from_hf(str(tmp_path / "back"))
    assert (kind2, cfg2) == (kind, cfg)
    jax.tree.map(np.testing.assert_array_equal, params2, params)


def test_config_fields(tmp_path):
    _random_hf("xlmr_h3_v251").save_pretrained(tmp_path / "x")
    _, cfg, _ = convert.from_hf(str(tmp_path / "x"))
    assert (cfg.family, cfg.pad_id, cfg.position_offset, cfg.max_length, cfg.norm_eps) == ("bert", 1, 2, 20, 1e-5)
    assert (cfg.num_heads, cfg.head_dim, cfg.activation, cfg.tie_embeddings) == (3, 12, "gelu", True)
    _random_hf("t5_relu_tied_h6_v251").save_pretrained(tmp_path / "t")
    kind, cfg, _ = convert.from_hf(str(tmp_path / "t"))
    assert (kind, cfg.activation, cfg.gated_mlp, cfg.tie_embeddings) == ("encoder_decoder", "relu", False, True)
    assert (cfg.relpos_buckets, cfg.relpos_max_distance, cfg.head_dim) == (8, 16, 5)
    _random_hf("mt5_untied_h6_v251").save_pretrained(tmp_path / "m")
    _, cfg, _ = convert.from_hf(str(tmp_path / "m"))
    assert (cfg.activation, cfg.gated_mlp, cfg.tie_embeddings) == ("gelu_tanh", True, False)


def test_sharded_bf16_and_torch_bin(tmp_path):
    hf = _random_hf("t5_gated_untied_h3_v99")
    hf.save_pretrained(tmp_path / "single")
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    _, _, ref = convert.from_hf(str(tmp_path / "single"))
    _, _, sharded = convert.from_hf(str(tmp_path / "sharded"))
    jax.tree.map(np.testing.assert_array_equal, sharded, ref)

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text((tmp_path / "single" / "config.json").read_text())
    torch.save(hf.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    _, _, from_bin = convert.from_hf(str(tmp_path / "bin"))
    jax.tree.map(np.testing.assert_array_equal, from_bin, ref)

    hf.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    _, _, half = convert.from_hf(str(tmp_path / "bf16"))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-6), half, ref)
    assert half["token_embedder"]["embedding"].dtype == np.float32


def test_cli_round_trip(tmp_path, capsys):
    hf = _random_hf("bert_h6_v99")
    hf.save_pretrained(tmp_path / "hf")
    # No SentencePiece model in the directory: refused in one line, unless the weights alone are wanted.
    capsys.readouterr()
    assert cli.main(["convert", "--from-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "ckpt")]) == 2
    assert "has no SentencePiece model" in _one_error_line(capsys) and not (tmp_path / "ckpt").exists()
    assert cli.main(["convert", "--from-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "ckpt"),
                     "--weights-only"]) == 0
    assert "weights only" in capsys.readouterr().out
    # No vocabulary recorded for the import: a tokenizer cannot be written, and it says so.
    assert cli.main(["convert", "--to-hf", str(tmp_path / "ckpt"), "--out", str(tmp_path / "back")]) == 2
    assert "records no vocabulary" in _one_error_line(capsys) and not (tmp_path / "back").exists()
    assert cli.main(["convert", "--to-hf", str(tmp_path / "ckpt"), "--out", str(tmp_path / "back"),
                     "--weights-only"]) == 0
    assert "BertForMaskedLM" in capsys.readouterr().out
    back = tf.AutoModelForMaskedLM.from_pretrained(str(tmp_path / "back")).eval()
    kind, cfg, _ = convert.from_hf(str(tmp_path / "hf"))
    batch, valid = _batch(cfg, kind)
    assert _max_diff(_hf_out(back, batch, cfg), _hf_out(hf, batch, cfg), valid) <= TOL
    # An existing --out is refused and left intact.
    assert cli.main(["convert", "--to-hf", str(tmp_path / "ckpt"), "--out", str(tmp_path / "back"),
                     "--weights-only"]) == 2
    assert (tmp_path / "back" / "model.safetensors").exists()


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_bad_inputs(tmp_path, capsys):
    assert cli.main(["convert", "--from-hf", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "not a directory" in _one_error_line(capsys)
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    assert cli.main(["convert", "--from-hf", str(tmp_path / "gpt"), "--out", str(tmp_path / "o")]) == 2
    assert "GPT2LMHeadModel" in _one_error_line(capsys)
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text(json.dumps(
        {**CASES["t5_encoder_h3_v99"][1]().to_dict(), "architectures": ["T5EncoderModel"]}))
    assert cli.main(["convert", "--from-hf", str(tmp_path / "noweights"), "--out", str(tmp_path / "o")]) == 2
    assert "no weights" in _one_error_line(capsys)
    assert cli.main(["convert", "--to-hf", str(tmp_path / "nockpt"), "--out", str(tmp_path / "o")]) == 2
    assert "model.json" in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_weights_that_disagree_with_config(tmp_path):
    hf = _random_hf("t5_encoder_h3_v99")
    hf.save_pretrained(tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "d_ff": 41}))
    with pytest.raises(UserError, match="wi_0.*shape"):
        convert.from_hf(str(tmp_path / "hf"))


def test_unconvertible_configs(tmp_path):
    cfg = models.preset("bert-tiny", vocab_size=51)
    shapes = models.param_shapes(models.EncoderDecoder(cfg))
    params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    with pytest.raises(UserError, match="encoder_mlm"):
        convert.to_hf("encoder_decoder", cfg, params, str(tmp_path / "x"))
    t5cfg = models.preset("t5-tiny", vocab_size=51, num_encoder_layers=1, num_decoder_layers=1)
    with pytest.raises(UserError, match="shape"):  # params of another model
        convert.to_hf("encoder_decoder", t5cfg, params, str(tmp_path / "x"))
    with pytest.raises(UserError, match="norm_position"):
        convert.to_hf("encoder", t5cfg.replace(norm_position="post"), params, str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()
