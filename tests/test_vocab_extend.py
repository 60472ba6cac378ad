"""Vocabulary extension for a new language: the merged vocabulary's id layout, the grown
parameters (old rows bit-identical, old logits unchanged), and `seqpt vocab extend`."""

import numpy as np
import pytest

from data_fixtures import make_corpus
from seqpt_jax import cli, mappings, models, params_io
from seqpt_jax.data import preprocessors, records, vocab
from seqpt_jax.errors import UserError
from seqpt_jax.mappings import vocab_ext

BASE_LANGS = ["en", "de", "ru"]
NEW = "el"  # Greek script: absent from the base vocabulary's text


@pytest.fixture(scope="module")
def vocabs(tmp_path_factory):
    root = make_corpus(tmp_path_factory.mktemp("corpus"), langs=BASE_LANGS + [NEW])
    old = vocab.train(root, 500, root / "base.model", langs=BASE_LANGS)
    new = vocab.extend(root / "base.model", root, [NEW], 200, root / "ext.model")
    return root, old, new


def _cfg(family, vocab_size, **kw):
    base = dict(vocab_size=vocab_size, d_model=32, num_heads=2, head_dim=16, d_ff=64,
                dropout_rate=0.0, num_encoder_layers=1, num_decoder_layers=1, max_length=32)
    return models.preset(f"{family}-tiny", **{**base, **kw})


def _model(family, cfg):
    # bert: tied MLM head with an output bias; t5: seq2seq with an untied lm_head and an
    # untied encoder MLM head - between them every vocabulary-sized leaf the models have.
    if family == "bert":
        return models.EncoderMLM(cfg)
    return models.EncoderDecoder(cfg, encoder_mlm_head=True)


def _logits(family, model, params, batch):
    if family == "bert":
        return [np.asarray(model.apply({"params": params}, batch))]
    return [np.asarray(x) for x in model.apply({"params": params}, batch,
                                               method="forward_with_encoder_mlm")]


def test_merged_vocabulary_keeps_ids_and_puts_sentinels_on_top(vocabs):
    _, old, new = vocabs
    n_old, added = vocab_ext.added_pieces(old, new)
    k = new.vocab_size - old.vocab_size
    assert k == len(added) > 20
    old_sp, new_sp = vocab.processor(vocab.model_path(old)), vocab.processor(vocab.model_path(new))
    for i in range(n_old):
        assert new_sp.id_to_piece(i) == old_sp.id_to_piece(i)
        assert new_sp.get_score(i) == old_sp.get_score(i)
    info = vocab.token_info(new)
    assert info.vocab_size == new.vocab_size == n_old + k + vocab.EXTRA_IDS
    assert info.mask_id == n_old + k and info.sentinel(0) == new.vocab_size - 1
    assert new.tokenizer.id_to_piece(info.sentinel(0)).endswith("<extra_id_0>")
    assert new.tokenizer.id_to_piece(info.mask_id).endswith("<extra_id_99>")
    assert not info.special[n_old:n_old + k].any() and info.special[n_old + k:].all()
    assert info.random_range == (vocab.UNK_ID + 1, n_old + k)  # MLM's random ids reach the new pieces
    from seqpt_jax.train import data as train_data
    assert train_data.vocab_size(vocab.model_path(new)) == new.vocab_size


def test_objectives_use_the_moved_sentinels(vocabs):
    root, old, new = vocabs
    sp, info = vocab.processor(vocab.model_path(new)), vocab.token_info(new)
    text = next(iter(records.read_texts(root, NEW, "train")))
    ids = np.array(sp.encode(text), np.int32)
    assert (ids >= len(sp) - (new.vocab_size - old.vocab_size)).any()  # the text uses added pieces
    out = preprocessors.span_corruption(ids, np.random.default_rng(0), info)
    sentinels = out["inputs"][out["inputs"] >= info.mask_id]
    assert len(sentinels) and (sentinels == info.sentinel(np.arange(len(sentinels)))).all()
    out = preprocessors.mlm(ids, np.random.default_rng(0), info, rate=0.5)
    masked = out["inputs"][out["inputs"] >= len(sp)]
    assert len(masked) and (masked == info.mask_id).all()


def test_tokens_per_char_drop_on_the_new_language_only(vocabs):
    root, old, new = vocabs
    before = vocab.tokens_per_char(old, root, BASE_LANGS + [NEW])
    after = vocab.tokens_per_char(new, root, BASE_LANGS + [NEW])
    assert after[NEW] < 0.6 * before[NEW]
    for lang in BASE_LANGS:  # Greek pieces leave Latin and Cyrillic text as it was
        assert after[lang] == pytest.approx(before[lang], rel=0.02)


def test_constituents_follow_word_starts(vocabs):
    _, old, _ = vocabs
    sp = vocab.processor(vocab.model_path(old))
    word, inner = vocab_ext.constituents(old, ["\u2581the", "the"])
    assert sp.id_to_piece(word[0]).startswith(vocab.WORD_START)
    assert not any(sp.id_to_piece(i).startswith(vocab.WORD_START) for i in inner)


@pytest.mark.parametrize("family", ["bert", "t5"])
def test_old_rows_and_old_logits_unchanged(vocabs, family):
    import jax
    _, old, new = vocabs
    cfg = _cfg(family, old.vocab_size)
    model = _model(family, cfg)
    params = models.init(model, jax.random.key(0))
    if family == "bert":  # a non-zero bias, so copying it is checked too
        params["mlm_head"]["output_bias"] = np.random.default_rng(0).normal(size=cfg.vocab_size).astype(np.float32)
    ext, ext_cfg = mappings.extend_vocab(params, cfg, old, new, method="mean")
    n, added = vocab_ext.added_pieces(old, new)
    k = len(added)
    assert ext_cfg.vocab_size == cfg.vocab_size + k
    new_model = _model(family, ext_cfg)
    shapes = jax.tree.map(lambda x: x.shape, models.param_shapes(new_model))
    assert jax.tree.map(lambda x: x.shape, ext) == shapes  # every vocab-sized leaf grew
    old_flat, new_flat = vocab_ext.checks.flat(params), vocab_ext.checks.flat(ext)
    grown = {p for p in old_flat if old_flat[p].shape != new_flat[p].shape}
    assert len(grown) == (2 if family == "bert" else 3)
    for path, x in old_flat.items():
        x, y = np.asarray(x), np.asarray(new_flat[path])
        if path not in grown:
            assert np.array_equal(x, y)
            continue
        axis = x.shape.index(cfg.vocab_size)
        take = lambda a, s: np.take(a, np.arange(a.shape[axis])[s], axis=axis)  # noqa: E731
        assert take(x, slice(0, n)).tobytes() == take(y, slice(0, n)).tobytes()
        assert take(x, slice(n, None)).tobytes() == take(y, slice(n + k, None)).tobytes()
    # Greek pieces read only byte pieces of the old vocabulary: fresh, distinct rows.
    m = vocab_ext.mix_matrix(old, new, cfg.vocab_size, "mean")
    fresh = vocab_ext.uninformed(old, m)
    assert fresh.mean() > 0.5
    rows = np.asarray(ext["token_embedder"]["embedding"][n:n + k])[fresh]
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    assert (unit @ unit.T)[np.triu_indices(len(rows), 1)].mean() < 0.1  # byte means: 0.34 here

    # Old-id text, with [MASK] and a sentinel, through both models.
    rng = np.random.default_rng(1)
    tokens = rng.integers(3, n, (2, 12)).astype(np.int32)
    tokens[0, 3], tokens[1, 2] = cfg.vocab_size - 100, cfg.vocab_size - 1
    tokens[1, 9:] = 0
    batch = {"encoder_input_tokens": tokens}
    if family == "t5":
        batch["decoder_input_tokens"] = rng.integers(3, n, (2, 6)).astype(np.int32)
    moved = {key: np.where(v >= n, v + k, v) for key, v in batch.items()}
    keep = tokens != 0
    for a, b in zip(_logits(family, model, params, batch), _logits(family, new_model, ext, moved)):
        rows = keep if a.shape[1] == tokens.shape[1] else np.ones(a.shape[:2], bool)
        a, b = a[rows], b[rows]
        np.testing.assert_allclose(b[:, :n], a[:, :n], atol=1e-5)
        np.testing.assert_allclose(b[:, n + k:], a[:, n:], atol=1e-5)


def test_mean_of_constituents_on_a_covered_script(vocabs, tmp_path):
    import jax
    root = vocabs[0]
    old = vocab.train(root, 500, tmp_path / "base.model", langs=["en", "ru", "el"])
    new = vocab.extend(tmp_path / "base.model", root, ["de"], 200, tmp_path / "ext.model")
    cfg = _cfg("bert", old.vocab_size)
    params = models.init(models.EncoderMLM(cfg), jax.random.key(0))
    ext, _ = mappings.extend_vocab(params, cfg, old, new, method="mean")
    n, added = vocab_ext.added_pieces(old, new)
    m = vocab_ext.mix_matrix(old, new, cfg.vocab_size, "mean")
    informed = ~vocab_ext.uninformed(old, m)
    assert informed.mean() > 0.5  # most German pieces spell out in old pieces (ä, ö, ü: bytes)
    table = np.asarray(params["token_embedder"]["embedding"])
    bias = np.asarray(params["mlm_head"]["output_bias"])
    for row, ids in enumerate(vocab_ext.constituents(old, added)):
        if informed[row]:
            np.testing.assert_allclose(ext["token_embedder"]["embedding"][n + row], table[ids].mean(0),
                                       rtol=1e-6, atol=1e-7)
            assert ext["mlm_head"]["output_bias"][n + row] == pytest.approx(bias[ids].mean(), abs=1e-7)


def test_ngram_and_random_methods(vocabs):
    import jax
    _, old, new = vocabs
    cfg = _cfg("bert", old.vocab_size)
    params = models.init(models.EncoderMLM(cfg), jax.random.key(0))
    n, added = vocab_ext.added_pieces(old, new)
    m = vocab_ext.mix_matrix(old, new, cfg.vocab_size, "ngram")
    np.testing.assert_allclose(m.sum(1), 1.0)
    assert (m[:, n:] == 0).all() and (m[:, :3] == 0).all()  # old pieces only: no specials, sentinels
    w = vocab_ext._TrigramIndex(["", "abc", "abd", "xyz"]).similar("abcd")
    assert set(w) == {1, 2} and w[1] > 10 * w[2] and sum(w.values()) == pytest.approx(1.0)
    table = np.asarray(params["token_embedder"]["embedding"])
    rand, _ = mappings.extend_vocab(params, cfg, old, new, method="random", seed=3)
    rows = rand["token_embedder"]["embedding"][n:n + len(added)]
    assert not np.allclose(rows, m @ table, atol=1e-3)
    assert 0.5 < rows.std() / table[3:n].std() < 2.0
    with pytest.raises(UserError, match="method"):
        mappings.extend_vocab(params, cfg, old, new, method="nope")


def test_wrong_vocabulary_or_unrelated_new_vocab(vocabs):
    import jax
    _, old, new = vocabs
    cfg = _cfg("bert", old.vocab_size + 7)
    params = models.init(models.EncoderMLM(cfg), jax.random.key(0))
    with pytest.raises(UserError, match="vocab_size") as e:
        mappings.extend_vocab(params, cfg, old, new)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="does not extend"):
        vocab_ext.added_pieces(new, old)


@pytest.fixture(scope="module")
def checkpoint(vocabs, tmp_path_factory):
    import jax
    root, old, _ = vocabs
    cfg = _cfg("bert", old.vocab_size)
    path = tmp_path_factory.mktemp("ckpt") / "mlm"
    params = models.init(models.EncoderMLM(cfg), jax.random.key(0))
    params_io.save_params(str(path), "encoder_mlm", cfg, params)
    return path, params


def test_cli_writes_a_loadable_checkpoint_and_prints_tokens_per_char(vocabs, checkpoint, tmp_path, capsys):
    root, old, _ = vocabs
    path, params = checkpoint
    out = tmp_path / "ext"
    assert cli.main(["vocab", "extend", "--model", str(path), "--vocab", vocab.model_path(old),
                     "--corpus", str(root), "--langs", NEW, "--pieces", "200", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    before, after = map(float, lines[-1].split()[1:])
    assert lines[-1].split()[0] == NEW and after < before
    kind, cfg, ext = params_io.load(str(out))
    new = vocab.load(out / "vocab.model")
    assert kind == "encoder_mlm" and cfg.vocab_size == new.vocab_size > old.vocab_size
    assert ext["token_embedder"]["embedding"].shape == (new.vocab_size, cfg.d_model)
    n = len(vocab.processor(vocab.model_path(old)))
    assert np.array_equal(ext["token_embedder"]["embedding"][:n], params["token_embedder"]["embedding"][:n])


@pytest.mark.parametrize("case", ["wrong_vocab", "empty_lang", "missing_lang"])
def test_cli_bad_inputs_give_one_line(vocabs, checkpoint, tmp_path, capsys, case):
    root, old, new = vocabs
    path, _ = checkpoint
    voc, corpus, lang = vocab.model_path(old), root, NEW
    if case == "wrong_vocab":
        voc = vocab.model_path(new)
    elif case == "empty_lang":
        corpus = make_corpus(tmp_path / "c", langs=["en"], docs={"train": 3})
        (corpus / "text" / "el.train.jsonl").write_text('{"text": "  "}\n', "utf-8")
    else:
        lang = "xx"
    argv = ["vocab", "extend", "--model", str(path), "--vocab", voc, "--corpus", str(corpus),
            "--langs", lang, "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err
    assert {"wrong_vocab": "vocab_size", "empty_lang": "no usable training text for el",
            "missing_lang": "'xx'"}[case] in err
    assert not (tmp_path / "out").exists()
