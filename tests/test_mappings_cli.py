"""`seqpt grow / warmstart / extract` over real checkpoints written by params_io."""

import jax
import numpy as np

from seqpt_jax import cli, models, params_io
from seqpt_jax.mappings import checks


def _source(tmp_path):
    cfg = models.preset("bert-tiny", vocab_size=64, d_model=32, num_heads=2, head_dim=16, d_ff=64,
                        max_length=16, dropout_rate=0.0)
    params = models.init(models.EncoderMLM(cfg), jax.random.key(0))
    return cfg, params, params_io.save_params(str(tmp_path / "small"), "encoder_mlm", cfg, params)


def test_grow_command_writes_the_grown_checkpoint_with_the_sources_vocab(tmp_path):
    cfg, params, src = _source(tmp_path)
    out = str(tmp_path / "big")
    rc = cli.main(["grow", "--src", src, "--dst-preset", "bert-mini", "--dst-override", "max_length=16",
                   "--dst-override", "d_ff=128", "--method", "fpi", "--unit-map", "tile", "--out", out])
    assert rc == 0
    kind, big_cfg, big = params_io.load(out)
    assert kind == "encoder_mlm" and big_cfg.d_model == 256 and big_cfg.vocab_size == 64  # source's vocab
    assert big_cfg.num_encoder_layers == 4 and big["encoder"]["layers"]["mlp"]["wi"]["kernel"].shape == (4, 256, 128)
    batch = {"encoder_input_tokens": np.arange(3, 13, dtype=np.int32)[None]}
    # Stacked: layer 2 is a copy of layer 0, whose first 64 mlp units are the source's.
    deep = checks.flat(big)
    assert np.isfinite(models.EncoderMLM(big_cfg).apply({"params": big}, batch)).all()
    np.testing.assert_array_equal(deep[("encoder", "layers", "mlp", "wi", "bias")][2, :64],
                                  np.asarray(params["encoder"]["layers"]["mlp"]["wi"]["bias"][0]))


def test_grow_command_refuses_a_smaller_target_in_one_line(tmp_path, capsys):
    _, _, src = _source(tmp_path)
    rc = cli.main(["grow", "--src", src, "--dst-override", "d_model=16", "--dst-override", "head_dim=8",
                   "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "d_model" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_warmstart_then_extract_commands_keep_the_encoder(tmp_path):
    cfg, params, src = _source(tmp_path)
    s2s, enc = str(tmp_path / "s2s"), str(tmp_path / "enc")
    assert cli.main(["warmstart", "--encoder", src, "--override", "num_decoder_layers=1",
                     "--decoder-init", "encoder", "--out", s2s]) == 0
    assert cli.main(["extract", "--seq2seq", s2s, "--out", enc]) == 0
    kind, s2s_cfg, s2s_params = params_io.load(s2s)
    assert kind == "encoder_decoder" and s2s_cfg.num_decoder_layers == 1
    kind, _, back = params_io.load(enc)
    assert kind == "encoder_mlm"
    for path, x in checks.flat(params).items():
        if path[0] != "mlm_head":
            np.testing.assert_array_equal(checks.flat(s2s_params)[path], x)
            np.testing.assert_array_equal(checks.flat(back)[path], x)
