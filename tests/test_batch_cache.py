"""The batch cache (data/batch_cache.py): later runs read the batches an earlier run built, bitwise,
resume exactly from a cache holding a prefix, start no feed worker on hits; the plan charges the
feed once per seed."""

import json
import multiprocessing

import pytest

from data_fixtures import make_corpus
from seqpt_jax.data import exported, feed_workers, feeding, vocab
from seqpt_jax.experiment import plan
from seqpt_jax.train import data as data_lib

LENGTHS = {"inputs": 32, "targets": 8}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = make_corpus(tmp_path_factory.mktemp("corpus"), langs=["en", "de", "ru"])
    vocab.train(root, 400, root / "sp.model")
    out = tmp_path_factory.mktemp("export") / "exp"
    exported.export(root, root / "sp.model", out, log=lambda _: None)
    return str(out)


def _make(export, split="train", lengths=LENGTHS, **kw):
    """Span-corruption batches of the export, as a run of an experiment seed reads them."""
    return data_lib.mixture_or_task(split, 8, 3, (0, 1), name="seqpt_local_span_corruption",
                                    corpus_dir=export, task_feature_lengths=lengths, **kw)


def _take(source, n):
    return [next(source) for _ in range(n)]


def _same(got, want):
    """Bitwise: the same features, dtypes, shapes and bytes."""
    return len(got) == len(want) and all(
        g.keys() == w.keys() and all(g[k].dtype == w[k].dtype and g[k].shape == w[k].shape
                                     and g[k].tobytes() == w[k].tobytes() for k in g)
        for g, w in zip(got, want))


@pytest.fixture
def built(monkeypatch):
    """The steps of the batches in-process Pipelines build from now on."""
    steps, build = [], feeding.Pipeline.__next__
    monkeypatch.setattr(feeding.Pipeline, "__next__", lambda self: steps.append(self.step) or build(self))
    return steps


def test_a_later_run_reads_the_batches_bitwise_and_builds_none(export, tmp_path, built):
    uncached = _make(export)
    want = _take(uncached, 5)
    built.clear()
    assert _same(_take(_make(export, batch_cache=str(tmp_path)), 5), want) and built == [0, 1, 2, 3, 4]
    built.clear()
    second = _make(export, batch_cache=str(tmp_path))
    assert _same(_take(second, 5), want) and built == []              # every batch read, none built
    assert second.state() == uncached.state()                         # the position a checkpoint saves
    files = sorted(tmp_path.glob("*/*.npz"))
    assert len(files) == 5 and not list(tmp_path.glob("*/*.tmp"))
    files[1].write_bytes(files[1].read_bytes()[:100])                 # damaged (a copy cut short) ...
    built.clear()
    assert _same(_take(_make(export, batch_cache=str(tmp_path)), 5), want) and built == [1]  # ... built again
    other = _make(export, lengths={"inputs": 32, "targets": 16}, batch_cache=str(tmp_path))
    assert next(other)["decoder_target_tokens"].shape == (8, 16)      # other lengths: another key
    reference = _take(_make(export, "validation"), 3)
    built.clear()
    held_out = [_take(_make(export, "validation", batch_cache=str(tmp_path)), 3) for _ in range(2)]
    assert _same(held_out[0], reference) and _same(held_out[1], reference)
    assert built == [0, 1, 2]                                         # the held-out batches: built once


def test_a_run_resumed_from_a_cached_prefix_reads_it_and_builds_the_rest(export, tmp_path, built):
    want = _take(_make(export), 8)
    _take(_make(export, batch_cache=str(tmp_path)), 3)                # a first run killed after 3 batches
    run = _make(export, batch_cache=str(tmp_path))
    assert _same(_take(run, 2), want[:2])
    saved = json.loads(json.dumps(run.state()))                       # its checkpoint after 2 batches
    plain = _make(export)
    plain.restore(saved)                                              # the state is the pipeline's own
    assert _same(_take(plain, 1), want[2:3])
    built.clear()
    resumed = _make(export, batch_cache=str(tmp_path))
    next(resumed)                                                     # the trainer peeks, then restores
    resumed.restore(saved)
    assert _same(_take(resumed, 6), want[2:8]) and built == [3, 4, 5, 6, 7]  # only what the cache lacked
    more = _make(export)
    more.restore(saved)
    _take(more, 6)
    assert resumed.state() == more.state()                            # ... and the position after them


def test_feed_workers_start_only_at_the_first_batch_not_in_the_cache(export, tmp_path, monkeypatch):
    want = _take(_make(export), 6)
    _take(_make(export, batch_cache=str(tmp_path)), 4)
    starts, start = [], feed_workers.ParallelPipeline._start
    monkeypatch.setattr(feed_workers.ParallelPipeline, "_start", lambda self: starts.append(1) or start(self))
    feed = _make(export, batch_cache=str(tmp_path), feed_workers=2)
    try:
        assert isinstance(feed.inner, feed_workers.ParallelPipeline)
        assert _same(_take(feed, 4), want[:4])
        assert starts == [] and multiprocessing.active_children() == []  # hits: no worker process
        assert _same(_take(feed, 2), want[4:])                            # misses: the workers build them
        assert starts == [1]
    finally:
        feed.close()


def test_the_sequential_gpu_plan_charges_the_span_corruption_feed_once_per_seed():
    """Seven seq2seq arms of a seed read the same span-corruption batches: the first builds them,
    the batch cache serves the others."""
    p = plan.plan("sequential", "gpu", seeds=3, hw="hw/gpu.gin")
    rows, wall = p["arms"], p["wall"]
    rate = {False: wall["feed_tokens_per_s"], True: wall["feed_s2s_tokens_per_s"]}  # one process: MLM, span
    span = [r for r in rows if r["op"] == "train" and r["batches"][0] == "seqpt_local_span_corruption"]
    assert len(span) >= 7 and len({repr(r["batches"]) for r in span}) == 1

    def seconds(r, first):  # the held-out batches: built in-process by the first row of their key
        tokens, single = r["batch_size"] * r["lengths"][0], rate[r["kind"] == "encoder_decoder"]
        return (max(r["train_flops"] / p["throughput"], (r["steps"] if first else 0) * tokens
                    / (single * wall["feed_workers"]))
                + r["eval_flops"] / p["throughput"] + (r["eval_batches"] * tokens / single if first else 0.0))
    first = {}  # the first row of each key pays for the batches no earlier row built
    for r in rows:
        first.setdefault(repr(r["batches"]), r)
    training = sum(seconds(r, first[repr(r["batches"])] is r) for r in rows) * p["seeds"]
    assert wall["parts"]["training"] == pytest.approx(training), plan.text(p)
    assert plan.fed_steps(rows) == [r["steps"] if first[repr(r["batches"])] is r else 0 for r in rows]
    longer = dict(span[1], steps=span[0]["steps"] + 10)
    assert plan.fed_steps([span[0], longer]) == [span[0]["steps"], 10]   # a longer arm builds only the rest
