"""The recipe gin files end to end through `seqpt train` (in process, synthetic data):
an MLM encoder run, then runs/warmstart_seq2seq.gin frozen-then-unfrozen from it."""

import json

import numpy as np
import pytest

from seqpt_jax import cli, models
from seqpt_jax.mappings import checks
from seqpt_jax.train import freezing, perf
from seqpt_jax.params_io import load as _load


def load_params(path, step=None):
    return _load(path, step=step)[2]

TINY = ["--gin.models.preset.vocab_size=101", "--gin.models.preset.d_model=32", "--gin.models.preset.d_ff=64",
        "--gin.models.preset.num_heads=2", "--gin.models.preset.head_dim=16", "--gin.BATCH_SIZE=8",
        "--gin.VOCAB=unused", "--gin.loop.train.data=@data.synthetic", "--gin.loop.train.eval_every=0",
        "--gin.loop.train.log_every=1000", "--gin.loop.train.progress=False"]


def _train(model_dir, run, *extra):
    rc = cli.main(["train", "--gin_file=models/t5_tiny.gin", f"--gin_file=runs/{run}", "--gin_file=hw/cpu.gin",
                   f"--gin.MODEL_DIR={model_dir}", *TINY, *extra])
    assert rc == 0
    with open(model_dir / "summary.json") as f:
        return json.load(f)


@pytest.mark.slow  # two `seqpt train` runs: ~60 s CPU time
def test_warmstart_recipe_frozen_then_unfrozen_from_an_mlm_checkpoint(tmp_path):
    mlm_dir, s2s_dir = tmp_path / "mlm", tmp_path / "s2s"
    _train(mlm_dir, "pretrain_mlm.gin", "--gin.TRAIN_STEPS=2")
    summary = _train(s2s_dir, "warmstart_seq2seq.gin", f"--gin.ENCODER_CHECKPOINT={mlm_dir}",
                     "--gin.FREEZE_ENCODER_STEPS=2", "--gin.TRAIN_STEPS=4", "--gin.loop.train.save_every=2",
                     "--gin.data.synthetic.objective='seq2seq'", "--gin.WARMUP_STEPS=0")
    assert summary["phases"] == ["frozen", "full"] and summary["steps"] == 4
    mlm = checks.flat(load_params(str(mlm_dir)))
    frozen, final = checks.flat(load_params(str(s2s_dir), step=2)), checks.flat(load_params(str(s2s_dir)))
    encoder = [p for p in mlm if p[0] == "encoder"]
    for p in encoder:  # warm-started exactly, and untouched while frozen ...
        np.testing.assert_array_equal(frozen[p], mlm[p], err_msg="/".join(p))
    assert all(not np.array_equal(frozen[p], final[p]) for p in encoder if p[-1] == "kernel")  # ... then trained
    # Compute accounting: 2 frozen steps (no encoder backward) + 2 full steps.
    cfg = models.preset("t5-tiny", vocab_size=101, d_model=32, d_ff=64, num_heads=2, head_dim=16)
    shapes = models.param_shapes(models.EncoderDecoder(cfg))
    per_step = {name: perf.train_flops("encoder_decoder", cfg, shapes, trainable, 8, 16, 8)["total"]
                for name, trainable in [("frozen", freezing.freeze_by_regex(shapes, freezing.ENCODER_SIDE)),
                                        ("full", freezing.all_trainable(shapes))]}
    print(f"\nwarm start: frozen {2 * per_step['frozen']:.4g} FLOPs + unfrozen {2 * per_step['full']:.4g} FLOPs; "
          f"summary train_flops {summary['train_flops']:.4g}; per phase: {summary.get('flops_by_phase')}")
    assert per_step["frozen"] < per_step["full"]
    np.testing.assert_allclose(summary["train_flops"], 2 * per_step["frozen"] + 2 * per_step["full"], rtol=1e-6)
    np.testing.assert_allclose([summary["flops_by_phase"][p] for p in ("frozen", "full")],
                               [2 * per_step["frozen"], 2 * per_step["full"]], rtol=1e-6)
    assert set(summary["throughput"]) == {"frozen", "full"}


RECIPES = [("t5_tiny", "warmstart_seq2seq", "ENCODER_CHECKPOINT", "loop.train.unfreeze_step", 1000),
           ("t5_tiny", "continue_mlm", "SEQ2SEQ_CHECKPOINT", "models.build.kind", "encoder_mlm"),
           ("bert_tiny", "grow_two_stage", "SMALL_CHECKPOINT", "loop.TwoStage.block", 2),
           ("t5_tiny", "seq2seq_small_decoder", None, "models.preset.num_decoder_layers", 1),
           ("t5_tiny", "seq2seq_masked_encoder", None, "data.mixture_or_task.name", "seqpt_local_span_corruption_masked"),
           ("t5_tiny", "seq2seq_masked_encoder", None, "loop.train.encoder_mlm_weight", 1.0),
           ("mt5_base", "pretrain_span_mc4", "TFDS_DATA_DIR", "data.mixture_or_task.name", "seqpt_mc4_span_corruption"),
           ("bert_tiny", "pretrain_electra", None, "models.build.kind", "electra"),
           ("bert_tiny", "pretrain_electra", None, "models.build.rtd_weight", 50.0),        # the paper's lambda
           ("t5_tiny", "pretrain_electra", None, "models.build.generator_fraction", 0.25)]


@pytest.mark.parametrize("model,run,required,name,value", RECIPES)
def test_recipe_gin_files_parse_and_bind(model, run, required, name, value):
    import gin
    from seqpt_jax.commands import train as train_cmd
    bindings = ["MODEL_DIR = '/tmp/unused'", "VOCAB = 'unused'"] + ([f"{required} = '/tmp/ckpt'"] if required else [])
    train_cmd.parse_gin([f"models/{model}.gin", f"runs/{run}.gin", "hw/cpu.gin"], bindings, [train_cmd.GIN_DIR])
    try:
        bound = gin.query_parameter(name)
        while isinstance(bound, gin.config.ConfigurableReference):  # a %MACRO: its value
            bound = gin.query_parameter(bound.scoped_selector + ".value")
        assert bound == value
    finally:
        gin.clear_config()


def test_init_hooks_build_the_trained_model_from_checkpoints(tmp_path):
    import jax
    from seqpt_jax import mappings, params_io
    from seqpt_jax.mappings import init_hooks
    from seqpt_jax.train import partitioning
    small = models.preset("bert-tiny", vocab_size=101, d_model=32, num_heads=2, head_dim=16, d_ff=64,
                          max_length=16, dropout_rate=0.0)
    big = small.replace(d_model=64, num_heads=4, d_ff=128, num_encoder_layers=4)
    params = models.init(models.EncoderMLM(small), jax.random.key(0))
    path = params_io.save_params(str(tmp_path / "small"), "encoder_mlm", small, params)
    mesh = partitioning.make_mesh((2, 4, 1))
    shardings = mappings.target_shardings("encoder_mlm", big, mesh, "fsdp")
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                            models.param_shapes(models.EncoderMLM(big)), shardings)
    grown = init_hooks.grown_from(path, method="fpi", unit_map="tile", seed=3)(jax.random.key(9), abstract)
    want = mappings.grow(params, small, big, method="fpi", unit_map="tile", rng=jax.random.key(3))
    for (p, a), b, s in zip(checks.flat(grown).items(), checks.flat(want).values(), checks.flat(shardings).values()):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg="/".join(p))
        assert a.sharding.is_equivalent_to(s, a.ndim)
    wrong = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                         models.param_shapes(models.EncoderMLM(big.replace(vocab_size=202))))
    with pytest.raises(Exception, match="vocab_size"):
        init_hooks.grown_from(path)(jax.random.key(0), wrong)
