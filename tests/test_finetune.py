"""`seqpt finetune` / `seqpt eval` end to end on tiny files, and the bad-input errors."""

import io
import json
import random

import jax
import pytest
import sentencepiece as spm

from seqpt_jax import cli, models, params_io
from seqpt_jax.data import vocab as vocab_lib

FRUIT = ["apple", "pear", "plum", "grape"]
VEHICLE = ["car", "bus", "truck", "bike"]
FILLER = ["the", "a", "big", "small", "old", "new", "my", "your", "green", "fast", "slow", "one"]
FAST = ["--gin.Options.batch_size=16", "--gin.Options.max_length=16", "--gin.Options.target_length=8",
        "--gin.Options.learning_rate=3e-3", "--gin.Options.dropout_rate=0.0",
        "--gin.Options.in_language=False"]


def _sentence(rng, key_word):
    words = [rng.choice(FILLER) for _ in range(rng.randint(1, 4))]
    words.insert(rng.randint(0, len(words)), key_word)
    return words


def _classification(rng, n):
    rows = []
    for _ in range(n):
        label = rng.choice(["fruit", "vehicle"])
        rows.append({"text": " ".join(_sentence(rng, rng.choice(FRUIT if label == "fruit" else VEHICLE))),
                     "label": label})
    return rows


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _write_conll(path, sentences):
    path.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in sentences) + "\n")
    return str(path)


def _tagged(rng, n):
    out = []
    for _ in range(n):
        key = rng.choice(FRUIT)
        out.append([(w, "B-FRUIT" if w == key else "O") for w in _sentence(rng, key)])
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny SentencePiece vocabulary and a tiny bert-family EncoderMLM checkpoint."""
    root = tmp_path_factory.mktemp("ft")
    rng = random.Random(0)
    lines = [" ".join(_sentence(rng, rng.choice(FRUIT + VEHICLE))) for _ in range(400)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, vocab_size=300,
                                   byte_fallback=True, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   hard_vocab_limit=False, minloglevel=2)
    (root / "vocab.model").write_bytes(model.getvalue())
    vocab = vocab_lib.load(root / "vocab.model")
    cfg = models.preset("bert-tiny", vocab_size=vocab.vocab_size, d_model=32, num_heads=2, head_dim=16,
                        d_ff=64, num_encoder_layers=1, num_decoder_layers=1, max_length=32)
    params = models.init(models.EncoderMLM(cfg), jax.random.key(0))
    ckpt = params_io.save_params(str(root / "mlm"), "encoder_mlm", cfg, params)
    return {"root": root, "vocab": str(root / "vocab.model"), "ckpt": ckpt, "rng": rng}


def _run(argv):
    return cli.main(argv)


def test_classification_learns_and_writes_results(setup, tmp_path):
    rng = setup["rng"]
    train = _write_jsonl(tmp_path / "train.jsonl", _classification(rng, 96))
    test_rows = _classification(rng, 32)
    test_rows[0]["text"] = " ".join(["the big"] * 20 + ["apple"])  # longer than 16 tokens
    test_rows[0]["label"] = "fruit"
    test = _write_jsonl(tmp_path / "test.jsonl", test_rows)
    out = tmp_path / "out"
    rc = _run(["finetune", "--task", "classification", "--init", setup["ckpt"], "--vocab", setup["vocab"],
               "--train", train, "--test", test, "--out", str(out), "--gin.Options.epochs=8", *FAST])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    (run,) = res["runs"]
    scores = run["test"]["user"]
    assert run["labels"] == ["fruit", "vehicle"] and scores["n"] == 32
    assert scores["truncated"] == 1  # counted, not hidden
    assert run["final_loss"] < run["first_loss"]
    assert scores["accuracy"] >= 0.9, scores  # a keyword task: chance is 0.5
    assert "| user | zero-shot | user |" in (out / "results.md").read_text()
    assert (out / "scores.png").stat().st_size > 1000

    # The saved model scores the same through `seqpt eval`.
    rc = _run(["eval", "--task", "classification", "--model", str(out / "model"), "--vocab", setup["vocab"],
               "--test", test, "--out", str(tmp_path / "eval"), *FAST])
    assert rc == 0
    again = json.loads((tmp_path / "eval" / "results.json").read_text())["runs"][0]["test"]["user"]
    assert again["accuracy"] == pytest.approx(scores["accuracy"])


def test_tagging_first_subword_span_f1(setup, tmp_path):
    rng = setup["rng"]
    train = _write_conll(tmp_path / "train.conll", _tagged(rng, 96))
    test = _write_conll(tmp_path / "test.conll", _tagged(rng, 24))
    out = tmp_path / "out"
    rc = _run(["finetune", "--task", "tagging", "--init", setup["ckpt"], "--vocab", setup["vocab"],
               "--train", train, "--test", test, "--out", str(out), "--gin.Options.epochs=8", *FAST])
    assert rc == 0
    scores = json.loads((out / "results.json").read_text())["runs"][0]["test"]["user"]
    assert scores["f1"] >= 0.8 and scores["token_accuracy"] >= 0.9, scores


def test_results_table_rows_have_the_header_columns(setup, tmp_path):
    """Plain tags (part of speech) have no span scores: their cells are "—", so every row of
    results.md has the header's columns and each number sits under its own name."""
    rng = setup["rng"]
    pos = lambda s: [(w, "NOUN" if t != "O" else "DET") for w, t in s]
    train = _write_conll(tmp_path / "train.conll", [pos(s) for s in _tagged(rng, 32)])
    out = tmp_path / "out"
    rc = _run(["finetune", "--task", "tagging", "--init", setup["ckpt"], "--vocab", setup["vocab"],
               "--train", train, "--test", train, "--out", str(out), "--gin.Options.epochs=1", *FAST])
    assert rc == 0
    header, _, *rows = [l.split("|")[1:-1] for l in (out / "results.md").read_text().splitlines() if l.startswith("|")]
    names = [c.strip() for c in header]
    assert rows and all(len(r) == len(header) for r in rows), (header, rows)
    model_row = dict(zip(names, (c.strip() for c in rows[0])))
    scores = json.loads((out / "results.json").read_text())["runs"][0]["test"]["user"]
    assert model_row["token_accuracy"] == f"{100 * scores['token_accuracy']:.1f}"
    assert model_row["f1"] == model_row["precision"] == "—" and model_row["n"] == "32"


def test_generation_runs_and_reports_text_metrics(setup, tmp_path):
    rows = [{"source": f"the {w}", "target": w} for w in FRUIT + VEHICLE] * 2
    train = _write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "out"
    rc = _run(["finetune", "--task", "generation", "--init", setup["ckpt"], "--vocab", setup["vocab"],
               "--train", train, "--test", train, "--out", str(out), "--gin.Options.epochs=1",
               *FAST])
    assert rc == 0
    scores = json.loads((out / "results.json").read_text())["runs"][0]["test"]["user"]
    assert {"bleu", "chrf", "exact_match", "n", "truncated"} <= set(scores) and scores["n"] == 16


def test_corpus_task_zero_shot_and_in_language(setup, tmp_path):
    """The corpus layout: English fine-tuning tested on every language, plus an in-language run;
    a language whose file is empty is skipped and reported."""
    rng = setup["rng"]
    root = tmp_path / "corpus" / "tasks" / "section"
    root.mkdir(parents=True)
    for lang in ("en", "de"):
        _write_jsonl(root / f"{lang}.train.jsonl", _classification(rng, 32))
        _write_jsonl(root / f"{lang}.test.jsonl", _classification(rng, 8))
    (root / "el.test.jsonl").write_text("")
    out = tmp_path / "out"
    rc = _run(["finetune", "--task", "section", "--corpus", str(tmp_path / "corpus"), "--init", setup["ckpt"],
               "--vocab", setup["vocab"], "--out", str(out), "--gin.Options.epochs=1", *FAST,
               "--gin.Options.in_language=True"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert [(r["train_lang"], r["mode"], sorted(r["test"])) for r in res["runs"]] == [
        ("en", "zero-shot", ["de", "en"]), ("de", "in-language", ["de"])]
    assert res["skipped_empty_files"] == ["el.test"]


@pytest.mark.parametrize("case", ["unknown_label", "empty_split", "missing_label", "missing_file",
                                  "bad_conll", "bad_gin"])
def test_bad_inputs_end_in_one_clear_line(setup, tmp_path, capsys, case):
    rng = setup["rng"]
    train_rows, test_rows = _classification(rng, 8), _classification(rng, 4)
    extra, task = [], "classification"
    if case == "unknown_label":
        test_rows[2]["label"] = "animal"
    elif case == "missing_label":
        del train_rows[3]["label"]
    train = _write_jsonl(tmp_path / "train.jsonl", train_rows)
    test = _write_jsonl(tmp_path / "test.jsonl", test_rows)
    if case == "empty_split":
        test = _write_jsonl(tmp_path / "empty.jsonl", [])
    elif case == "missing_file":
        test = str(tmp_path / "nope.jsonl")
    elif case == "bad_conll":
        task = "tagging"
        (tmp_path / "t.conll").write_text("apple B-FRUIT\n")
        train = test = str(tmp_path / "t.conll")
    elif case == "bad_gin":
        extra = ["--gin.Options.no_such_field=1"]
    rc = _run(["finetune", "--task", task, "--init", setup["ckpt"], "--vocab", setup["vocab"],
               "--train", train, "--test", test, "--out", str(tmp_path / "out"), *FAST, *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    expect = {"unknown_label": "'animal'", "empty_split": "no examples", "missing_label": "'label'",
              "missing_file": "not found", "bad_conll": ":1:", "bad_gin": "gin"}[case]
    assert expect in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_finetune_inits_from_a_train_model_dir_and_from_a_finetuned_model(setup, tmp_path, caplog):
    """`--init` takes a `seqpt train` MODEL_DIR (its latest checkpoint) and a fine-tuned model, through
    the one loader, which restores without orbax/absl warnings."""
    import functools
    import logging

    import numpy as np

    from seqpt_jax.train import data, loop
    _, cfg = params_io.read_model(setup["ckpt"])
    run = tmp_path / "mlm_run"
    loop.train(str(run), models.EncoderMLM(cfg), functools.partial(data.synthetic, vocab_size=cfg.vocab_size,
                                                                   length=16), steps=2, batch_size=8,
               save_every=1, keep=2, progress=False, log_every=100)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        kind, loaded_cfg, trained = params_io.load(str(run))
    assert kind == "encoder_mlm" and loaded_cfg == cfg
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    _, _, first = params_io.load(str(run), step=1)
    assert not np.array_equal(first["encoder"]["layers"]["mlp"]["wo"]["kernel"],
                              trained["encoder"]["layers"]["mlp"]["wo"]["kernel"])  # latest step by default
    rows = _classification(setup["rng"], 16)
    train = _write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "out"
    rc = _run(["finetune", "--task", "classification", "--init", str(run), "--vocab", setup["vocab"],
               "--train", train, "--test", train, "--out", str(out), "--gin.Options.epochs=1", *FAST])
    assert rc == 0
    kind, _, tuned = params_io.load(str(out / "model"))
    assert kind == "sequence_classifier" and params_io.metadata(str(out / "model"))["labels"] == ["fruit", "vehicle"]
    rc = _run(["finetune", "--task", "classification", "--init", str(out / "model"), "--vocab", setup["vocab"],
               "--train", train, "--test", train, "--out", str(tmp_path / "again"), "--gin.Options.epochs=1", *FAST])
    assert rc == 0


def test_validation_keeps_the_best_epoch_and_patience_stops(setup):
    """finetune.train scores validation after every epoch, returns the best epoch's params and,
    with patience, stops after that many epochs without a gain."""
    import dataclasses

    import numpy as np

    from seqpt_jax.evaluate import data, finetune
    vocab = vocab_lib.load(setup["vocab"])
    _, cfg, ckpt = params_io.load(setup["ckpt"])
    rows = [{"text_a": r["text"], "text_b": None, "label": r["label"]} for r in _classification(setup["rng"], 32)]
    arrays = data.encode_classification(vocab, rows, ["fruit", "vehicle"], 16).arrays
    model = finetune.build_model("classification", cfg, 2)
    fresh = models.init(model, jax.random.key(0), finetune.model_inputs({k: v[:1] for k, v in arrays.items()}))
    start = finetune.transfer("encoder_mlm", ckpt, fresh)
    options = finetune.Options(epochs=5, batch_size=16, learning_rate=3e-3)

    def scorer(seen):
        scores = iter([0.1, 0.9, 0.2, 0.3, 0.4])
        return lambda p: seen.append(p) or next(scores)

    seen = []
    params, losses, curve = finetune.train(model, start, "classification", arrays, options, validate=scorer(seen))
    assert [c["step"] for c in curve] == [2, 4, 6, 8, 10] and len(losses) == 10
    assert params is seen[1]  # epoch 2 scored best
    assert not np.array_equal(jax.tree.leaves(params)[0], jax.tree.leaves(seen[-1])[0])
    _, losses, curve = finetune.train(model, start, "classification", arrays,
                                      dataclasses.replace(options, patience=2), validate=scorer([]))
    assert [c["step"] for c in curve] == [2, 4, 6, 8] and len(losses) == 8  # epochs 3 and 4 gained nothing


def test_repeated_fine_tunes_of_one_shape_compile_nothing_new():
    """An experiment fine-tunes every encoder x task x seed in one process: after the first, a
    fine-tune of the same shapes (new params, new seed) reuses the compiled train and predict
    programs. (Before, each call jitted a fresh closure and recompiled: ~15 s a fine-tune here.)"""
    import numpy as np
    from jax import monitoring

    from seqpt_jax.evaluate import finetune as ft
    cfg = models.TransformerConfig(family="t5", vocab_size=64, d_model=16, num_heads=2, head_dim=8, d_ff=32,
                                   num_encoder_layers=1, num_decoder_layers=0)
    model = ft.build_model("classification", cfg, 3)
    rng = np.random.default_rng(0)
    arrays = {"encoder_input_tokens": rng.integers(1, 64, (40, 12)).astype(np.int32),
              "labels": rng.integers(0, 3, 40).astype(np.int32)}

    def one(seed):
        params = models.init(model, jax.random.key(seed), {"encoder_input_tokens": arrays["encoder_input_tokens"][:1]})
        opts = ft.Options(epochs=2.0, batch_size=16, seed=seed)
        params, losses, _ = ft.train(model, params, "classification", arrays, opts)
        return ft.predict_labels(model, params, arrays, 16), losses

    first, _ = one(0)
    compiles = []

    def listen(event, _secs, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)
    monitoring.register_event_duration_secs_listener(listen)
    try:
        second, losses = one(1)
    finally:
        monitoring.unregister_event_duration_listener(listen)
    assert len(losses) == 6 and second.shape == first.shape == (40,)
    assert compiles == []
