"""The compute ledger equals the compiled step: `perf.train_flops` (what the trainer books per
phase) against the dot_general FLOPs of the train step's own jaxpr (`train.jaxpr_flops`),
within 1%, for every kind of phase the recipes run. A case is one line in CASES."""


import jax
import numpy as np
import pytest

from seqpt_jax import models
from seqpt_jax.train import data, distill, freezing, loop, jaxpr_flops, perf
from seqpt_jax.train import partitioning as P
from seqpt_jax.train import state as state_lib
from seqpt_jax.train import step as step_lib
from seqpt_jax.train.optimizers import OptimizerConfig, make_optimizer

BATCH, ENC, DEC = 8, 16, 8


def _cfg(family, **kw):
    name = "bert-tiny" if family == "bert" else "t5-tiny"
    base = dict(vocab_size=101, d_model=32, num_heads=2, head_dim=16, d_ff=64, num_encoder_layers=2,
                num_decoder_layers=2, dropout_rate=0.0, max_length=32)
    return models.preset(name, **{**base, **kw})


def _phase(name, **phase_kw):
    """Picks the phase `name` out of loop.phases (the trainer's own phase construction)."""
    return lambda shapes: next(p for p in loop.phases(shapes, 100, **phase_kw) if p.name == name)


# (case id, family, kind, config overrides, phase picker)
CASES = [
    ("mlm_full_bert", "bert", "encoder_mlm", {}, _phase("full")),
    ("mlm_full_t5", "t5", "encoder_mlm", {}, _phase("full")),
    ("seq2seq_full_t5", "t5", "encoder_decoder", {}, _phase("full")),
    ("seq2seq_full_bert", "bert", "encoder_decoder", {}, _phase("full")),
    ("warmstart_frozen_t5", "t5", "encoder_decoder", {},
     _phase("frozen", freeze=freezing.ENCODER_SIDE, unfreeze_step=10)),
    ("warmstart_frozen_bert", "bert", "encoder_decoder", {},
     _phase("frozen", freeze=freezing.ENCODER_SIDE, unfreeze_step=10)),
    ("warmstart_shared_token_embedding_t5", "t5", "encoder_decoder", {},
     _phase("frozen", freeze=freezing.encoder_side(True), unfreeze_step=10)),
    ("frozen_layers_stack_params_train_t5", "t5", "encoder_decoder", {},  # final_norm, relpos_bias train
     _phase("frozen", freeze=("^encoder/layers/", "^token_embedder/"), unfreeze_step=10)),
    ("two_stage_sub2_of_3_bert", "bert", "encoder_mlm", {"num_encoder_layers": 6},
     _phase("stage1/sub2", two_stage=loop.TwoStage(block=2, steps=5))),
    ("two_stage_sub3_of_3_bert", "bert", "encoder_mlm", {"num_encoder_layers": 6},
     _phase("stage1/sub3", two_stage=loop.TwoStage(block=2, steps=5))),
    ("two_stage_sub1_head_trains_t5", "t5", "encoder_mlm", {"num_encoder_layers": 4},
     _phase("stage1/sub1", two_stage=loop.TwoStage(block=2, steps=5, train_head=True))),
    # generator (1/4 width, projected shared embeddings, tied head on the masked positions),
    # sampling, discriminator + RTD head on every position
    ("electra_bert", "bert", "electra", {}, _phase("full")),
    ("electra_t5", "t5", "electra", {}, _phase("full")),
    # the chunked vocabulary loss (losses.chunked_cross_entropy; 7 and 16 leave remainder chunks):
    # its fused gradient runs dx / dW only where autodiff would (a frozen tied table: no dW)
    ("mlm_full_bert_loss_chunk", "bert", "encoder_mlm", {"loss_chunk": 7}, _phase("full")),
    ("seq2seq_full_t5_loss_chunk", "t5", "encoder_decoder", {"loss_chunk": 16}, _phase("full")),
    ("warmstart_frozen_bert_loss_chunk", "bert", "encoder_decoder", {"loss_chunk": 16},
     _phase("frozen", freeze=freezing.ENCODER_SIDE, unfreeze_step=10)),
]


def measure(kind, cfg, phase, batch=BATCH, enc=ENC, dec=DEC, grad_accum=1, encoder_mlm_weight=0.0,
            teacher_cfg=None):
    """(ledger FLOPs, jaxpr FLOPs) of one train step of `phase`. MLM batches carry the masked
    positions (the head runs on those only); `encoder_mlm_weight` > 0 adds the seq2seq model's
    encoder MLM head and loss (the masked-encoder variant); a distill phase runs the teacher
    built from `teacher_cfg` (abstract params: tracing needs no values)."""
    model = models.build(kind, cfg)
    if encoder_mlm_weight:
        model = model.clone(encoder_mlm_head=True)
    mesh, table = P.make_mesh((-1, 1, 1)), P.rules("dp")
    shapes = models.param_shapes(model)
    shardings = P.shardings(models.logical_axes(model), shapes, table, mesh)
    tx, schedule = make_optimizer(OptimizerConfig(), shapes, 100)
    step_model, _, sub = loop.phase_model(kind, cfg, model, phase)
    teacher = None
    if phase.distill:
        t_model = models.build(kind, teacher_cfg)
        t_shapes = models.param_shapes(t_model)
        spec = distill.Distill("unused", steps=phase.end, weight=0.5, temperature=2.0)
        teacher = (t_model, t_shapes, spec)
    fn = step_lib.make_train_step(step_model, tx, schedule, phase.trainable, mesh, table, sub_model=sub,
                                  grad_accum=grad_accum, encoder_mlm_weight=encoder_mlm_weight, teacher=teacher)
    state = state_lib.abstract_state(tx, shapes, shardings, mesh)
    objective = "seq2seq" if kind == "encoder_decoder" else "mlm"
    example = next(data.synthetic("train", batch, 0, (0, 1), objective=objective, vocab_size=cfg.vocab_size,
                                  length=enc, target_length=dec))
    if encoder_mlm_weight:  # span_corruption_masked's features, compacted to the masked positions as fed
        from seqpt_jax.data import mlm_positions
        weights = (np.arange(enc)[None] % 7 == 0).repeat(batch, 0).astype(np.float32)
        example.update(mlm_positions.compact(example["encoder_input_tokens"], weights,
                                             mlm_positions.max_predictions(0.15, enc)))
    measured = jaxpr_flops.jaxpr_flops(fn.trace(state, example))
    head = example["mlm_positions"].shape[1] if "mlm_positions" in example else None
    counted = loop.phase_flops(kind, cfg, shapes, phase, batch, enc, dec if kind == "encoder_decoder" else 0,
                               head, loop.teacher_shapes(teacher[0]) if teacher else None)
    return counted, measured


@pytest.mark.parametrize("case,family,kind,overrides,pick", CASES, ids=[c[0] for c in CASES])
def test_ledger_equals_the_jaxpr_of_the_step(case, family, kind, overrides, pick):
    cfg = _cfg(family, **overrides)
    phase = pick(models.param_shapes(models.build(kind, cfg)))
    counted, measured = measure(kind, cfg, phase)
    print(f"\n{case}: ledger {counted / 1e6:.3f} MFLOP, jaxpr {measured / 1e6:.3f} MFLOP")
    np.testing.assert_allclose(counted, measured, rtol=0.01, err_msg=case)


def test_ledger_equals_the_jaxpr_with_gradient_accumulation():
    """Micro-batches run in a lax.scan: the jaxpr counts its body `grad_accum` times."""
    cfg = _cfg("t5")
    phase = _phase("frozen", freeze=freezing.ENCODER_SIDE, unfreeze_step=10)(
        models.param_shapes(models.build("encoder_decoder", cfg)))
    counted, measured = measure("encoder_decoder", cfg, phase, batch=16, grad_accum=2)
    np.testing.assert_allclose(counted, measured, rtol=0.01)


@pytest.mark.parametrize("family,chunk", [("t5", 0), ("bert", 0), ("t5", 5)])
def test_ledger_equals_the_jaxpr_of_the_masked_encoder_variant(family, chunk):
    """seq2seq denoising + encoder MLM: the encoder's MLM head runs on the masked positions only."""
    cfg = _cfg(family, loss_chunk=chunk)
    shapes = models.param_shapes(models.EncoderDecoder(cfg, encoder_mlm_head=True))
    counted, measured = measure("encoder_decoder", cfg, _phase("full")(shapes), encoder_mlm_weight=1.0)
    np.testing.assert_allclose(counted, measured, rtol=0.01)


# Small-model assistance: the teacher (a narrower/shallower model, same vocabulary) runs forward
# only on each micro-batch; (family, kind, teacher overrides, grad_accum)
DISTILL_CASES = [
    ("bert", "encoder_mlm", {"d_model": 16, "num_heads": 1, "d_ff": 32}, 1),
    ("t5", "encoder_mlm", {"num_encoder_layers": 1}, 1),
    ("t5", "encoder_decoder", {"d_model": 16, "num_heads": 1, "num_decoder_layers": 1}, 1),
    ("bert", "encoder_mlm", {"d_model": 16, "num_heads": 1, "d_ff": 32}, 2),
]


@pytest.mark.parametrize("family,kind,teacher,grad_accum", DISTILL_CASES,
                         ids=[f"{c[0]}_{c[1]}_accum{c[3]}" for c in DISTILL_CASES])
def test_ledger_equals_the_jaxpr_of_a_distill_phase(family, kind, teacher, grad_accum):
    cfg, t_cfg = _cfg(family), _cfg(family, **teacher)
    shapes = models.param_shapes(models.build(kind, cfg))
    phase = _phase("distill", distill_steps=10)(shapes)
    counted, measured = measure(kind, cfg, phase, batch=BATCH * grad_accum, grad_accum=grad_accum,
                                teacher_cfg=t_cfg)
    np.testing.assert_allclose(counted, measured, rtol=0.01)
    # The teacher adds exactly its forward pass (no backward: it gets no gradient).
    _, plain = measure(kind, cfg, _phase("full")(shapes), batch=BATCH * grad_accum, grad_accum=grad_accum)
    dec = DEC if kind == "encoder_decoder" else 0
    head = data.synthetic("train", 1, 0, (0, 1), objective="mlm", vocab_size=cfg.vocab_size, length=ENC)
    head = next(head)["mlm_positions"].shape[1] if kind == "encoder_mlm" else None
    t_shapes = models.param_shapes(models.build(kind, t_cfg))
    teacher_forward = perf.forward_flops(kind, t_cfg, t_shapes, BATCH * grad_accum, ENC, dec, head)
    assert teacher_forward > 0
    np.testing.assert_allclose(measured - plain, teacher_forward, rtol=1e-6)


def test_walker_multiplies_scan_bodies_and_counts_dot_general():
    def f(x, w):
        def body(c, wi):
            return c @ wi, None
        return jax.lax.scan(body, x, w)[0]
    x, w = jax.ShapeDtypeStruct((4, 8), np.float32), jax.ShapeDtypeStruct((3, 8, 8), np.float32)
    assert jaxpr_flops.traced_flops(f, x, w) == 3 * 2 * 4 * 8 * 8
    grad = jax.grad(lambda x, w: f(x, w).sum(), argnums=(0, 1))
    assert jaxpr_flops.traced_flops(grad, x, w) == 3 * 3 * 2 * 4 * 8 * 8  # forward, dx, dw


def test_bench_phases_builds_every_phase_of_a_gin_run():
    from seqpt_jax.bench import phases as bench
    tiny = ["models.preset.vocab_size = 101", "models.preset.d_model = 32", "models.preset.num_heads = 2", "models.preset.head_dim = 16",
            "models.preset.d_ff = 64", "models.preset.num_encoder_layers = 4", "models.preset.max_length = 32",
            "BATCH_SIZE = 8", "INPUT_LENGTH = 16", "BLOCK = 2"]
    built = bench.build(["models/bert_tiny.gin", "runs/grow_two_stage.gin", "hw/cpu.gin"], tiny)
    assert [r["phase"] for r in built["rows"]] == ["stage1/sub1", "stage1/sub2", "full"]
    for r in built["rows"]:
        np.testing.assert_allclose(r["counted"], r["jaxpr"], rtol=0.01, err_msg=r["phase"])
    results = bench.measure(built, rounds=1, steps=1)
    assert results[-1]["ratio"] == 1.0 and all(r["ms_per_step"] > 0 for r in results)
    assert "stage1/sub2" in bench.report(built, results)


def test_walker_counts_cudnn_fused_attention_as_the_matmuls_it_replaces():
    """On a GPU the attention is one custom call (not traceable here without cuDNN): forward =
    scores + weighted sum, backward = dQ, dK, dP, dV, as the ledger's `attention` counts."""
    from types import SimpleNamespace as NS
    b, t, s, n, h = 2, 8, 6, 3, 16
    q, k = NS(aval=NS(shape=(b, t, n, h))), NS(aval=NS(shape=(b, s, n, h)))
    for name, matmuls in (("dot_product_attention_fwd_wrapper", 2), ("dot_product_attention_bwd_wrapper", 4)):
        eqn = NS(primitive=NS(name=name), invars=[q, k, k], params={})
        assert jaxpr_flops.jaxpr_flops(NS(eqns=[eqn])) == matmuls * 2 * b * n * t * s * h
