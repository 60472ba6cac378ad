"""The model card's lineage is read from run records: config.gin, summary.json, TensorBoard events."""

import json

from seqpt_jax import models
from seqpt_jax.convert import card, run_records
from seqpt_jax.train.events import EventFile

# The operative config `seqpt train` writes for runs/grow_two_stage.gin (trimmed), in gin's format.
GROWN_CONFIG = """from __gin__ import dynamic_registration
from seqpt_jax.mappings import init_hooks

# Macros:
# ==============================================================================
BLOCK = 2
GROW_METHOD = 'aki'
SMALL_CHECKPOINT = '{src}'
VOCAB = '/v/spm.model'

# Parameters for init_hooks.grown_from:
# ==============================================================================
init_hooks.grown_from.method = %GROW_METHOD
init_hooks.grown_from.path = %SMALL_CHECKPOINT
init_hooks.grown_from.unit_map = 'random'

# Parameters for loop.train:
# ==============================================================================
loop.train.data = @data.mixture_or_task
loop.train.freeze = ()
loop.train.init = @init_hooks.grown_from()
loop.train.two_stage = @loop.TwoStage()
loop.train.unfreeze_step = 0
data.mixture_or_task.name = 'seqpt_local_mlm'
data.mixture_or_task.corpus_dir = '{corpus}'
optimizers.OptimizerConfig.decay_exclude = \\
    ('bias$', 'scale$')

# Parameters for loop.TwoStage:
# ==============================================================================
loop.TwoStage.block = %BLOCK
loop.TwoStage.steps = 30
"""


def _run(path, summary, config=None, eval_losses=()):
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "model.json").write_text(json.dumps({"kind": summary["kind"]}))
    if config is not None:
        (path / "config.gin").write_text(config)
    events = EventFile(str(path / "tb"))
    for step, loss in eval_losses:
        events.scalars(step, {"eval/loss": loss, "train/loss": 9.0})
    events.close()
    return path


def test_grown_run_lineage_and_card(tmp_path):
    (tmp_path / "corpus" / "text").mkdir(parents=True)
    for lang in ("en", "el"):
        (tmp_path / "corpus" / "text" / f"{lang}.train.jsonl").write_text('{"text": "x"}\n')
    small = _run(tmp_path / "small", {"kind": "encoder_mlm", "steps": 10, "tokens": 1000, "train_flops": 2.5e12},
                 "VOCAB = '/v/spm.model'\nloop.train.init = None\n", [(10, 5.25)])
    big = _run(tmp_path / "big", {"kind": "encoder_mlm", "steps": 20, "tokens": 3000, "train_flops": 7.5e12,
                                  "flops_by_phase": {"stage_1": 1e12, "full": 6.5e12}},
               GROWN_CONFIG.format(src=small, corpus=tmp_path / "corpus"), [(10, 4.5), (20, 3.125)])
    stages = run_records.lineage(str(big))
    assert [s.path for s in stages] == [str(small), str(big)]
    grown = stages[1]
    assert (grown.init, grown.source, grown.init_details) == ("grown from", str(small), "method aki, unit map random")
    assert run_records.init_source(run_records.parse_operative_config((big / "config.gin").read_text())) == str(small)
    assert grown.eval_loss == (20, 3.125) and grown.languages == ["el", "en"]
    assert "30 steps on sub-models of the bottom i x 2 layers" in grown.stages
    cfg = models.preset("bert-tiny", vocab_size=400)
    text = card.render(str(big), "encoder_mlm", cfg, "BertForMaskedLM", 123, None)
    assert f"grown from `{small}` (method aki, unit map random)" in text
    assert "Training FLOPs (cumulative, with its sources) | 1.000e+13" in text
    assert "Tokens seen (with its sources) | 4,000" in text and "Validation loss | 3.1250 (step 20)" in text
    assert "validation loss 5.2500 at step 10" in text and "- el" in text


def test_missing_source_is_stated_not_guessed(tmp_path):
    run = _run(tmp_path / "s2s", {"kind": "encoder_decoder", "steps": 5, "tokens": 50, "train_flops": 1e9},
               "ENCODER_CHECKPOINT = '/gone/mlm'\nloop.train.init = @init_hooks.warmstart_from()\n"
               "init_hooks.warmstart_from.path = %ENCODER_CHECKPOINT\nloop.train.freeze = ['^encoder/']\n"
               "loop.train.unfreeze_step = 100\n")
    stages = run_records.lineage(str(run))
    assert stages[0].missing and stages[0].path == "/gone/mlm"
    assert stages[1].frozen == "^encoder/ frozen for the first 100 steps"
    text = card.render(str(run), "encoder_decoder", models.preset("t5-tiny", vocab_size=400),
                       "T5ForConditionalGeneration", 1, None)
    assert "Training FLOPs (cumulative, with its sources) | unknown" in text
    assert "Training FLOPs (this run) | 1.000e+09" in text and "no longer on disk" in text
