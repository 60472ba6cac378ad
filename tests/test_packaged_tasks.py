"""The packaged downstream task (ja_ner: Japanese NER from the hironsancorpus package): parsing,
the deterministic split, piece alignment for unspaced words, the majority-label baseline, and the
experiment's downstream table carrying the task with its baseline and random-init rows."""

import collections
import io
import unicodedata

import pytest
import sentencepiece as spm

from seqpt_jax.data import vocab as vocab_lib
from seqpt_jax.evaluate import data, packaged, protocol, tasks
from seqpt_jax.experiment import downstream as ds, report


@pytest.fixture(scope="module")
def sents():
    return packaged.sentences("ja_ner")


def test_ja_ner_reads_the_package_file(sents):
    assert len(sents) == 500 and sum(len(s["words"]) for s in sents) == 15520
    first = sents[0]
    assert first["words"][:8] == ["2005", "年", "7", "月", "14", "日", "、", "南アフリカ"]
    assert first["tags"][:8] == ["B-DAT", "I-DAT", "I-DAT", "I-DAT", "I-DAT", "I-DAT", "O", "B-LOC"]
    counts = collections.Counter(t for s in sents for t in s["tags"])
    assert counts["O"] == 12958 and counts["B-LOC"] == 398 and counts["B-PSN"] == 162
    assert {t[2:] for t in counts if t != "O"} == {"ART", "DAT", "LOC", "MON", "ORG", "PER", "PSN", "TIM"}
    split = packaged.split("ja_ner", sents)
    assert [len(split["train"]), len(split["test"])] == [450, 50]           # the package's own 90/10 split
    assert split["train"][0] == first and split["test"][-1] == sents[-1]


def test_ja_ner_is_a_registered_corpus_task(tmp_path):
    task = tasks.from_corpus("ja_ner", str(tmp_path))                      # written where it is missing
    assert task.kind == "tagging" and task.source_lang == "ja" and task.spaced is False
    assert task.langs("train") == task.langs("test") == ["ja"]
    train = data.read_tagging(task.files["train"]["ja"], "train")
    assert len(train) == 450 and train == packaged.split("ja_ner", packaged.sentences("ja_ner"))["train"]
    data.check_labels("tagging", data.read_tagging(task.files["test"]["ja"], "test"),
                      data.label_list("tagging", train), "ja_ner test")  # every test tag is learnable
    counts = packaged.materialise("ja_ner", tmp_path / "capped", {"train": 48, "test": 16})
    assert counts == {"ja.train": 48, "ja.test": 16}
    assert len(data.read_tagging(str(tmp_path / "capped" / "ja.test.conll"), "test")) == 16


@pytest.fixture(scope="module")
def ja_vocab(tmp_path_factory, sents):
    lines = ["".join(s["words"]) for s in sents]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, vocab_size=2000, character_coverage=1.0,
                                   byte_fallback=True, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   hard_vocab_limit=False, minloglevel=2)
    path = tmp_path_factory.mktemp("ja") / "ja.model"
    path.write_bytes(model.getvalue())
    return vocab_lib.load(path)


def _nfkc(text):  # SentencePiece's default normaliser (full-width "（" reads as "(")
    return unicodedata.normalize("NFKC", text)


def test_unspaced_words_align_first_piece_to_each_word(ja_vocab, sents):
    examples = sents[:20]
    labels = data.label_list("tagging", sents)
    spaced = data.encode_tagging(ja_vocab, examples, labels, 512)
    enc = data.encode_tagging(ja_vocab, examples, labels, 512, spaced=False)
    assert enc.truncated == spaced.truncated == 0
    bare = ja_vocab.tokenizer.piece_to_id("\u2581")
    assert (spaced.arrays["encoder_input_tokens"] == bare).sum() > 100     # each word's "▁" when spaced
    assert not (enc.arrays["encoder_input_tokens"] == bare).any()
    for i, ex in enumerate(examples):
        tokens = enc.arrays["encoder_input_tokens"][i].tolist()
        pos = enc.word_index[i] + [tokens.index(1)]                         # ... up to EOS
        for j, (word, tag) in enumerate(zip(ex["words"], ex["tags"])):
            assert ja_vocab.decode(tokens[pos[j]:pos[j + 1]]) == _nfkc(word)  # its pieces, in order
            assert enc.arrays["labels"][i, pos[j]] == labels.index(tag)    # its tag on its first piece
        assert enc.arrays["label_weights"][i].sum() == len(ex["words"])   # and on no other piece
        assert ja_vocab.decode(tokens[:pos[-1]]) == _nfkc("".join(ex["words"]))  # the unspaced sentence


def test_majority_baseline_is_computed_from_the_training_split(sents):
    train = [{"words": list("abcd"), "tags": ["O", "B-X", "I-X", "O"]}, {"words": ["e"], "tags": ["B-Y"]}]
    test = [{"words": list("abc"), "tags": ["B-X", "O", "O"]}]
    labels = data.label_list("tagging", train)
    assert protocol.majority("tagging", train, test, labels) == {"label": "O", "token_accuracy": 2 / 3, "f1": 0.0}
    ents = [{"words": list("ab"), "tags": ["B-X", "B-X"]}]                # an entity tag as the majority
    assert protocol.majority("tagging", ents, ents, ["B-X"])["f1"] == 1.0
    cls = [{"label": "b"}, {"label": "a"}, {"label": "b"}, {"label": "a"}, {"label": "c"}]
    base = protocol.majority("classification", cls, [{"label": "a"}, {"label": "c"}], ["a", "b", "c"])
    assert base["label"] == "a" and base["accuracy"] == 0.5                 # tie -> first in sorted order
    assert protocol.majority("generation", [], [], []) is None
    split = packaged.split("ja_ner", sents)
    tags = [t for s in split["test"] for t in s["tags"]]
    base = protocol.majority("tagging", split["train"], split["test"], data.label_list("tagging", split["train"]))
    assert base == {"label": "O", "token_accuracy": tags.count("O") / len(tags), "f1": 0.0}
    assert 0.8 < base["token_accuracy"] < 0.9


def _record(ner_f1, ner_acc):
    return {"tasks": {
        "section": {"metric": "accuracy", "lang": "en", "scores": {"en": 0.5, "de": 0.3},
                    "majority": {"label": "x", "scores": {"en": 0.25, "de": 0.2}}},
        "ja_ner": {"metric": "f1", "lang": "ja", "scores": {"ja": ner_f1}, "token_accuracy": {"ja": ner_acc},
                   "majority": {"label": "O", "scores": {"ja": 0.0}, "token_accuracy": {"ja": 0.848}}}}}


def test_downstream_table_has_the_task_its_baseline_and_random_init():
    assert "ja_ner" in ds.TASKS
    table = ds.table({"mlm": {0: _record(0.4, 0.9), 1: _record(0.5, 0.92)}, ds.RANDOM: {0: _record(0.1, 0.86)}})
    ner = table["ja_ner"]
    assert set(ner) == {"mlm", ds.RANDOM, ds.MAJORITY}
    assert ner["mlm"] == {"metric": "f1", "lang": "ja", "en": [0.4, 0.5], "zero_shot": [None, None],
                          "token_accuracy": [0.9, 0.92], "seeds": [0, 1]}
    assert ner[ds.MAJORITY] == {"metric": "f1", "lang": "ja", "en": [0.0], "zero_shot": [None],
                                "token_accuracy": [0.848], "seeds": [0]}
    assert table["section"][ds.MAJORITY] == {"metric": "accuracy", "lang": "en", "en": [0.25], "zero_shot": [0.2],
                                         "seeds": [0]}
    md = report.markdown({"experiment": "sequential", "scale": "cpu", "target": {}, "arms": {}, "claims": [],
                          "savings_curve": {}, "downstream": table})
    assert "## Downstream: ja_ner (f1; fine-tuned on ja" in md
    assert "| majority_baseline | 0.000 | 0.848 | — |" in md and "| random_init | 0.100 | 0.860 | — |" in md


def test_claim_a_labels_on_ja_ner_and_the_baseline_is_judged():
    """Claim (a) reads ja_ner (ui_tagging learns nothing), paired over 3 pre-training seeds; the
    majority baseline is judged on token accuracy (its entity F1 is 0 by construction)."""
    from seqpt_jax.experiment import claims
    jitter = (0.0, 0.01, -0.01)

    def row(metric, value, token_accuracy=None):
        out = {"metric": metric, "en": [value + j for j in jitter], "seeds": [0, 1, 2]}
        if token_accuracy is not None:
            out["token_accuracy"] = [token_accuracy + j for j in jitter]
        return out

    ds_rows = {"section": {"mlm": row("accuracy", 0.8), "enc_scratch": row("accuracy", 0.78),
                           ds.RANDOM: row("accuracy", 0.5), ds.MAJORITY: row("accuracy", 0.3)},
               "ui_tagging": {"mlm": row("f1", 0.0), "enc_scratch": row("f1", 0.05)},   # learns nothing
               "ja_ner": {"mlm": row("f1", 0.5, 0.95), "enc_scratch": row("f1", 0.2, 0.9),
                          ds.RANDOM: row("f1", 0.1, 0.87), ds.MAJORITY: {"metric": "f1", "en": [0.0],
                                                                         "token_accuracy": [0.848]}}}
    out = {c["claim"][:4]: c for c in claims._downstream_claims(ds_rows)}
    assert out["(a) "]["holds"] is True and "ja_ner f1" in out["(a) "]["evidence"]
    assert "enc_scratch: labeling gap +0.750" in out["(a) "]["evidence"]      # (0.5 - 0.2) / (0.5 - 0.1)
    assert out["pre-"]["holds"] is True and "mlm - random on ja_ner: +0.400" in out["pre-"]["evidence"]
    assert out["the "]["holds"] is True and "ja_ner token_accuracy: mlm - majority +0.102" in out["the "]["evidence"]
    ds_rows["ja_ner"]["mlm"] = row("f1", 0.0, 0.7)                       # below predicting O everywhere
    out = {c["claim"][:4]: c for c in claims._downstream_claims(ds_rows)}
    assert out["the "]["holds"] is False and out["(a) "]["holds"] is not True
