"""Hand-off to Hugging Face: models trained here with `seqpt train`, exported with `seqpt convert
--to-hf`, then loaded in a fresh Python process with AutoTokenizer and the Auto model class only.

One tiny trained run per family, shared by the module: a bert-family MLM encoder, and a
t5-family seq2seq model warm-started from a t5 MLM encoder (so its card has a lineage).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from data_fixtures import make_corpus
from seqpt_jax import cli, models
from seqpt_jax.data import vocab, vocab_record
from seqpt_jax.params_io import load as load_source

pytestmark = pytest.mark.slow  # its module fixtures train three runs and start Hugging Face (~70 s): run it early
TOL = 1e-4
MASKED = "Open the file menu and choose <extra_id_99> As to keep a copy."
SOURCE, TARGET = "Откройте меню Файл и выберите Сохранить как.", "The package manager installs programs."
EDGE_TEXTS = ["  two  spaces\tand a tab\nnew line ", "emoji 🙂 ☃ 𝔘𝔫𝔦 and unseen 漢字龍 쀍", "Ｆｕｌｌｗｉｄｔｈ ｶﾀｶﾅ ﬁ №5 ½",
              "x", "The <extra_id_0> is <extra_id_1> here."]


def _train(tmp, name, gin_files, *extra):
    run = tmp / name
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli.main(["train", *[f"--gin_file={g}" for g in gin_files], "--gin_file=hw/cpu.gin",
                       f"--gin.MODEL_DIR={run}", f"--gin.VOCAB={tmp / 'spm.model'}",
                       f"--gin.CORPUS_DIR='{tmp / 'corpus'}'", "--gin.BATCH_SIZE=8",
                       "--gin.INPUT_LENGTH=32", "--gin.WARMUP_STEPS=1", "--gin.loop.train.eval_batches=1",
                       "--gin.loop.train.progress=False", *extra])
    assert rc == 0
    losses = re.findall(r"\[eval\] step (\d+): loss=([0-9.]+)", out.getvalue())
    return run, losses[-1][1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hf")
    corpus = make_corpus(tmp / "corpus")
    vocab.train(corpus, 700, tmp / "spm.model")
    steps = ["--gin.TRAIN_STEPS=2", "--gin.loop.train.eval_every=2", "--gin.loop.train.save_every=2"]
    mlm, mlm_loss = _train(tmp, "bert_mlm", ["models/bert_tiny.gin", "runs/pretrain_mlm.gin"], *steps)
    enc, _ = _train(tmp, "t5_mlm", ["models/t5_tiny.gin", "runs/pretrain_mlm.gin"], *steps)
    s2s, s2s_loss = _train(tmp, "t5_s2s", ["models/t5_tiny.gin", "runs/warmstart_seq2seq.gin"], *steps,
                           f"--gin.ENCODER_CHECKPOINT={enc}", "--gin.FREEZE_ENCODER_STEPS=1")
    for run in (mlm, s2s):
        assert cli.main(["convert", "--to-hf", str(run), "--out", str(tmp / f"{run.name}_hf")]) == 0
    return {"tmp": tmp, "spm": tmp / "spm.model", "corpus": corpus, "mlm": mlm, "enc": enc, "s2s": s2s,
            "losses": {"mlm": mlm_loss, "s2s": s2s_loss}}


# Runs in a fresh interpreter: nothing of seqpt_jax, only transformers as a stranger would use it.
_HF_SCRIPT = r"""
import json, sys
import torch
from transformers import AutoModelForMaskedLM, AutoModelForSeq2SeqLM, AutoTokenizer, pipeline
args = json.loads(sys.argv[1])
out = {}
tok = AutoTokenizer.from_pretrained(args["mlm"])
model = AutoModelForMaskedLM.from_pretrained(args["mlm"]).eval()
masked = args["masked"].replace("<extra_id_99>", tok.mask_token)
out["mlm_class"] = type(tok).__name__
out["mlm_ids"] = [tok(t)["input_ids"] for t in args["texts"] + [masked]]
with torch.no_grad():
    out["mlm_logits"] = model(**tok(masked, return_tensors="pt")).logits[0].tolist()
fill = pipeline("fill-mask", model=model, tokenizer=tok)
out["fill"] = [(r["token"], r["score"]) for r in fill(masked, top_k=3)]
tok = AutoTokenizer.from_pretrained(args["s2s"])
model = AutoModelForSeq2SeqLM.from_pretrained(args["s2s"]).eval()
out["s2s_ids"] = [tok(t)["input_ids"] for t in args["texts"]]
enc = tok(args["source"], return_tensors="pt")
target = tok(args["target"])["input_ids"]
with torch.no_grad():
    dec = torch.tensor([[model.config.decoder_start_token_id] + target[:-1]])
    out["s2s_logits"] = model(**enc, decoder_input_ids=dec).logits[0].tolist()
    out["generated"] = model.generate(**enc, max_new_tokens=6, do_sample=False, num_beams=1)[0].tolist()
out["sentinels"] = tok.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_99>"])
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def hf(runs):
    texts = [json.loads(line)["text"] for lang in ("en", "ru", "zh", "ko", "hi")
             for line in open(runs["corpus"] / "text" / f"{lang}.validation.jsonl", encoding="utf-8")][::3]
    texts += EDGE_TEXTS
    args = {"mlm": str(runs["tmp"] / "bert_mlm_hf"), "s2s": str(runs["tmp"] / "t5_s2s_hf"), "texts": texts,
            "masked": MASKED, "source": SOURCE, "target": TARGET}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no seqpt_jax on the path
    proc = subprocess.run([sys.executable, "-c", _HF_SCRIPT, json.dumps(args)], capture_output=True, text=True,
                          env=env, timeout=600, cwd=str(runs["tmp"]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    return texts, json.loads(line[len("RESULT "):])


def _ours(run, batch):
    kind, cfg, params = load_source(str(run))
    return cfg, np.asarray(jax.jit(models.build(kind, cfg).apply)({"params": params}, batch))


def _project_ids(runs, text):
    """seqpt_jax's own tokenization: the seqio vocabulary, then EOS as fine-tuning inputs end."""
    return list(vocab.load(runs["spm"]).encode(text)) + [vocab.EOS_ID]


def test_ids_equal_the_projects(runs, hf):
    texts, out = hf
    assert out["mlm_class"] == "SentencePieceBackend"
    for got in (out["mlm_ids"][:-1], out["s2s_ids"]):
        assert got == [_project_ids(runs, t) for t in texts]
    assert any(vocab.UNK_ID < i < 3 + 256 for ids in out["s2s_ids"] for i in ids)  # byte fallback was hit
    size = vocab.load(runs["spm"]).vocab_size
    assert out["sentinels"] == [size - 1, size - 100]
    masked = out["mlm_ids"][-1]
    assert masked == _project_ids(runs, MASKED) and vocab.token_info(vocab.load(runs["spm"])).mask_id in masked


def test_mlm_logits_and_fill_mask_equal_the_projects(runs, hf):
    _, out = hf
    ids = np.array([out["mlm_ids"][-1]], np.int32)
    _, ours = _ours(runs["mlm"], {"encoder_input_tokens": ids})
    theirs = np.array(out["mlm_logits"])
    assert np.abs(ours[0] - theirs).max() <= TOL and np.abs(theirs).max() > 0.1
    at = int(np.flatnonzero(ids[0] == vocab.token_info(vocab.load(runs["spm"])).mask_id)[0])
    probs = jax.nn.softmax(ours[0, at].astype(np.float64))
    assert out["fill"][0][1] == pytest.approx(float(probs.max()), abs=1e-5)
    for token, score in out["fill"]:
        assert score == pytest.approx(float(probs[token]), abs=1e-5)


def test_seq2seq_logits_and_generate_equal_the_projects(runs, hf):
    _, out = hf
    source = np.array([_project_ids(runs, SOURCE)], np.int32)
    target = _project_ids(runs, TARGET)
    batch = {"encoder_input_tokens": source, "decoder_input_tokens": np.array([[0] + target[:-1]], np.int32)}
    cfg, ours = _ours(runs["s2s"], batch)
    theirs = np.array(out["s2s_logits"])
    assert np.abs(ours[0] - theirs).max() <= TOL and np.abs(theirs).max() > 0.1
    # generate(): each token it chose is our model's greedy choice given the ones before it.
    gen = out["generated"]
    assert gen[0] == cfg.pad_id and len(gen) > 1
    _, forced = _ours(runs["s2s"], {"encoder_input_tokens": source,
                                    "decoder_input_tokens": np.array([gen[:-1]], np.int32)})
    for t, token in enumerate(gen[1:]):
        assert forced[0, t, token] >= forced[0, t].max() - TOL


def test_model_card_states_the_runs_records(runs):
    card = (runs["tmp"] / "t5_s2s_hf" / "README.md").read_text()
    summaries = [json.loads((runs[k] / "summary.json").read_text()) for k in ("enc", "s2s")]
    assert f"encoder warm-started from `{runs['enc']}`" in card
    assert "the encoder side (encoder and embeddings) frozen for the first 1 steps" in " ".join(card.split())
    assert f"Training FLOPs (cumulative, with its sources) | {sum(s['train_flops'] for s in summaries):.3e}" in card
    assert f"Tokens seen (with its sources) | {sum(s['tokens'] for s in summaries):,}" in card
    assert f"Validation loss | {float(runs['losses']['s2s']):.4f} (step 2)" in card
    assert "- ko" in card and "pipeline_tag: text2text-generation" in card
    mlm_card = (runs["tmp"] / "bert_mlm_hf" / "README.md").read_text()
    assert "MLM pre-training from scratch" in mlm_card and "pipeline_tag: fill-mask" in mlm_card
    assert f"Validation loss | {float(runs['losses']['mlm']):.4f} (step 2)" in mlm_card


def _changed_copy(spm, dst):
    """A valid SentencePiece model that differs from `spm` in one score (same size, same path shape)."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    proto = pb.ModelProto.FromString(spm.read_bytes())
    proto.pieces[300].score -= 1.0
    dst.write_bytes(proto.SerializeToString())
    return dst


def test_vocabulary_is_recorded_found_and_a_different_one_refused(runs, tmp_path, capsys):
    from seqpt_jax.commands import finetune
    rec = json.loads((runs["mlm"] / vocab_record.RECORD).read_text())
    assert rec == {"path": str(runs["spm"]), "sha256": vocab_record.sha256(runs["spm"])}
    assert finetune.load_vocab(None, str(runs["mlm"])).sentencepiece_model_file == str(runs["spm"])
    other = _changed_copy(runs["spm"], tmp_path / "other.model")
    capsys.readouterr()
    assert cli.main(["convert", "--to-hf", str(runs["mlm"]), "--out", str(tmp_path / "x"),
                     "--vocab", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "differs from the one" in err and not (tmp_path / "x").exists()
    with pytest.raises(vocab_record.UserError, match="differs from the one"):
        finetune.load_vocab(str(other), str(runs["mlm"]))
    # A resumed run with another vocabulary stops before it trains or rewrites anything.
    config = (runs["mlm"] / "config.gin").read_text()
    with pytest.raises(vocab_record.UserError, match="differs from the one"):
        cli_args = ["--gin_file=models/bert_tiny.gin", "--gin_file=runs/pretrain_mlm.gin", "--gin_file=hw/cpu.gin",
                    f"--gin.MODEL_DIR={runs['mlm']}", f"--gin.VOCAB={other}", "--gin.TRAIN_STEPS=3",
                    f"--gin.CORPUS_DIR='{runs['corpus']}'", "--gin.BATCH_SIZE=8", "--gin.INPUT_LENGTH=32"]
        from seqpt_jax.commands import train
        train.main(cli_args)
    assert (runs["mlm"] / "config.gin").read_text() == config
    assert json.loads((runs["mlm"] / "summary.json").read_text())["steps"] == 2


def test_from_hf_brings_a_sentencepiece_vocabulary(runs, tmp_path, capsys):
    hf_dir = runs["tmp"] / "t5_s2s_hf"
    assert cli.main(["convert", "--from-hf", str(hf_dir), "--out", str(tmp_path / "ckpt")]) == 0
    copy = tmp_path / "ckpt" / vocab_record.COPY
    assert copy.read_bytes() == runs["spm"].read_bytes()
    assert vocab_record.resolve(str(tmp_path / "ckpt")) == str(copy)
    # ... and it round-trips: exporting the import needs no --vocab and keeps the same ids.
    assert cli.main(["convert", "--to-hf", str(tmp_path / "ckpt"), "--out", str(tmp_path / "back")]) == 0
    assert (tmp_path / "back" / "tokenizer.model").read_bytes() == runs["spm"].read_bytes()
    assert "checkpoint `" in (tmp_path / "back" / "README.md").read_text()  # no training records to claim


def test_from_hf_says_in_one_line_when_the_tokenizer_cannot_be_used(runs, tmp_path, capsys):
    import shutil
    import sentencepiece as spm
    src = runs["tmp"] / "bert_mlm_hf"
    wordpiece = tmp_path / "wordpiece"
    shutil.copytree(src, wordpiece)
    (wordpiece / "tokenizer.model").unlink()
    (wordpiece / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordPiece"}}))
    capsys.readouterr()
    assert cli.main(["convert", "--from-hf", str(wordpiece), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not SentencePiece" in err and not (tmp_path / "a").exists()
    assert cli.main(["convert", "--from-hf", str(wordpiece), "--out", str(tmp_path / "a"), "--weights-only"]) == 0
    assert not (tmp_path / "a" / vocab_record.COPY).exists() and vocab_record.resolve(str(tmp_path / "a")) is None
    # XLM-R's layout (<unk> 0, <s> 1, </s> 2, no pad) converts only for a model with its rows
    # (tests/test_convert_xlmr.py); this model has pad 0 and another size.
    fairseq = tmp_path / "fairseq"
    shutil.copytree(src, fairseq)
    (fairseq / "tokenizer.model").unlink()
    text = tmp_path / "t.txt"
    text.write_text("\n".join(json.loads(l)["text"] for l in open(runs["corpus"] / "text" / "en.train.jsonl")))
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(fairseq / "sentencepiece.bpe"),
                                   vocab_size=90, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    capsys.readouterr()
    assert cli.main(["convert", "--from-hf", str(fairseq), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "XLM-R's SentencePiece layout" in err
    assert not (tmp_path / "b").exists()
