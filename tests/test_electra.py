"""ELECTRA (models.electra, losses.electra_loss): replaced-token labels, no gradient into the
generator through its samples, lambda = 50, exact resume of the sampling, and a `seqpt train`
run on a fixture corpus whose discriminator extracts to an ordinary encoder_mlm."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqpt_jax import mappings, models, params_io
from seqpt_jax.errors import UserError
from seqpt_jax.models.electra import replace_masked
from seqpt_jax.train import checkpoints, data, losses


def _cfg(family="bert", **kw):
    base = dict(vocab_size=101, d_model=32, num_heads=2, head_dim=16, d_ff=64, num_encoder_layers=1,
                dropout_rate=0.0, max_length=32)
    return models.preset("bert-tiny" if family == "bert" else "t5-tiny", **{**base, **kw})


def _batch(vocab=101, seed=0):
    return next(data.synthetic("train", 8, seed, (0, 1), objective="mlm", vocab_size=vocab, length=16))


def _run(model, params, batch, key):
    return jax.jit(lambda p, b, k: model.apply({"params": p}, b, enable_dropout=True, rngs={"dropout": k}))(
        params, batch, key)


def test_replace_masked_labels_are_sample_differs_at_masked_positions_and_zero_elsewhere():
    tokens = np.array([[5, 1, 7, 1, 0], [1, 4, 4, 4, 0]], np.int32)   # 1 = [MASK], 0 = padding
    positions = np.array([[1, 3, 0], [0, 2, 0]], np.int32)            # last entries: padding (weight 0)
    targets = np.array([[6, 9, 0], [3, 8, 0]], np.int32)              # the originals
    selected = np.array([[True, True, False], [True, True, False]])
    sampled = np.array([[6, 2, 99], [7, 4, 99]], np.int32)            # row 0 pos 1 and row 1 pos 0: sampled
    inputs, labels = replace_masked(jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(sampled),
                                    jnp.asarray(targets), jnp.asarray(selected))
    # The padding entry repeats position 0, which in row 1 is a real masked position: still written once.
    np.testing.assert_array_equal(inputs, [[5, 6, 7, 2, 0], [7, 4, 4, 4, 0]])
    # sample == original (row 0 position 1: 6 == 6) is "original"; replaced (row 1 pos 2 sampled 4 != 8) is 1.
    np.testing.assert_array_equal(labels, [[0, 0, 0, 1, 0], [1, 0, 1, 0, 0]])


def test_model_labels_its_own_replacements_and_samples_rather_than_argmax():
    cfg = _cfg("t5", vocab_size=7)   # a 7-token vocabulary: some samples hit the original
    model = models.build("electra", cfg)
    batch = _batch(vocab=7)
    params = models.init(model, jax.random.key(0), batch)
    out = _run(model, params, batch, jax.random.PRNGKey(3))
    tokens, pos, w = batch["encoder_input_tokens"], batch["mlm_positions"], batch["mlm_weights"]
    original = tokens.copy()
    masked = np.zeros(tokens.shape, bool)
    for r in range(tokens.shape[0]):
        keep = w[r] > 0
        original[r, pos[r, keep]] = batch["mlm_targets"][r, keep]
        masked[r, pos[r, keep]] = True
    inputs, labels = np.asarray(out.rtd_inputs), np.asarray(out.rtd_labels)
    np.testing.assert_array_equal(inputs[~masked], tokens[~masked])              # only masked positions change
    np.testing.assert_array_equal(labels, (inputs != original) & masked)         # labels = sample != original
    assert (masked & (inputs == original)).any() and labels[masked].any()       # both cases occur here
    np.testing.assert_array_equal(out.rtd_weights, tokens != 0)                  # every non-pad position
    argmax = np.asarray(jnp.argmax(out.mlm_logits, -1))
    assert (np.take_along_axis(inputs, pos, 1)[w > 0] != argmax[w > 0]).any()    # sampled, not argmax
    again = _run(model, params, batch, jax.random.PRNGKey(3))                    # the step's rng fixes them
    np.testing.assert_array_equal(again.rtd_inputs, inputs)
    other = _run(model, params, batch, jax.random.PRNGKey(4))
    assert (np.asarray(other.rtd_inputs) != inputs).any()


def test_no_gradient_from_the_rtd_loss_into_the_generator():
    cfg = _cfg("t5")
    model = models.build("electra", cfg)
    batch = _batch()
    params = models.init(model, jax.random.key(0), batch)

    def loss(p, part):
        out = model.apply({"params": p}, batch, enable_dropout=True, rngs={"dropout": jax.random.PRNGKey(1)})
        if part == "rtd":   # lambda * RTD only: the MLM term's path cut
            out = out.replace(mlm_logits=jax.lax.stop_gradient(out.mlm_logits))
        else:               # the MLM term only
            out = out.replace(rtd_weight=0.0)
        return losses.electra_loss(out, batch).loss

    rtd, mlm = jax.jit(lambda p: (jax.grad(loss)(p, "rtd"), jax.grad(loss)(p, "mlm")))(params)
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(rtd["generator"]))   # exactly zero
    assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(mlm["generator"]))  # MLM trains it
    # The shared token embeddings learn from both losses (as in the paper).
    assert np.any(np.asarray(rtd["discriminator"]["token_embedder"]["embedding"]) != 0)
    assert np.any(np.asarray(mlm["discriminator"]["token_embedder"]["embedding"]) != 0)


def test_loss_is_mean_mlm_plus_fifty_times_mean_rtd():
    cfg = _cfg()
    model = models.build("electra", cfg)
    assert model.rtd_weight == 50.0 and model.generator_fraction == 0.25
    batch = _batch()
    params = models.init(model, jax.random.key(0), batch)
    out = _run(model, params, batch, jax.random.PRNGKey(2))
    sums = losses.electra_loss(out, batch)
    logits = np.asarray(out.mlm_logits, np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
    ce = -np.take_along_axis(logp, batch["mlm_targets"][..., None], -1)[..., 0]
    mean_mlm = (ce * batch["mlm_weights"]).sum() / batch["mlm_weights"].sum()
    x, y, w = (np.asarray(a, np.float64) for a in (out.rtd_logits, out.rtd_labels, out.rtd_weights))
    p = 1 / (1 + np.exp(-x))
    mean_rtd = (-(y * np.log(p) + (1 - y) * np.log(1 - p)) * w).sum() / w.sum()
    np.testing.assert_allclose(float(sums.loss / sums.weight), mean_mlm + 50.0 * mean_rtd, rtol=1e-5)
    np.testing.assert_allclose(float(sums.correct / sums.weight), (((x > 0) == (y > 0.5)) * w).sum() / w.sum(),
                               rtol=1e-5)
    # through the trainer's dispatch (losses.loss_for -> mlm_loss): the same sums
    np.testing.assert_allclose(losses.loss_for(batch)(out, batch).loss, sums.loss, rtol=1e-6)
    with pytest.raises(UserError, match="MLM batches"):
        losses.electra_loss(out, {"encoder_input_tokens": batch["encoder_input_tokens"]})


def test_generator_config_follows_the_paper():
    base = models.preset("bert-base")                                    # ELECTRA-Base: 1/3 -> 256, 4 heads
    g = models.generator_config(base, 1 / 3)
    assert (g.d_model, g.num_heads, g.head_dim, g.d_ff, g.num_encoder_layers) == (256, 4, 64, 1024, 12)
    small = models.preset("bert-base", d_model=256, num_heads=4, d_ff=1024)  # ELECTRA-Small: 1/4 -> 64, 1 head
    assert (models.generator_config(small, 0.25).d_model, models.generator_config(small, 0.25).num_heads) == (64, 1)
    with pytest.raises(UserError, match="GENERATOR_FRACTION"):
        models.generator_config(base, 0.0)
    with pytest.raises(UserError, match="not a setting"):
        models.build("encoder_mlm", base, generator_fraction=0.25)


@pytest.mark.slow  # vocab + one `seqpt train` on the corpus (in process) + extraction: ~30 s CPU
def test_seqpt_train_on_the_corpus_then_the_discriminator_loads_as_encoder_mlm(tmp_path):
    from data_fixtures import make_corpus

    from seqpt_jax.commands import extract as extract_cmd, train as train_cmd
    from seqpt_jax.data import vocab
    from seqpt_jax.evaluate import finetune
    root = make_corpus(tmp_path / "corpus", langs=["en", "de"])
    vocab.train(root, 400, root / "sp.model")
    run = tmp_path / "electra"
    argv = [
        "--gin_file=models/bert_tiny.gin", "--gin_file=runs/pretrain_electra.gin", "--gin_file=hw/cpu.gin",
        f"--gin.MODEL_DIR={run}", f"--gin.VOCAB={root / 'sp.model'}", f"--gin.CORPUS_DIR={root}",
        "--gin.INPUT_LENGTH=32", "--gin.TRAIN_STEPS=2", "--gin.BATCH_SIZE=8", "--gin.WARMUP_STEPS=1",
        "--gin.models.preset.d_model=32", "--gin.models.preset.num_heads=2", "--gin.models.preset.head_dim=16",
        "--gin.models.preset.d_ff=64", "--gin.models.preset.num_encoder_layers=1",
        "--gin.loop.train.save_every=2", "--gin.loop.train.eval_every=2", "--gin.loop.train.eval_batches=1",
        "--gin.loop.train.log_every=1", "--gin.loop.train.progress=False"]
    assert train_cmd.main(argv) == 0
    # Resuming with another generator width is another run: stopped naming the setting, before any restore.
    with pytest.raises(UserError, match=r"model\.generator_fraction 0\.25 -> 0\.5; recorded in"):
        train_cmd.main(argv + ["--gin.TRAIN_STEPS=4", "--gin.GENERATOR_FRACTION=0.5"])
    assert checkpoints.committed_steps(str(run)) == [2] and not (run / "checkpoints.corrupt").exists()
    kind, cfg, params = params_io.load(str(run))
    assert kind == "electra" and set(params) == {"discriminator", "generator"}
    assert params["generator"]["encoder"]["layers"]["mlp"]["wi"]["kernel"].shape[1:] == (8, 16)  # 1/4 wide
    with pytest.raises(UserError, match="seqpt extract --electra"):   # not a plain encoder: one clear line
        mappings.grow(params, cfg, cfg.replace(num_encoder_layers=2))
    out = tmp_path / "disc"
    assert extract_cmd.main(["--electra", str(run), "--out", str(out)]) == 0
    kind, enc_cfg, enc = params_io.load(str(out))
    assert kind == "encoder_mlm" and enc_cfg == cfg
    shapes = models.param_shapes(models.build("encoder_mlm", cfg))
    assert jax.tree.structure(enc) == jax.tree.structure(shapes)
    disc = params["discriminator"]
    for key in ("encoder", "token_embedder", "position_embedder", "embedding_norm"):
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(enc[key]), jax.tree.leaves(disc[key])))
    # warm start and fine-tuning take it like any MLM encoder
    s2s = mappings.encoder_to_seq2seq(enc, cfg, cfg)
    assert np.array_equal(s2s["encoder"]["layers"]["mlp"]["wi"]["kernel"], disc["encoder"]["layers"]["mlp"]["wi"]["kernel"])
    fresh = models.init(models.TokenClassifier(cfg, 3), jax.random.key(1))
    tuned = finetune.transfer(kind, enc, fresh)
    assert np.array_equal(tuned["encoder"]["layers"]["attention"]["query"]["kernel"],
                          disc["encoder"]["layers"]["attention"]["query"]["kernel"])

