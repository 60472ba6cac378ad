"""MODEL_DIR/vocab.json: which vocabulary a model was trained with, found again and checked."""

import jax
import pytest

from seqpt_jax import cli, models, params_io
from seqpt_jax.data import vocab_record
from seqpt_jax.errors import UserError


def test_record_resolve_and_refuse(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    spm, other = tmp_path / "a.model", tmp_path / "b.model"
    spm.write_bytes(b"pieces A")
    other.write_bytes(b"pieces B")
    assert vocab_record.resolve(run) is None
    vocab_record.record(run, tmp_path / "missing.model")   # synthetic data: VOCAB names no file
    assert vocab_record.recorded(run) is None
    vocab_record.record(run, spm)
    assert vocab_record.resolve(run) == str(spm) and vocab_record.resolve(run, spm) == str(spm)
    with pytest.raises(UserError, match="differs from the one"):
        vocab_record.resolve(run, other)
    with pytest.raises(UserError, match="differs from the one"):
        vocab_record.record(run, other)                      # a resume with another vocabulary
    spm.write_bytes(b"pieces A, edited")
    with pytest.raises(UserError, match="differs from the one"):
        vocab_record.resolve(run)                            # changed since training
    spm.unlink()
    with pytest.raises(UserError, match="is gone"):
        vocab_record.resolve(run)


def test_a_vocabulary_inside_the_directory_moves_with_it(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / vocab_record.COPY).write_bytes(b"pieces")
    vocab_record.write_record(ckpt, ckpt / vocab_record.COPY)
    moved = tmp_path / "moved"
    ckpt.rename(moved)
    assert vocab_record.resolve(moved) == str(moved / vocab_record.COPY)


def test_warmstart_and_extract_checkpoints_inherit_the_record(tmp_path):
    cfg = models.preset("bert-tiny", vocab_size=64, d_model=32, num_heads=2, head_dim=16, d_ff=64,
                        max_length=16, dropout_rate=0.0)
    src = params_io.save_params(str(tmp_path / "small"), "encoder_mlm", cfg,
                                models.init(models.EncoderMLM(cfg), jax.random.key(0)))
    spm = tmp_path / "spm.model"
    spm.write_bytes(b"pieces")
    vocab_record.record(src, spm)
    s2s, enc = str(tmp_path / "s2s"), str(tmp_path / "enc")
    assert cli.main(["warmstart", "--encoder", src, "--override", "num_decoder_layers=1", "--out", s2s]) == 0
    assert cli.main(["extract", "--seq2seq", s2s, "--out", enc]) == 0
    assert vocab_record.resolve(s2s) == vocab_record.resolve(enc) == str(spm)


def test_a_run_refuses_a_vocabulary_other_than_its_sources(tmp_path):
    src, run = tmp_path / "mlm", tmp_path / "s2s"
    src.mkdir()
    run.mkdir()
    spm, other = tmp_path / "a.model", tmp_path / "b.model"
    spm.write_bytes(b"pieces A")
    other.write_bytes(b"pieces B")
    vocab_record.record(src, spm)
    with pytest.raises(UserError, match=f"differs from the one {src} was trained with"):
        vocab_record.record(run, other, source=str(src))
    assert vocab_record.recorded(run) is None
    vocab_record.record(run, spm, source=str(src))
    assert vocab_record.resolve(run) == str(spm)
