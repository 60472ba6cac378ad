"""Vocabulary training (mT5 conventions) and the corpus reader's handling of bad input."""

import json

import numpy as np
import pytest

from data_fixtures import make_corpus
from seqpt_jax import cli
from seqpt_jax.data import mixing, preprocessors, records, vocab
from seqpt_jax.errors import UserError


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = make_corpus(tmp_path_factory.mktemp("corpus"))
    path = root / "sp.model"
    voc = vocab.train(root, 700, path)
    return root, path, voc


def test_conventions_and_sentinels_at_top(trained):
    _, path, voc = trained
    sp = vocab.processor(path)
    assert voc.vocab_size == sp.get_piece_size() + 100
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
    assert voc.tokenizer.id_to_piece(voc.vocab_size - 1).endswith("<extra_id_0>")
    assert voc.tokenizer.id_to_piece(voc.vocab_size - 100).endswith("<extra_id_99>")
    info = vocab.token_info(voc)
    assert info.sentinel(0) == voc.vocab_size - 1 and info.mask_id == voc.vocab_size - 100
    assert info.special[info.vocab_size - 100:].all() and not info.special[3:sp.get_piece_size()].all()


def test_byte_fallback_round_trips_unseen_text(trained):
    sp = vocab.processor(trained[1])
    text = "Unseen: 🦀 ქართული ñandú"
    ids = sp.encode(text)
    assert vocab.UNK_ID not in ids
    assert sp.decode(ids) == text


def test_temperature_sampling_of_training_text(tmp_path):
    root = make_corpus(tmp_path, langs=["en", "de", "ru"], docs={"train": 10})
    # Make English 9x larger than the others.
    with open(root / "text" / "en.train.jsonl", "a", encoding="utf-8") as f:
        for i in range(80):
            f.write(json.dumps({"text": f"Extra English document number {i} about packages.",
                                "source": "x", "id": str(i)}) + "\n")
    chars = {lang: sum(len(line) for t in records.read_texts(root, lang, "train")
                       for line in t.split("\n") if line.strip()) for lang in ("en", "de", "ru")}
    _, taken = vocab._sample_lines(root, ["en", "de", "ru"], 0.3, 10**9, 0, records.SkipCounter())
    want = mixing.temperature_rates(chars, 0.3)
    total = sum(taken.values())
    for lang in taken:  # each share within 2 points of p_l ~ n_l^0.3 (one line of overshoot)
        assert abs(taken[lang] / total - want[lang]) < 0.02
    assert want["en"] < chars["en"] / sum(chars.values())  # the large language is downsampled


def test_whole_word_masking_with_real_pieces(trained):
    root, path, voc = trained
    sp, info = vocab.processor(path), vocab.token_info(voc)
    texts = list(records.read_texts(root, "de", "train"))[:20]
    for seed, text in enumerate(texts):
        ids = np.array(sp.encode(text), np.int32)
        out = preprocessors.objective("wwm")(ids, np.random.default_rng(seed), info)
        pieces = [sp.id_to_piece(int(i)) for i in ids]
        word = np.cumsum([p.startswith(vocab.WORD_START) or k == 0 for k, p in enumerate(pieces)])
        for w in np.unique(word):
            assert len(set(out["weights"][word == w].tolist())) == 1


def test_cli_prints_tokens_per_char(tmp_path, capsys):
    root = make_corpus(tmp_path, langs=["en", "ru", "zh"], docs={"train": 30, "validation": 4})
    assert cli.main(["vocab", "train", "--corpus", str(root), "--size", "450",
                     "--out", str(tmp_path / "v.model")]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: float(line.split()[1]) for line in out.splitlines()[2:]}
    assert set(rows) == {"en", "ru", "zh"} and all(0 < v < 4 for v in rows.values())
    assert "sentinels at the top" in out


@pytest.mark.parametrize("case", ["empty_dir", "missing_dir", "no_lang", "missing_vocab", "bad_vocab"])
def test_bad_inputs_give_one_clear_line(tmp_path, capsys, case):
    if case == "empty_dir":
        argv = ["vocab", "train", "--corpus", str(tmp_path), "--out", str(tmp_path / "v.model")]
    elif case == "missing_dir":
        argv = ["vocab", "train", "--corpus", str(tmp_path / "nope"), "--out", str(tmp_path / "v")]
    elif case == "no_lang":
        make_corpus(tmp_path, langs=["en"], docs={"train": 3})
        argv = ["vocab", "train", "--corpus", str(tmp_path), "--langs", "en", "xx",
                "--out", str(tmp_path / "v.model")]
    if case in ("missing_vocab", "bad_vocab"):
        path = tmp_path / "v.model"
        if case == "bad_vocab":
            path.write_text("not a model")
        with pytest.raises(UserError) as e:
            vocab.load(path)
        assert "\n" not in str(e.value) and str(path) in str(e.value)
        return
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err
    assert {"empty_dir": "seqpt corpus build", "missing_dir": "does not exist",
            "no_lang": "'xx'"}[case] in err


def test_reader_skips_and_counts_bad_records(tmp_path):
    path = tmp_path / "x.jsonl"
    with open(path, "wb") as f:
        f.write(b'{"text": "good one"}\n')
        f.write(b'{"text": "bad \xff\xfe utf8"}\n')
        f.write(b'{"text": "' + b"a" * (10 << 20) + b'"}\n')  # a 10 MB single line
        f.write(b"not json\n")
        f.write(b'{"other": 1}\n')
        f.write(b'{"text": "good two"}')
    skipped = records.SkipCounter()
    texts = [r["text"] for r in records.read_jsonl(path, ("text",), skipped)]
    assert texts == ["good one", "good two"]
    assert skipped == {"invalid UTF-8": 1, "over-long lines": 1, "invalid JSON": 1,
                       "records missing text": 1}
