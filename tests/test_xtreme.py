"""XTREME tasks through `seqpt finetune`, each from small files in the dataset's own on-disk format
(XNLI tsv, PAWS-X tsv, WikiANN `lang:token tag`, UD CoNLL-U) and from TFDS mock data; the
random re-init of a non-preset checkpoint shape; same seed, same numbers."""

import json
import random

import jax
import numpy as np
import pytest

from seqpt_jax import cli, models, params_io
from test_finetune import FAST, FILLER, FRUIT, VEHICLE, setup  # noqa: F401  (setup: the shared fixture)

LANGS = ("en", "de")
XNLI_HEADER = ("language gold_label sentence1_binary_parse sentence2_binary_parse sentence1_parse "
               "sentence2_parse sentence1 sentence2 promptID pairID genre label1 label2 label3 label4 label5 "
               "sentence1_tokenized sentence2_tokenized match").split()
NLI = {"entailment": FRUIT[:2], "contradiction": VEHICLE[:2], "neutral": FRUIT[2:]}


def _words(rng, key):
    words = [rng.choice(FILLER) for _ in range(rng.randint(1, 3))]
    words.insert(rng.randint(0, len(words)), key)
    return words


def _pairs(rng, n, labels):
    """(premise, hypothesis, label): the hypothesis's keyword gives the label."""
    out = []
    for _ in range(n):
        label = rng.choice(sorted(labels))
        out.append((" ".join(rng.choice(FILLER) for _ in range(3)),
                    " ".join(_words(rng, rng.choice(labels[label]))), label))
    return out


def _xnli(root, rng, n_train=32):
    """XNLI-1.0/xnli.{dev,test}.tsv (all languages, one file) and XNLI-MT-1.0's train per language."""
    (root / "XNLI-1.0").mkdir(parents=True)
    for split, n in (("dev", 6), ("test", 8)):
        rows = ["\t".join(XNLI_HEADER)]
        for pair_id, (a, b, label) in enumerate(_pairs(rng, n, NLI)):
            for lang in LANGS:
                cells = dict.fromkeys(XNLI_HEADER, "x")
                cells.update(language=lang, gold_label=label, sentence1=a, sentence2=b, pairID=str(pair_id))
                rows.append("\t".join(cells[c] for c in XNLI_HEADER))
        (root / "XNLI-1.0" / f"xnli.{split}.tsv").write_text("\n".join(rows) + "\n")
    mt = root / "XNLI-MT-1.0" / "multinli"
    mt.mkdir(parents=True)
    for lang in LANGS:
        rows = [f"{a}\t{b}\t{'contradictory' if l == 'contradiction' else l}" for a, b, l in _pairs(rng, n_train, NLI)]
        (mt / f"multinli.train.{lang}.tsv").write_text("premise\thypo\tlabel\n" + "\n".join(rows) + "\n")


def _pawsx(root, rng):
    labels = {"1": FRUIT, "0": VEHICLE}
    for lang in LANGS:
        d = root / "x-final" / lang
        d.mkdir(parents=True)
        for name, n in (("train.tsv" if lang == "en" else "translated_train.tsv", 32), ("dev_2k.tsv", 6),
                        ("test_2k.tsv", 8)):
            rows = [f"{i}\t{a}\t{b}\t{l}" for i, (a, b, l) in enumerate(_pairs(rng, n, labels))]
            rows.append(f"{n}\tmisparsed row\t\t")  # the files' known bad lines: skipped
            (d / name).write_text("id\tsentence1\tsentence2\tlabel\n" + "\n".join(rows) + "\n")


def _tagged(rng, n, tag_of):
    out = []
    for _ in range(n):
        key = rng.choice(FRUIT + VEHICLE)
        out.append([(w, tag_of(w, key)) for w in _words(rng, key)])
    return out


def _wikiann(root, rng):
    """<lang>/{train,dev,test}: `lang:token<TAB>tag`, as each panx_dataset <lang>.tar.gz extracts."""
    tag = lambda w, key: ("B-ORG" if key in VEHICLE else "B-LOC") if w == key else "O"
    for lang in LANGS:
        (root / lang).mkdir(parents=True)
        for split, n in (("train", 32), ("dev", 6), ("test", 8)):
            text = "\n\n".join("\n".join(f"{lang}:{w}\t{t}" for w, t in s) for s in _tagged(rng, n, tag))
            (root / lang / split).write_text(text + "\n")


def _conllu(sentences):
    out = []
    for k, s in enumerate(sentences):
        out += [f"# sent_id = {k}", "# text = " + " ".join(w for w, _ in s)]
        if k == 0:  # a multi-word token range and an empty node: not words of the task
            out.append(f"1-2\t{s[0][0]}x\t_\t_\t_\t_\t_\t_\t_\t_")
        for i, (w, t) in enumerate(s, 1):
            out.append(f"{i}\t{w}\t{w}\t{t}\t_\t_\t{i - 1}\tdep\t_\t_")
        if k == 0:
            out.append(f"{len(s)}.1\tgone\t_\tVERB\t_\t_\t_\t_\t_\t_")
        out.append("")
    return "\n".join(out) + "\n"


def _udpos(root, rng):
    """ud-treebanks-v2.5 layout; German has two treebanks, merged as XTREME merges them."""
    tag = lambda w, key: "NOUN" if w in FRUIT else "PROPN" if w in VEHICLE else "DET" if w in ("the", "a") else "ADJ"
    for lang, tb, splits in (("en", "ewt", ("train", "dev", "test")), ("de", "gsd", ("train", "test")),
                             ("de", "hdt", ("test",))):
        d = root / f"UD_{ {'en': 'English', 'de': 'German'}[lang]}-{tb.upper()}"
        d.mkdir(parents=True)
        for split in splits:
            (d / f"{lang}_{tb}-ud-{split}.conllu").write_text(_conllu(_tagged(rng, 24 if split == "train" else 6, tag)))


WRITERS = {"xnli": _xnli, "pawsx": _pawsx, "wikiann": _wikiann, "udpos": _udpos}
METRIC = {"xnli": "accuracy", "pawsx": "accuracy", "wikiann": "f1", "udpos": "token_accuracy"}


def _finetune(setup, task, source, out, *extra):  # noqa: F811
    rc = cli.main(["finetune", "--task", task, *source, "--init", setup["ckpt"], "--vocab", setup["vocab"],
                   "--out", str(out), "--gin.Options.epochs=2", *FAST, "--gin.Options.in_language=True", *extra])
    assert rc == 0
    return json.loads((out / "results.json").read_text())


def _table_rows_match_header(md: str):
    rows = [l for l in md.splitlines() if l.startswith("|")]
    widths = {l.count("|") for l in rows}
    assert len(widths) == 1, md


@pytest.mark.parametrize("task", sorted(WRITERS))
def test_xtreme_task_from_its_own_files(setup, tmp_path, task):  # noqa: F811
    """English fine-tuning tested zero-shot on every language, German in-language from its own
    (translated) train, the best validation epoch kept, XTREME's metric primary."""
    WRITERS[task](tmp_path / "data", random.Random(1))
    res = _finetune(setup, task, ["--data", str(tmp_path / "data")], tmp_path / "out")
    assert res["primary_metric"] == METRIC[task]
    assert [(r["train_lang"], r["mode"], sorted(r["test"])) for r in res["runs"]] == [
        ("en", "zero-shot", ["de", "en"]), ("de", "in-language", ["de"])]
    zero_shot = res["runs"][0]
    n_test = {"xnli": 8, "pawsx": 8, "wikiann": 8, "udpos": 6}[task]
    assert zero_shot["test"]["en"]["n"] == n_test
    assert zero_shot["test"]["de"]["n"] == (12 if task == "udpos" else n_test)  # two German treebanks
    assert zero_shot["n_train"] == (24 if task == "udpos" else 32)
    assert [p["step"] for p in zero_shot["validation_curve"]] == [2, 4]  # 32 examples / batch 16, 2 epochs
    assert 0.0 <= zero_shot["test"]["de"][METRIC[task]] <= 1.0
    if task == "xnli":
        assert zero_shot["labels"] == ["contradiction", "entailment", "neutral"]  # "contradictory" renamed
    if task == "udpos":
        assert "f1" not in zero_shot["test"]["en"] and zero_shot["labels"] == ["ADJ", "DET", "NOUN", "PROPN"]
    if task == "wikiann":
        assert {"precision", "recall", "f1"} <= set(zero_shot["test"]["en"])
    _table_rows_match_header((tmp_path / "out" / "results.md").read_text())


def test_xtreme_learns_from_the_english_train(setup, tmp_path):  # noqa: F811
    """The loaders hand the model the real labels: a keyword task is learnt, zero-shot too."""
    _xnli(tmp_path / "data", random.Random(2), n_train=96)
    res = _finetune(setup, "xnli", ["--data", str(tmp_path / "data")], tmp_path / "out",
                    "--gin.Options.epochs=16", "--gin.Options.in_language=False")
    scores = res["runs"][0]["test"]
    assert scores["en"]["accuracy"] >= 0.75 and scores["de"]["accuracy"] >= 0.75, scores  # chance: 1/3


@pytest.mark.parametrize("case", ["no_data", "bad_conllu", "bad_wikiann", "no_header"])
def test_xtreme_bad_data_is_one_clear_line(setup, tmp_path, capsys, case):  # noqa: F811
    root = tmp_path / "data"
    task, expect = {"no_data": ("udpos", "conllu"), "bad_conllu": ("udpos", "en_ewt-ud-train.conllu:3:"),
                    "bad_wikiann": ("wikiann", "train:1:"), "no_header": ("pawsx", "'sentence1'")}[case]
    root.mkdir()
    if case != "no_data":
        WRITERS[task](root, random.Random(6))
    if case == "bad_conllu":
        path = root / "UD_English-EWT" / "en_ewt-ud-train.conllu"
        path.write_text("# sent_id = 1\n# text = apple\n1\tapple\tNOUN\n")
    elif case == "bad_wikiann":
        (root / "en" / "train").write_text("apple B-LOC\n")
    elif case == "no_header":
        path = root / "x-final" / "en" / "train.tsv"
        path.write_text("\n".join(path.read_text().splitlines()[1:]) + "\n")
    rc = cli.main(["finetune", "--task", task, "--data", str(root), "--init", setup["ckpt"],
                   "--vocab", setup["vocab"], "--out", str(tmp_path / "out"), *FAST])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and expect in err, err


def _mock_tfds(root, task, langs):
    """TFDS's own layout of prepared datasets, data_dir/<builder>/<config>, for `mock_data` to serve."""
    from seqpt_jax.evaluate import xtreme
    if task == "xnli":
        for builder in ("multi_nli", "xnli", "xtreme_xnli"):
            (root / builder).mkdir(parents=True)
        return
    builder, config, _ = xtreme.TFDS[task]
    for lang in langs:
        (root / builder / config.format(lang=lang)).mkdir(parents=True)


@pytest.mark.parametrize("task", ["pawsx", "wikiann", "udpos", "xnli"])
def test_xtreme_task_from_tfds(setup, tmp_path, task):  # noqa: F811
    """The TFDS builders of tensorflow-datasets 4.9.x (paws_x_wiki, wikiann, xtreme_pos, xnli +
    multi_nli + xtreme_xnli), read through `tfds.testing.mock_data` (random examples of the real
    features): every split of every language read, and one task end to end through
    `seqpt finetune --tfds`."""
    tfds = pytest.importorskip("tensorflow_datasets")
    _mock_tfds(tmp_path / "tfds", task, LANGS)

    def as_dataset(self, split, **kwargs):
        """xnli's mock: random `TranslationVariableLanguages` names no real language, so these rows
        hold one text per language (xnli, xtreme_xnli) or plain text (multi_nli)."""
        import tensorflow as tf
        words = [random.Random(split).choice(FRUIT) for _ in range(8)]
        if self.name == "multi_nli":
            rows = [{"premise": "the apple", "hypothesis": f"a {w}", "label": i % 3} for i, w in enumerate(words)]
            spec = {"premise": tf.TensorSpec((), tf.string), "hypothesis": tf.TensorSpec((), tf.string)}
        else:
            rows = [{"premise": {l: "the apple" for l in LANGS},
                     "hypothesis": {"language": list(LANGS), "translation": [f"a {w}"] * 2},
                     "label": i % 3} for i, w in enumerate(words)]
            spec = {"premise": {l: tf.TensorSpec((), tf.string) for l in LANGS},
                    "hypothesis": {"language": tf.TensorSpec((None,), tf.string),
                                   "translation": tf.TensorSpec((None,), tf.string)}}
        return tf.data.Dataset.from_generator(lambda: iter(rows), output_signature={
            **spec, "label": tf.TensorSpec((), tf.int64)})

    from seqpt_jax.evaluate import tasks, xtreme
    names = {"pawsx": set(xtreme.PAWS_LABELS), "xnli": set(xtreme.NLI_LABELS), "udpos": None,
             "wikiann": {"O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"}}[task]
    with tfds.testing.mock_data(num_examples=8, as_dataset_fn=as_dataset if task == "xnli" else None):
        found = tasks.from_xtreme(task, tfds_dir=str(tmp_path / "tfds"), langs=list(LANGS))
        assert {split: sorted(by_lang) for split, by_lang in found.files.items()} == {
            split: ["de", "en"] for split in ("train", "validation", "test")}
        for split, by_lang in found.files.items():
            for lang in by_lang:
                examples = found.read(split, lang)
                labels = {t for ex in examples for t in ex["tags"]} if found.kind == "tagging" else \
                    {ex["label"] for ex in examples}
                assert len(examples) == 8 and (names is None or labels <= names), (split, lang, labels)
        if task == "udpos":  # one of them end to end (the others: from their own files, above)
            res = _finetune(setup, task, ["--tfds", str(tmp_path / "tfds"), "--langs", "en,de"], tmp_path / "out")
            assert [(r["mode"], sorted(r["test"])) for r in res["runs"]] == [
                ("zero-shot", ["de", "en"]), ("in-language", ["de"])]
            assert all(t["n"] == 8 for t in res["runs"][0]["test"].values())
            _table_rows_match_header((tmp_path / "out" / "results.md").read_text())


def test_reinit_keeps_a_non_preset_shape_with_fresh_weights(setup, tmp_path):  # noqa: F811
    """--init DIR --reinit: the checkpoint's own (non-preset) config, weights that differ from the
    checkpoint's and equal a fresh init from the seed; fine-tuned end to end."""
    from seqpt_jax.commands.finetune import starting_point

    _, base = params_io.read_model(setup["ckpt"])
    cfg = base.replace(d_model=24, num_heads=3, head_dim=8, d_ff=40, num_encoder_layers=2)
    ckpt = params_io.save_params(str(tmp_path / "odd"), "encoder_mlm", cfg,
                                 models.init(models.EncoderMLM(cfg), jax.random.key(7)))
    _, _, trained = params_io.load(ckpt)
    kind, got_cfg, fresh = starting_point(ckpt, None, True, 0, seed=3)
    assert (kind, got_cfg) == ("encoder", cfg)
    expect = models.init(models.Encoder(cfg), jax.random.key(3))
    assert jax.tree.structure(fresh) == jax.tree.structure(expect)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(fresh), jax.tree.leaves(expect)))
    assert not np.allclose(fresh["encoder"]["layers"]["mlp"]["wi"]["kernel"],
                           trained["encoder"]["layers"]["mlp"]["wi"]["kernel"])

    _wikiann(tmp_path / "data", random.Random(3))
    out = tmp_path / "out"
    rc = cli.main(["finetune", "--task", "wikiann", "--data", str(tmp_path / "data"), "--init", ckpt, "--reinit",
                   "--vocab", setup["vocab"], "--out", str(out), "--gin.Options.epochs=1", "--gin.Options.seed=3",
                   *FAST])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["init"] == f"random:{ckpt}"
    _, tuned_cfg, tuned = params_io.load(str(out / "model"))
    assert tuned_cfg.replace(dropout_rate=cfg.dropout_rate) == cfg


def test_same_seed_same_numbers(setup, tmp_path):  # noqa: F811
    _pawsx(tmp_path / "data", random.Random(4))
    src = ["--data", str(tmp_path / "data")]
    runs = [_finetune(setup, "pawsx", src, tmp_path / name, "--gin.Options.epochs=1", f"--gin.Options.seed={seed}")
            for name, seed in (("a", 5), ("b", 5), ("c", 6))]
    assert runs[0]["runs"] == runs[1]["runs"]
    assert runs[0]["runs"][0]["final_loss"] != runs[2]["runs"][0]["final_loss"]  # the seed is what decides


def test_experiment_downstream_adds_the_xtreme_tasks_present(setup, tmp_path, monkeypatch, capsys):  # noqa: F811
    """$SEQPT_XTREME_DIR/<task>/: the tasks found join the downstream table (capped like the corpus
    tasks); each missing one is skipped with one line, said once."""
    from seqpt_jax.experiment import downstream as ds
    root = tmp_path / "xtreme"
    _pawsx(root / "pawsx", random.Random(5))
    _udpos(root / "udpos", random.Random(5))
    monkeypatch.setenv(ds.XTREME_ENV, str(root))
    monkeypatch.setattr(ds, "_SAID", set())
    s = {"train": 16, "test": 4, "epochs": 1.0, "ner_epochs": 1.0, "length": 16, "seeds": 1}
    (tmp_path / "work").mkdir()
    recs = ds.finetune_xtreme(setup["ckpt"], setup["vocab"], s, tmp_path / "work")
    ds.finetune_xtreme(setup["ckpt"], setup["vocab"], s, tmp_path / "work")
    skipped = [l for l in capsys.readouterr().out.splitlines() if "skipped" in l]
    assert sorted(l.split()[1] for l in skipped) == ["wikiann", "xnli"], skipped  # once each
    assert sorted(recs) == ["pawsx", "udpos"]
    assert recs["pawsx"]["n"] == {"de": 4, "en": 4} and recs["pawsx"]["steps"] == 1  # 16 examples, batch 32
    assert recs["udpos"]["metric"] == "token_accuracy" and "token_accuracy" in recs["udpos"]["majority"]
    table = ds.table({"mlm": {0: {"tasks": recs}}})
    assert table["pawsx"]["mlm"]["zero_shot"] == [recs["pawsx"]["scores"]["de"]]
    assert table["udpos"][ds.MAJORITY]["en"] == [recs["udpos"]["majority"]["scores"]["en"]]

    monkeypatch.delenv(ds.XTREME_ENV)
    monkeypatch.setattr(ds, "_SAID", set())
    assert ds.finetune_xtreme(setup["ckpt"], setup["vocab"], s, tmp_path / "work") == {}
    ds.finetune_xtreme(setup["ckpt"], setup["vocab"], s, tmp_path / "work")
    assert len([l for l in capsys.readouterr().out.splitlines() if "is not set" in l]) == 1
