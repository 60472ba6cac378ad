"""Feeding: packing, feature conversion, sharding, mixtures and exact resume."""

import json

import numpy as np
import pytest

from seqpt_jax.data import feeding, sources
from seqpt_jax.data import vocab as V
from seqpt_jax.errors import UserError

INFO = V.synthetic_token_info(1000)


def _store(n_docs=40, seed=0):
    rng = np.random.default_rng(seed)
    lo, hi = INFO.random_range
    return sources.TokenStore.from_token_lists(
        [rng.integers(lo, hi, int(rng.integers(5, 60))) for _ in range(n_docs)])


STORE = _store()


def _spec(name="a", objective="mlm", store=STORE):
    kind = feeding.ENCODER if objective in ("mlm", "wwm", "span_mlm") else feeding.ENCDEC
    return feeding.TaskSpec(name, kind, lambda split, n, pack: sources.Windows(store, n, pack),
                            INFO, objective)


def _originals(b):
    """[B, L] original ids of an MLM batch: the inputs with each masked position's target put back."""
    ids = b["encoder_input_tokens"].copy()
    kept = b["mlm_weights"] > 0
    for row in range(len(ids)):
        ids[row, b["mlm_positions"][row][kept[row]]] = b["mlm_targets"][row][kept[row]]
    return ids


def _selected(b):
    """[B, L] bool: the positions the MLM objective selected."""
    sel = np.zeros(b["encoder_input_tokens"].shape, bool)
    for row in range(len(sel)):
        sel[row, b["mlm_positions"][row][b["mlm_weights"][row] > 0]] = True
    return sel


def _equal(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("tasks,lengths", [
    ([(_spec("a"), 1.0)], {"inputs": 32}),
    ([(_spec("a"), 0.7), (_spec("b", "wwm", _store(30, 1)), 0.3)], {"inputs": 32}),
    ([(_spec("c", "span_corruption"), 1.0)], {"inputs": 32}),
    ([(_spec("d", "span_corruption_masked"), 0.5), (_spec("e", "prefix_lm"), 0.5)],
     {"inputs": 32, "targets": 32}),
])
def test_resume_yields_exactly_the_next_batch(tasks, lengths):
    pipe = feeding.make_pipeline(tasks, "train", 8, lengths, seed=5, shard=(0, 1))
    for _ in range(7):  # past one epoch of the smaller sources
        next(pipe)
    saved = json.loads(json.dumps(pipe.state()))
    expected = [next(pipe) for _ in range(3)]
    fresh = feeding.make_pipeline(tasks, "train", 8, lengths, seed=5, shard=(0, 1))
    fresh.restore(saved)
    for want in expected:
        assert _equal(next(fresh), want)


def test_same_seed_same_batch_steps_and_seeds_differ():
    make = lambda seed: feeding.make_pipeline(_spec(), "train", 4, 32, seed=seed, shard=(0, 1))
    a, b, c = make(1), make(1), make(2)
    a1, b1, c1 = next(a), next(b), next(c)
    assert _equal(a1, b1) and not _equal(a1, c1)
    a2 = next(a)
    assert not np.array_equal(a1["mlm_positions"], a2["mlm_positions"])


def test_same_window_gets_a_new_mask_each_epoch():
    store = _store(4)
    pipe = feeding.make_pipeline(_spec(store=store), "train", 1, 16, seed=0, shard=(0, 1))
    n = len(sources.Windows(store, 16))
    seen = {}
    for _ in range(3 * n):
        b = next(pipe)
        key = _originals(b)[0].tobytes()
        seen.setdefault(key, []).append(b["mlm_positions"][0].tobytes())
    assert len(seen) == n and all(len(v) == 3 for v in seen.values())  # each window once per epoch
    assert all(len(set(v)) > 1 for v in seen.values())


def test_hosts_get_disjoint_slices_of_the_same_global_batch():
    tasks = [(_spec("a"), 0.5), (_spec("b", "wwm"), 0.5)]
    whole = feeding.make_pipeline(tasks, "train", 8, 32, seed=3, shard=(0, 1))
    hosts = [feeding.make_pipeline(tasks, "train", 8, 32, seed=3, shard=(i, 2)) for i in range(2)]
    for _ in range(3):
        full, parts = next(whole), [next(h) for h in hosts]
        for k in full:
            assert np.array_equal(full[k], np.concatenate([p[k] for p in parts]))
    assert hosts[0].state() == hosts[1].state() == whole.state()
    with pytest.raises(UserError, match="divisible"):
        feeding.make_pipeline(tasks, "train", 7, 32, shard=(0, 2))


def test_packed_mlm_rows_follow_document_boundaries():
    pipe = feeding.make_pipeline(_spec(), "train", 4, 48, seed=0, shard=(0, 1))
    b = next(pipe)
    stream = STORE.tokens
    for row in range(4):
        targets, seg, pos = _originals(b)[row], b["encoder_segment_ids"][row], b["encoder_positions"][row]
        start = int(np.flatnonzero([np.array_equal(stream[i:i + 48], targets)
                                    for i in range(0, len(stream) - 47, 48)])[0]) * 48
        doc_start = np.isin(np.arange(start, start + 48), STORE.starts)
        assert np.array_equal(np.diff(seg) == 1, doc_start[1:])  # a new segment at each document
        assert (pos[doc_start] == 0).all() and pos[0] == 0
        kept = ~_selected(b)[row]
        assert (b["encoder_input_tokens"][row][kept] == targets[kept]).all()


def test_unpacked_rows_are_single_padded_documents():
    pipe = feeding.make_pipeline(_spec(), "train", 8, 64, seed=0, pack=False, shard=(0, 1))
    b = next(pipe)
    assert "encoder_segment_ids" not in b
    for row in _originals(b):
        n = int((row != 0).sum())
        assert (row[n:] == 0).all() and row[n - 1] == INFO.eos_id  # one document, then padding
        assert (row[:n - 1] != INFO.eos_id).all()


def test_encdec_features_and_span_reassembly():
    pipe = feeding.make_pipeline(_spec("c", "span_corruption"), "train", 4, {"inputs": 64}, seed=0,
                                 shard=(0, 1))
    b = next(pipe)
    assert b["decoder_target_tokens"].shape[1] == 14  # T5 helper: 64 inputs -> 14 targets
    tgt, dec_in = b["decoder_target_tokens"], b["decoder_input_tokens"]
    assert (dec_in[:, 0] == 0).all() and np.array_equal(dec_in[:, 1:], tgt[:, :-1])
    assert np.array_equal(b["decoder_loss_weights"], (tgt != 0).astype(np.float32))
    assert (b["encoder_input_tokens"] != 0).all()  # span corruption fills the inputs exactly


def test_mixture_follows_its_rates():
    tasks = [(_spec("a"), 0.8), (_spec("b", "wwm"), 0.2)]
    pipe = feeding.make_pipeline(tasks, "train", 50, 16, seed=0, shard=(0, 1))
    for _ in range(20):
        next(pipe)
    taken = pipe.state()["taken"]
    assert abs(taken["a"] / 1000 - 0.8) < 0.04


def test_shift_right_starts_each_segment():
    assert feeding._shift_right(np.array([7, 1, 9, 9, 1]), np.array([1, 1, 2, 2, 2])).tolist() == [0, 7, 0, 9, 9]


def test_restore_rejects_another_pipeline():
    pipe = feeding.make_pipeline(_spec(), "train", 4, 32, seed=0, shard=(0, 1))
    other = feeding.make_pipeline(_spec(), "train", 4, 32, seed=1, shard=(0, 1))
    with pytest.raises(UserError, match="different pipeline"):
        other.restore(pipe.state())
    with pytest.raises(UserError, match="cannot mix"):
        feeding.make_pipeline([(_spec("a"), 1), (_spec("c", "span_corruption"), 1)], "train", 4, 32,
                              shard=(0, 1))


def test_mlm_batches_carry_static_masked_positions_and_count_overflow():
    pipe = feeding.make_pipeline(_spec(), "train", 4, 40, seed=0, shard=(0, 1))
    b = next(pipe)
    assert b["mlm_positions"].shape == b["mlm_targets"].shape == b["mlm_weights"].shape == (4, 6)  # ceil(.15*40)
    assert b["mlm_dropped"].tolist() == [0] * 4 and (b["mlm_weights"].sum(1) > 0).all()
    originals = _originals(b)
    sel = _selected(b)
    assert (np.take_along_axis(originals, b["mlm_positions"], 1) == b["mlm_targets"]).all()
    assert ((b["encoder_input_tokens"] != originals) <= sel).all()  # only selected tokens change
