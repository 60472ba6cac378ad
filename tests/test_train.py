"""Trainer properties, in process on 8 fake CPU devices: gradient accumulation, freezing,
bert2BERT sub-model stages, NaN stop, corrupted-checkpoint fallback, params_io.load, FLOPs."""

import functools
import logging
import os

import jax
import numpy as np
import pytest

from seqpt_jax import models, params_io
from seqpt_jax.errors import UserError
from seqpt_jax.train import data, freezing, loop, perf
from seqpt_jax.train import OptimizerConfig
from seqpt_jax.train import partitioning as P
from seqpt_jax.train import state as state_lib
from seqpt_jax.train import step as step_lib
from seqpt_jax.train.optimizers import make_optimizer, path_tree


def load_params(path, step=None):
    return params_io.load(path, step=step)[2]

ADAM = OptimizerConfig(learning_rate=1e-2, warmup_steps=0, decay="constant", weight_decay=0.01)


def _bert(layers=2):
    return models.EncoderMLM(models.preset("bert-tiny", vocab_size=101, dropout_rate=0.0,
                                           num_encoder_layers=layers, d_ff=128))


def _t5():
    return models.EncoderDecoder(models.preset("t5-tiny", vocab_size=101, d_model=64, d_ff=96,
                                               num_heads=2, head_dim=16, num_encoder_layers=1,
                                               num_decoder_layers=1))


def _run(tmp_path, model, steps, objective="mlm", **kw):
    kw.setdefault("optimizer", ADAM)
    return loop.train(str(tmp_path), model, functools.partial(data.synthetic, objective=objective),
                      steps=steps, batch_size=8, log_every=1000, progress=False, **kw)


def _setup(model, opt=ADAM):
    mesh, table = P.make_mesh((-1, 1, 1)), P.rules("dp")
    shapes = models.param_shapes(model)
    shardings = P.shardings(models.logical_axes(model), shapes, table, mesh)
    tx, schedule = make_optimizer(opt, shapes, 100)
    st = state_lib.create(state_lib.fresh_init(model), tx, shapes, shardings, mesh, seed=0)
    return mesh, table, tx, schedule, st


def test_grad_accumulation_equals_larger_batch():
    """Compared through one SGD step (lr 1), so the param change *is* the gradient (Adam's
    normalisation would blow 1e-9 gradient noise up to full-size updates)."""
    import optax
    model = _bert()
    mesh, table, _, schedule, st = _setup(model)
    tx = optax.sgd(1.0)
    st = st.replace(opt_state=tx.init(st.params))
    src = data.synthetic("train", 16, 0, (0, 1), length=12)
    batch = data.to_global(next(src), mesh)
    out = {}
    for k in (1, 4):
        fn = step_lib.make_train_step(model, tx, schedule, freezing.all_trainable(st.params), mesh, table,
                                      grad_accum=k)
        copy = jax.tree.map(lambda x: x.copy(), st)
        out[k] = fn(copy, batch)
    (s1, m1), (s4, m4) = out[1], out[4]
    np.testing.assert_allclose(float(m4["loss"]), float(m1["loss"]), rtol=1e-6)
    np.testing.assert_allclose(float(m4["grad_norm"]), float(m1["grad_norm"]), rtol=1e-5)
    g1 = jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), s1.params, st.params)
    g4 = jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), s4.params, st.params)
    scale = max(np.abs(g).max() for g in jax.tree.leaves(g1))
    for a, b in zip(jax.tree.leaves(g4), jax.tree.leaves(g1)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)


def _moments(opt_state, params):
    """Every params-shaped subtree of the optimizer state (Adam's mu and nu); with optimizer
    groups (optax.multi_transform, entries of other groups masked) the groups' trees merged."""
    import optax
    masked = lambda x: isinstance(x, optax.MaskedNode)  # noqa: E731
    treedef = jax.tree.structure(params)
    found = []
    def visit(x):
        if jax.tree.structure(x, is_leaf=masked) == treedef:
            found.append(jax.tree.leaves(x, is_leaf=masked))
            return True
        return False
    jax.tree.leaves(opt_state, is_leaf=visit)
    half = 2 if len(found) == 4 else len(found)  # (mu, nu) per group
    merged = [[b if masked(a) else a for a, b in zip(found[j], found[j + half])] if half < len(found)
              else found[j] for j in range(half)]
    return [jax.tree.unflatten(treedef, leaves) for leaves in merged]


def _subtree_changed(a, b, prefix):
    paths = jax.tree.leaves(path_tree(a))
    return {p: not np.array_equal(np.asarray(x), np.asarray(y))
            for p, x, y in zip(paths, jax.tree.leaves(a), jax.tree.leaves(b)) if p.startswith(prefix)}


def test_freezing_keeps_encoder_params_and_moments(tmp_path):
    model = _t5()
    snaps = {}
    _run(tmp_path, model, 4, objective="seq2seq", freeze=("^encoder/",), unfreeze_step=3,
         save_every=100, on_step=lambda step, st: snaps.__setitem__(step, jax.device_get(st)))
    s1, s3, s4 = snaps[1], snaps[3], snaps[4]
    moments = list(zip(_moments(s1.opt_state, s1.params), _moments(s3.opt_state, s3.params)))
    assert len(moments) == 2  # mu, nu
    # Frozen steps 2..3: no encoder parameter and no encoder moment changes ...
    assert not any(_subtree_changed(s1.params, s3.params, "encoder/").values())
    for m1, m3 in moments:
        assert not any(_subtree_changed(m1, m3, "encoder/").values())
        assert all(_subtree_changed(m1, m3, "decoder/layers/").values())
    # ... while the decoder trains; after unfreezing (step 4) the encoder moves again.
    assert all(_subtree_changed(s1.params, s3.params, "decoder/layers/").values())
    assert any(_subtree_changed(s3.params, s4.params, "encoder/layers/").values())


def test_frozen_step_counts_fewer_flops():
    model = _t5()
    shapes = models.param_shapes(model)
    full = perf.train_flops("encoder_decoder", model.cfg, shapes, freezing.all_trainable(shapes), 8, 16, 8)
    frozen = perf.train_flops("encoder_decoder", model.cfg, shapes, freezing.freeze_by_regex(shapes, ["^encoder/"]),
                              8, 16, 8)
    assert frozen["forward"] == full["forward"] and frozen["backward"] < full["backward"]
    # everything trainable: the classic 6 N T (kernels only) + attention terms
    cfg = model.cfg
    n_enc = sum(np.prod(x.shape) for p, x in zip(jax.tree.leaves(path_tree(shapes)), jax.tree.leaves(shapes))
                if p.startswith("encoder/layers") and p.endswith("kernel"))
    attn = 12 * cfg.num_encoder_layers * 8 * 16 * 16 * cfg.num_heads * cfg.head_dim
    enc_only = perf.train_flops("encoder_decoder", cfg, shapes,
                                jax.tree.map(lambda p: p.startswith("encoder/layers"), path_tree(shapes)), 8, 16, 8)
    assert enc_only["forward"] == full["forward"]
    assert 6 * n_enc * 8 * 16 + attn <= enc_only["total"]


def test_two_stage_sampled_sub_models_train_only_their_top_block(tmp_path):
    model = _bert(layers=4)
    snaps = {}
    summary = _run(tmp_path, model, 5, two_stage=loop.TwoStage(block=2, steps=4), save_every=100,
                   on_step=lambda step, st: snaps.__setitem__(step, jax.device_get(st)))
    assert summary["phases"] == ["stage1/sub1", "stage1/sub2", "full"]
    init = jax.device_get(state_lib.fresh_init(model)(jax.random.split(jax.random.PRNGKey(0))[0],
                                                       _abstract(model)))
    snaps[0] = state_lib.TrainState(step=0, params=init, opt_state=None, rng=None)
    drawn = [loop.sample_index(0, step, 2) + 1 for step in range(4)]
    assert set(drawn) == {1, 2}, drawn  # seed 0 draws both sub-models in 4 steps
    paths = jax.tree.leaves(path_tree(init))
    for step, i in enumerate(drawn):
        top = [2 * i - 2, 2 * i - 1]  # sub-model i = bottom 2i layers, training its top 2
        rest = [l for l in range(4) if l not in top]
        before, after = snaps[step].params, snaps[step + 1].params
        for p, a, b in zip(paths, jax.tree.leaves(before), jax.tree.leaves(after)):
            a, b = np.asarray(a), np.asarray(b)
            if p.startswith("encoder/layers/"):
                assert np.array_equal(a[rest], b[rest]), (step, p)          # untouched layers
                if p.endswith("kernel"):
                    assert not np.array_equal(a[top], b[top]), (step, p)    # the sampled top block trains
            else:
                assert np.array_equal(a, b), (step, p)                      # embeddings, head frozen
    full = snaps[5].params["encoder"]["layers"]["mlp"]["wi"]["kernel"]
    assert not np.array_equal(np.asarray(full[0]), np.asarray(snaps[4].params["encoder"]["layers"]["mlp"]["wi"]["kernel"][0]))


def _abstract(model):
    mesh = P.make_mesh((-1, 1, 1))
    shapes = models.param_shapes(model)
    shard = P.shardings(models.logical_axes(model), shapes, P.rules("dp"), mesh)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, shard)


class _PoisonAt:
    """The synthetic source, with NaN loss weights from batch `k` on."""

    def __init__(self, k, *args, **kw):
        self.inner, self.k = data.synthetic(*args, **kw), k

    def __next__(self):
        b = next(self.inner)
        if self.inner.k > self.k:
            b["mlm_weights"] = b["mlm_weights"] * np.nan
        return b

    def state(self):
        return self.inner.state()

    def restore(self, s):
        self.inner.restore(s)


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
    model = _bert()
    with pytest.raises(loop.Diverged, match=r"loss became nan at step 5.*last good checkpoint is step 4"):
        loop.train(str(tmp_path), model, functools.partial(_PoisonAt, 4), steps=8, batch_size=8, save_every=2,
                   optimizer=ADAM, progress=False, log_every=1000)
    params = load_params(str(tmp_path))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))
    assert sorted(os.listdir(tmp_path / "checkpoints"))[-1] == "4"


def test_corrupt_latest_checkpoint_resumes_from_previous(tmp_path, caplog):
    model = _bert()
    _run(tmp_path, model, 4, save_every=2, async_checkpoints=False)
    good = load_params(str(tmp_path))  # step 4
    # Rewrite the stored arrays of step 4: it still looks complete but its values are wrong.
    for root, _, files in os.walk(tmp_path / "checkpoints" / "4" / "state"):
        for name in files:
            if "ocdbt" in root or name.startswith("d"):
                path = os.path.join(root, name)
                with open(path, "r+b") as f:
                    f.truncate(max(os.path.getsize(path) // 2, 1))
    with caplog.at_level(logging.WARNING):
        summary = _run(tmp_path, model, 6, save_every=2)
    assert "checkpoint 4" in caplog.text and "corrupt" in caplog.text
    assert os.path.isdir(tmp_path / "checkpoints.corrupt" / "4")
    assert summary["checkpoints"][-1] == 6
    assert not np.array_equal(jax.tree.leaves(good)[0], jax.tree.leaves(load_params(str(tmp_path)))[0])


def test_init_hook_from_param_checkpoint_and_load_params(tmp_path):
    model = _bert()
    src = models.init(model, jax.random.key(7))
    params_io.save_params(str(tmp_path / "ckpt"), "encoder_mlm", model.cfg, src)
    np.testing.assert_array_equal(load_params(str(tmp_path / "ckpt"))["token_embedder"]["embedding"],
                                  np.asarray(src["token_embedder"]["embedding"]))
    seen = {}
    _run(tmp_path / "run", model, 1, save_every=100, init=state_lib.from_param_checkpoint(str(tmp_path / "ckpt")),
         on_step=lambda step, st: seen.setdefault("p", jax.device_get(st.params)),
         optimizer=OptimizerConfig(learning_rate=0.0, decay="constant"))
    for a, b in zip(jax.tree.leaves(seen["p"]), jax.tree.leaves(src)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(UserError, match="has shape .* but the model being built needs"):
        _run(tmp_path / "run2", _bert(layers=3), 1, init=state_lib.from_param_checkpoint(str(tmp_path / "ckpt")))


def test_schedules_and_multipliers():
    from seqpt_jax.train.optimizers import make_schedule, scale_by_path
    lin = make_schedule(1.0, 110, 10, "linear")
    assert float(lin(0)) == 0.0 and float(lin(10)) == pytest.approx(1.0) and float(lin(110)) == pytest.approx(0.0)
    cos = make_schedule(1.0, 110, 10, "cosine")
    assert float(cos(60)) == pytest.approx(0.5, abs=1e-3)
    rs = make_schedule(1.0, 110, 10, "rsqrt")
    assert float(rs(30)) == pytest.approx(np.sqrt(10 / 30), rel=1e-4)
    tx = scale_by_path({"^encoder/": 0.1})
    upd = {"encoder": {"w": np.ones(2)}, "decoder": {"w": np.ones(2)}}
    out, _ = tx.update(upd, tx.init(upd))
    assert out["encoder"]["w"][0] == pytest.approx(0.1) and out["decoder"]["w"][0] == 1.0
    with pytest.raises(UserError, match="match no parameter"):
        freezing.freeze_by_regex(upd, ["^nothing/"])
