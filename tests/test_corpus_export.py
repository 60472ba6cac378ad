"""`seqpt corpus export`: a pre-tokenized copy of the corpus that feeds the same batches as the
corpus itself (same tasks, rates, windows and exact resume), its manifest, caps and task files."""

import functools
import json

import numpy as np
import pytest

from data_fixtures import make_corpus
from seqpt_jax.commands import corpus as corpus_cmd
from seqpt_jax.data import exported, feeding, sources, vocab
from seqpt_jax.errors import UserError
from seqpt_jax.train import data as data_lib


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = make_corpus(tmp_path_factory.mktemp("corpus"))
    (root / "SOURCES.md").write_text("# Sources of this corpus\n\nfixture\n", "utf-8")
    model = root / "sp.model"
    vocab.train(root, 700, model)
    out = tmp_path_factory.mktemp("export") / "exp"
    assert corpus_cmd.main(["export", "--corpus", str(root), "--vocab", str(model), "--out", str(out)]) == 0
    return root, model, out


def _batches(corpus, model, name, n=4, split="train", **lengths):
    make = functools.partial(data_lib.mixture_or_task, split, 8, 3, (0, 1), name=name, vocab_path=str(model),
                             corpus_dir=str(corpus), task_feature_lengths=lengths or {"inputs": 32})
    return make, [next(src) for src in [make()] for _ in range(n)]


def _equal(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name,lengths", [("seqpt_local_mlm", {"inputs": 32}),
                                          ("seqpt_local_span_corruption", {"inputs": 32, "targets": 8}),
                                          ("seqpt_local_de_mlm", {"inputs": 32})])
def test_an_export_feeds_the_corpus_batches_and_resumes_exactly(setup, name, lengths):
    root, model, out = setup
    _, want = _batches(root, model, name, **lengths)
    make, got = _batches(out, model, name, **lengths)
    assert isinstance(make(), feeding.Pipeline)
    assert all(_equal(g, w) for g, w in zip(got, want))        # the same batches as from the corpus
    assert not _equal(got[0], got[1])
    _, held_out = _batches(root, model, name, n=2, split="validation", **lengths)   # what evaluations read
    assert all(_equal(g, w) for g, w in zip(_batches(out, model, name, n=2, split="validation", **lengths)[1],
                                            held_out))
    src = make()
    next(src)
    state = json.loads(json.dumps(src.state()))
    fresh = make()
    fresh.restore(state)
    assert _equal(next(fresh), got[1])                          # resume: exactly the next batch


def test_manifest_counts_vocab_tasks_and_sources(setup):
    root, model, out = setup
    m = exported.manifest(out)
    assert m["languages"] == sorted(p.name.split(".")[0] for p in (root / "text").glob("*.train.jsonl"))
    assert m["vocab"]["fingerprint"] == sources.vocab_fingerprint(str(model)) and m["dtype"] == "uint16"
    for lang in m["languages"]:
        for split in ("train", "validation", "test"):
            store = sources.corpus_tokens(root, lang, split, str(model))
            assert m["tokens"][lang][split] == len(store.tokens) and m["documents"][lang][split] == len(store)
            assert np.array_equal(np.load(out / "tokens" / f"{lang}.{split}.tokens.npy"), store.tokens)
    assert set(m["tasks"]) == {"section", "ui_tagging", "synopsis", "ja_ner"}
    assert (out / "tasks" / "section" / "en.train.jsonl").read_bytes() == \
        (root / "tasks" / "section" / "en.train.jsonl").read_bytes()
    assert m["tasks"]["ja_ner"] == {"ja.train": 450, "ja.test": 50}                # the package's split
    assert sorted(m["tasks"]["ui_tagging"]) == ["de.test.conll", "ru.test.conll"]   # zero-shot tests only
    assert "fixture" in (out / "SOURCES.md").read_text()
    assert m["bytes"] == exported.size_of(out) - (out / "manifest.json").stat().st_size  # all but itself


def test_max_tokens_keeps_whole_documents_spread_by_hash(setup, tmp_path):
    root, model, _ = setup
    out = tmp_path / "small"
    m = exported.export(root, model, out, langs=["en", "de"], max_tokens=3000, max_examples=4, log=lambda _: None)
    assert m["languages"] == ["en", "de"]
    for lang, split in [(l, s) for l in ("en", "de") for s in ("train", "validation")]:
        full = sources.corpus_tokens(root, lang, split, str(model))
        kept = exported.store(str(out), lang, split)
        limit = 3000 if split == "train" else 300                # held-out splits: a tenth
        assert 0 < len(kept.tokens) <= limit < len(full.tokens) and m["tokens"][lang][split] == len(kept.tokens)
        ends = np.append(full.starts[1:], len(full.tokens))
        docs = {full.tokens[a:b].tobytes() for a, b in zip(full.starts, ends)}
        kept_ends = np.append(kept.starts[1:], len(kept.tokens))
        assert all(kept.tokens[a:b].tobytes() in docs for a, b in zip(kept.starts, kept_ends))  # whole documents
    assert m["tasks"]["section"] == {"de.test.jsonl": 4, **{f"en.{s}.jsonl": 4 for s in ("train", "validation", "test")}}
    rows = [json.loads(line) for line in (out / "tasks" / "section" / "en.train.jsonl").read_text().splitlines()]
    every = [json.loads(line) for line in (root / "tasks" / "section" / "en.train.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and [r for r in every if r in rows] == rows     # whole rows, in file order
    b = next(data_lib.mixture_or_task("train", 4, 0, (0, 1), name="seqpt_local_mlm", vocab_path=str(model),
                                      corpus_dir=str(out), task_feature_lengths={"inputs": 16}))
    assert b["encoder_input_tokens"].shape == (4, 16)


def test_an_export_refuses_another_vocabulary_and_unknown_languages(setup, tmp_path):
    root, model, out = setup
    other = tmp_path / "other.model"
    vocab.train(root, 600, other, langs=["en", "de"])
    with pytest.raises(UserError, match="tokenized with another vocabulary .* set --gin.VOCAB=.*spm.model"):
        _batches(out, other, "seqpt_local_mlm")
    with pytest.raises(UserError, match="has no language for task 'seqpt_local_xx_mlm'"):
        _batches(out, model, "seqpt_local_xx_mlm")
    with pytest.raises(UserError, match="no train data for language 'xx'"):
        exported.export(root, model, tmp_path / "bad", langs=["xx"])
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="is not an exported corpus; pass another --out"):
        exported.export(root, model, tmp_path / "busy")


def test_feed_workers_build_the_same_batches_and_resume_exactly(setup):
    """Batches built by 3 worker processes equal the in-process pipeline's, in order, across a
    restore to a position the workers had run past."""
    _, model, out = setup
    def make(split="train", **kw):
        return data_lib.mixture_or_task(split, 8, 5, (0, 1), name="seqpt_local_mlm", vocab_path=str(model),
                                        corpus_dir=str(out), task_feature_lengths={"inputs": 32}, **kw)
    want = [next(src) for src in [make()] for _ in range(7)]
    feed = make(feed_workers=3)
    try:
        assert all(_equal(next(feed), w) for w in want[:4])
        state = json.loads(json.dumps(feed.state()))
        taken = make()
        taken.skip(4)
        assert state == taken.state()                                 # the position after 4 batches
        feed.restore(state)
        assert all(_equal(next(feed), w) for w in want[4:])
    finally:
        feed.close()
    assert isinstance(make("validation", feed_workers=3), feeding.Pipeline)  # evaluation: in-process


def test_the_experiments_downstream_slice_reads_an_export(setup, tmp_path):
    """experiment.downstream's slice of an exported corpus: its languages from the manifest, the
    English training rows and per-language tests from its task files, ja_ner from its copy."""
    from seqpt_jax.experiment import downstream
    root, _, out = setup
    settings = {"train": 3, "test": 2, "epochs": 1.0, "length": 32, "seeds": 1, "ner_epochs": 1.0}
    got = downstream.make_slice(str(out), tmp_path / "slice", settings)
    want = downstream.make_slice(str(root), tmp_path / "from_corpus", settings)
    assert got["langs"] == want["langs"] and got["tasks"] == want["tasks"]       # the same subsets
    assert got["tasks"]["ja_ner"] == {"ja.train": 3, "ja.test": 2}
    for name in ("section/en.train.jsonl", "section/de.test.jsonl", "ja_ner/ja.train.conll"):
        assert (tmp_path / "slice" / "tasks" / name).read_text() == (tmp_path / "from_corpus" / "tasks" / name).read_text()
