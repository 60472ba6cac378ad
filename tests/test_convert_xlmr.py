"""`seqpt convert --from-hf` of an XLM-R directory brings its SentencePiece tokenizer, renumbered
as the model's embedding rows (fairseq: <s> 0, <pad> 1, </s> 2, <unk> 3, ..., <mask> last), so
the converted model continues pre-training with `seqpt train` and no vocabulary step; and a
tokenizer that is not SentencePiece is refused in one line.

Everything is built here, nothing from a hub: a unigram SentencePiece model in XLM-R's layout
(unk 0, <s> 1, </s> 2, no pad) trained on the multilingual fixture corpus, the
`XLMRobertaTokenizer` transformers makes of it, and a tiny random `XLMRobertaForMaskedLM`.
"""

from __future__ import annotations

import contextlib
import io
import json
import re

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")

from data_fixtures import SENTENCES, make_corpus  # noqa: E402
from seqpt_jax import cli, models  # noqa: E402
from seqpt_jax.data import vocab, vocab_record  # noqa: E402
from seqpt_jax.params_io import load  # noqa: E402

TOL = 1e-4
TEXTS = [s for lang in SENTENCES.values() for s in lang] + [
    "  two  spaces\tand a tab\nnew line ", "unseen 漢字龍 쀍 ☃ and 🙂", "Ｆｕｌｌｗｉｄｔｈ ｶﾀｶﾅ ﬁ №5 ½", "x"]


@pytest.fixture(scope="module")
def xlmr(tmp_path_factory):
    import sentencepiece as spm
    tmp = tmp_path_factory.mktemp("xlmr")
    corpus = make_corpus(tmp / "corpus")
    text = tmp / "text.txt"
    text.write_text("\n".join(json.loads(line)["text"] for path in sorted((corpus / "text").glob("*.train.jsonl"))
                              for line in open(path)))
    hf = tmp / "hf"
    hf.mkdir()
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(hf / "sentencepiece.bpe"), vocab_size=400,
                                   model_type="unigram", unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                                   character_coverage=0.9995, minloglevel=2)
    tok = tf.XLMRobertaTokenizer.from_pretrained(str(hf))  # converted from the .model, as for the real one
    tok.save_pretrained(str(hf))
    torch.manual_seed(0)
    model = tf.XLMRobertaForMaskedLM(tf.XLMRobertaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=66, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        layer_norm_eps=1e-5)).eval()
    model.save_pretrained(str(hf))
    assert cli.main(["convert", "--from-hf", str(hf), "--out", str(tmp / "ckpt")]) == 0
    return {"tmp": tmp, "hf": hf, "corpus": corpus, "tok": tok, "model": model, "ckpt": tmp / "ckpt"}


def test_vocabulary_is_recorded_with_the_models_ids(xlmr):
    tok, ckpt = xlmr["tok"], xlmr["ckpt"]
    copy = vocab_record.resolve(str(ckpt))
    assert copy == str(ckpt / vocab_record.COPY)
    sp = vocab.processor(copy)
    info = vocab.token_info(copy)
    assert (info.vocab_size, info.extra_ids) == (len(tok), 0) == (load(str(ckpt))[1].vocab_size, 0)
    assert (sp.bos_id(), info.pad_id, info.eos_id, sp.unk_id()) == (tok.bos_token_id, tok.pad_token_id,
                                                                   tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert info.mask_id == tok.mask_token_id == len(tok) - 1
    assert info.random_range == (4, len(tok) - 1) and info.special[[0, 1, 2, 3, len(tok) - 1]].all()
    assert [sp.id_to_piece(i) for i in range(len(tok))] == tok.convert_ids_to_tokens(list(range(len(tok))))
    # The project's ids (pieces + </s>, no <s>) are the HF tokenizer's on multilingual text.
    unk = 0
    for text in TEXTS:
        hf_ids = tok(text)["input_ids"]
        assert hf_ids[0] == tok.bos_token_id
        assert sp.encode(text) + [info.eos_id] == hf_ids[1:], text
        unk += hf_ids.count(tok.unk_token_id)
    assert unk > 0  # unseen characters: <unk> is 3 on both sides


def test_logits_equal_hf_on_the_tokenizers_ids(xlmr):
    tok, hf = xlmr["tok"], xlmr["model"]
    kind, cfg, params = load(str(xlmr["ckpt"]))
    enc = tok(TEXTS[:6], padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = hf(**enc).logits.numpy()
    ours = np.asarray(jax.jit(models.build(kind, cfg).apply)(
        {"params": params}, {"encoder_input_tokens": enc["input_ids"].numpy().astype(np.int32)}))
    valid = enc["attention_mask"].numpy().astype(bool)
    assert (enc["input_ids"].numpy() == 1).any()  # padded rows are part of the comparison
    assert float(np.abs(ours - ref)[valid].max()) <= TOL and np.abs(ref).max() > 0.1


def test_continued_pretraining_needs_no_vocab_and_exports_back(xlmr, capsys):
    tmp, tok = xlmr["tmp"], xlmr["tok"]
    run = tmp / "more"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli.main(["train", "--gin_file=runs/pretrain_mlm.gin", "--gin_file=runs/continue_pretraining.gin",
                       "--gin_file=hw/cpu.gin", f"--gin.MODEL_DIR={run}", f"--gin.CHECKPOINT={xlmr['ckpt']}",
                       f"--gin.CORPUS_DIR='{xlmr['corpus']}'", "--gin.BATCH_SIZE=8", "--gin.INPUT_LENGTH=32",
                       "--gin.TRAIN_STEPS=2", "--gin.WARMUP_STEPS=1", "--gin.loop.train.eval_every=2",
                       "--gin.loop.train.save_every=2", "--gin.loop.train.eval_batches=1",
                       "--gin.loop.train.progress=False"])
    assert rc == 0, capsys.readouterr().err
    loss = float(re.findall(r"\[eval\] step 2: loss=([0-9.]+)", out.getvalue())[0])
    # A random model's MLM loss is about ln(vocab); the data are masked with <mask> and padded with <pad>.
    assert abs(loss - np.log(len(tok))) < 1.5
    assert vocab_record.resolve(str(run)) == str(xlmr["ckpt"] / vocab_record.COPY)
    kind, cfg, _ = load(str(run))
    assert (cfg.vocab_size, cfg.pad_id, cfg.position_offset) == (len(tok), 1, 2)
    # The data the run saw: pad 1 fills the rows, MLM masks with <mask> (the last id), never with 0.
    from seqpt_jax.data import feeding, tasks
    tasks.register_project_tasks("seqpt_local_mlm", vocab_record.resolve(str(run)), str(xlmr["corpus"]), None, None)
    specs = tasks.fast_specs(tasks.get("seqpt_local_mlm"))
    batch = next(feeding.make_pipeline(specs, "train", 8, 256, pack=False, shard=(0, 1)))
    inputs = batch["encoder_input_tokens"]
    assert (inputs == 1).any() and (inputs == len(tok) - 1).any() and not (inputs == 0).any()

    # Export of the continued run: XLM-R's own tokenizer layout, the same ids as the original.
    assert cli.main(["convert", "--to-hf", str(run), "--out", str(tmp / "back")]) == 0
    back = tf.AutoTokenizer.from_pretrained(str(tmp / "back"))
    assert type(back).__name__ == "XLMRobertaTokenizer" and back.mask_token_id == tok.mask_token_id
    for text in TEXTS:
        assert back(text)["input_ids"] == tok(text)["input_ids"], text
    assert tf.AutoModelForMaskedLM.from_pretrained(str(tmp / "back")).config.vocab_size == len(tok)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_a_tokenizer_that_is_not_sentencepiece_is_refused_in_one_line(xlmr, tmp_path, capsys):
    import shutil
    wordpiece = tmp_path / "wordpiece"
    shutil.copytree(xlmr["hf"], wordpiece)
    for name in ("sentencepiece.bpe.model", "tokenizer.json"):
        (wordpiece / name).unlink()
    (wordpiece / "vocab.txt").write_text("[PAD]\n[UNK]\nthe\n##s\n")
    capsys.readouterr()
    assert cli.main(["convert", "--from-hf", str(wordpiece), "--out", str(tmp_path / "a")]) == 2
    err = _one_line(capsys)
    assert "(vocab.txt) is not SentencePiece" in err and "--weights-only" in err
    assert not (tmp_path / "a").exists()
    assert cli.main(["convert", "--from-hf", str(wordpiece), "--out", str(tmp_path / "a"), "--weights-only"]) == 0
    assert vocab_record.resolve(str(tmp_path / "a")) is None
    # An XLM-R-layout model whose size is not the model's is refused too, naming both sizes.
    wrong = tmp_path / "wrong"
    shutil.copytree(xlmr["hf"], wrong)
    config = json.loads((wrong / "config.json").read_text())
    (wrong / "config.json").write_text(json.dumps({**config, "vocab_size": config["vocab_size"] + 5}))
    from safetensors.numpy import load_file, save_file
    state = load_file(str(wrong / "model.safetensors"))
    for key in ("roberta.embeddings.word_embeddings.weight", "lm_head.decoder.weight"):
        if key in state:
            state[key] = np.concatenate([state[key], np.zeros((5, state[key].shape[1]), state[key].dtype)])
    for key in ("lm_head.bias", "lm_head.decoder.bias"):
        if key in state:
            state[key] = np.concatenate([state[key], np.zeros(5, state[key].dtype)])
    save_file(state, str(wrong / "model.safetensors"))
    capsys.readouterr()
    assert cli.main(["convert", "--from-hf", str(wrong), "--out", str(tmp_path / "b")]) == 2
    assert "XLM-R's SentencePiece layout" in _one_line(capsys) and not (tmp_path / "b").exists()
