"""The recipes do what the papers say: a frozen warm-start encoder does not move, parameters
that unfreeze start a fresh Adam, bert2BERT samples its sub-models per step from BLOCK and the
target depth."""

import functools

import jax
import numpy as np
import optax
import pytest

from seqpt_jax import models
from seqpt_jax.commands import train as train_cmd
from seqpt_jax.train import data, freezing, loop
from seqpt_jax.train import partitioning as P
from seqpt_jax.train import state as state_lib
from seqpt_jax.train import step as step_lib
from seqpt_jax.train.optimizers import OptimizerConfig, make_optimizer


def _gin_bindings(files, bindings):
    """loop.train's bindings (references resolved) for the gin files, as `seqpt train` parses them."""
    import gin
    train_cmd.parse_gin(files, ["MODEL_DIR = '/tmp/unused'", "VOCAB = 'unused'", *bindings], [train_cmd.GIN_DIR])
    try:
        return gin.get_bindings("seqpt_jax.train.loop.train")
    finally:
        gin.clear_config()


@pytest.mark.parametrize("family", ["bert", "t5"])
def test_warmstart_frozen_set_keeps_the_encoder_output_bit_identical(family):
    freeze = _gin_bindings(["models/t5_tiny.gin", "runs/warmstart_seq2seq.gin", "hw/cpu.gin"],
                           ["ENCODER_CHECKPOINT = '/tmp/unused'", "models.preset.vocab_size = 101"])["freeze"]
    name = "bert-tiny" if family == "bert" else "t5-tiny"
    cfg = models.preset(name, vocab_size=101, d_model=32, num_heads=2, head_dim=16, d_ff=64, num_encoder_layers=1,
                        num_decoder_layers=1, dropout_rate=0.0, max_length=32)
    model = models.EncoderDecoder(cfg)
    mesh, table = P.make_mesh((-1, 1, 1)), P.rules("dp")
    shapes = models.param_shapes(model)
    shardings = P.shardings(models.logical_axes(model), shapes, table, mesh)
    opt = OptimizerConfig(learning_rate=1e-2, warmup_steps=0, decay="constant")
    tx, schedule = make_optimizer(opt, shapes, 100)
    st = state_lib.create(state_lib.fresh_init(model), tx, shapes, shardings, mesh, seed=0)
    src = data.synthetic("train", 8, 0, (0, 1), objective="seq2seq", length=16, target_length=8)
    probe = next(data.synthetic("validation", 8, 1, (0, 1), objective="seq2seq", length=16, target_length=8))
    encode = jax.jit(lambda p: model.apply({"params": p}, probe, method="encode")[0])
    before = np.asarray(encode(st.params))
    fn = step_lib.make_train_step(model, tx, schedule, freezing.freeze_by_regex(shapes, freeze), mesh, table)
    old_decoder = np.asarray(st.params["decoder"]["layers"]["mlp"]["wo"]["kernel"]).copy()
    for _ in range(3):
        st, _ = fn(st, data.to_global(next(src), mesh))
    after = np.asarray(encode(st.params))
    assert not np.array_equal(old_decoder, np.asarray(st.params["decoder"]["layers"]["mlp"]["wo"]["kernel"]))
    assert np.array_equal(before, after), f"encoder output moved by {np.abs(after - before).max():.3g}"


def test_encoder_side_names_everything_the_encoder_output_reads():
    for name in ("bert-tiny", "t5-tiny"):
        shapes = models.param_shapes(models.EncoderDecoder(models.preset(name, vocab_size=101)))
        frozen = freezing.freeze_by_regex(shapes, freezing.ENCODER_SIDE)
        from seqpt_jax.train.optimizers import path_tree
        for path, t in zip(jax.tree.leaves(path_tree(shapes)), jax.tree.leaves(frozen)):
            assert t == path.startswith(("decoder/", "lm_head/")), path
        shared = freezing.freeze_by_regex(shapes, freezing.encoder_side(shared_token_embedding_trainable=True))
        assert shared["token_embedder"]["embedding"] and not shared["encoder"]["layers"]["mlp"]["wo"]["kernel"]


def test_params_that_unfreeze_get_a_fresh_adam():
    """Frozen for 200 steps, then the first 10 updates equal a fresh optax.adamw's fed the same
    gradients (b2 0.999: a shared step count would inflate them ~2-5x)."""
    rng = np.random.default_rng(0)
    params = {"encoder": {"w": np.zeros((3, 4), np.float32)}, "decoder": {"w": np.zeros((3, 4), np.float32)}}
    cfg = OptimizerConfig(learning_rate=1e-3, warmup_steps=0, decay="constant", weight_decay=0.0, b2=0.999,
                          clip_norm=None, late_warmup_steps=0)
    unfreeze = 200
    late = {"encoder": {"w": True}, "decoder": {"w": False}}
    tx, _ = make_optimizer(cfg, params, 1000, late=late, late_start=unfreeze)
    frozen = {"encoder": {"w": False}, "decoder": {"w": True}}
    full = {"encoder": {"w": True}, "decoder": {"w": True}}
    apply = {name: jax.jit(functools.partial(step_lib.apply_gradients, tx, trainable=t))
             for name, t in (("frozen", frozen), ("full", full))}
    opt_state, p = tx.init(params), params
    fresh = optax.adamw(1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0)
    fresh_state = fresh.init(params["encoder"])
    for step in range(unfreeze + 10):
        grads = jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32), params)
        new_p, opt_state = apply["frozen" if step < unfreeze else "full"](p, opt_state, grads)
        if step >= unfreeze:
            want, fresh_state = fresh.update(grads["encoder"], fresh_state, p["encoder"])
            got = jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), new_p["encoder"], p["encoder"])
            np.testing.assert_allclose(got["w"], np.asarray(want["w"]), rtol=1e-6, atol=1e-10,
                                       err_msg=f"update {step - unfreeze + 1} after unfreezing")
        else:
            assert np.array_equal(new_p["encoder"]["w"], p["encoder"]["w"])
        p = new_p


@pytest.mark.parametrize("layers,block,expected", [(4, 2, 2), (6, 2, 3), (6, 3, 2)])
def test_two_stage_sub_models_come_from_block_and_target_depth(layers, block, expected):
    b = _gin_bindings(["models/bert_small.gin", "runs/grow_two_stage.gin", "hw/cpu.gin"],
                      ["SMALL_CHECKPOINT = '/tmp/unused'", "models.preset.vocab_size = 101",
                       f"models.preset.num_encoder_layers = {layers}", f"BLOCK = {block}", "STAGE_STEPS = 3000"])
    shapes = models.param_shapes(b["model"])
    all_phases = loop.phases(shapes, 4000, b.get("freeze", ()), b.get("unfreeze_step", 0), b["two_stage"])
    subs = [p.sub for p in all_phases if p.sub is not None]
    assert [(s.num_layers, s.train_top) for s in subs] == [(i * block, block) for i in range(1, expected + 1)]
    assert all(p.end == 3000 for p in all_phases if p.sub is not None) and all_phases[-1].name == "full"
    assert not (b["two_stage"].train_embeddings or b["two_stage"].train_head)  # the paper: top block only
    # Sampled per step, uniformly, from (seed, step) alone: a resumed run draws the same.
    draws = [loop.phase_at(all_phases, s, seed=3).name for s in range(3000)]
    assert draws[:7] == [loop.phase_at(all_phases, s, seed=3).name for s in range(7)]
    counts = np.array([draws.count(p.name) for p in all_phases if p.sub is not None]) / 3000
    np.testing.assert_allclose(counts, 1 / expected, atol=0.04)
    assert loop.phase_at(all_phases, 3000, seed=3).name == "full"


def test_stage_one_can_train_embeddings_and_head():
    shapes = models.param_shapes(models.EncoderMLM(models.preset("bert-tiny", vocab_size=101, num_encoder_layers=4)))
    sub = freezing.two_stage_sub_models(4, 2, train_embeddings=True, train_head=True)[0]
    t = freezing.sub_model_trainable(shapes, sub)
    assert t["token_embedder"]["embedding"] and t["embedding_norm"]["scale"] and t["mlm_head"]["transform"]["kernel"]
    assert list(t["encoder"]["layers"]["mlp"]["wo"]["kernel"]) == [True, True, False, False]
    with pytest.raises(Exception, match="must divide"):
        freezing.two_stage_sub_models(6, 4)


@pytest.mark.slow  # three short training runs (~60-90 s CPU)
def test_resume_across_unfreeze_with_optimizer_groups_is_exact(tmp_path):
    from seqpt_jax.params_io import load

    def load_params(path, step=None):
        return load(path, step=step)[2]
    cfg = models.preset("t5-tiny", vocab_size=101, d_model=32, num_heads=2, head_dim=16, d_ff=64,
                        num_encoder_layers=1, num_decoder_layers=1)
    run = functools.partial(loop.train, model=models.EncoderDecoder(cfg),
                            data=functools.partial(data.synthetic, objective="seq2seq"), batch_size=8,
                            freeze=freezing.ENCODER_SIDE, unfreeze_step=2, log_every=1000, progress=False,
                            optimizer=OptimizerConfig(learning_rate=1e-2, warmup_steps=0, decay="constant",
                                                      late_warmup_steps=2),
                            async_checkpoints=False)
    run(str(tmp_path / "straight"), steps=4, save_every=100)
    run(str(tmp_path / "resumed"), steps=2, save_every=2)
    summary = run(str(tmp_path / "resumed"), steps=4, save_every=100)
    assert summary["phases"] == ["frozen", "full"]
    a, b = load_params(str(tmp_path / "straight")), load_params(str(tmp_path / "resumed"))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.array_equal(x, y)


def test_phase_at_samples_only_among_sub_models():
    """A frozen phase ending with the run (steps == unfreeze_step) is not confused with 'full'."""
    shapes = models.param_shapes(models.EncoderDecoder(models.preset("t5-tiny", vocab_size=101)))
    all_phases = loop.phases(shapes, 2, freezing.ENCODER_SIDE, 2)
    assert [loop.phase_at(all_phases, s, seed).name for s in range(2) for seed in range(20)] == ["frozen"] * 40
