"""The model card (README.md) of an exported model, written from the run's own records
(`run_records.lineage`): recipe lineage, corpus and languages, tokens, training FLOPs and
validation loss. A figure the records do not hold is stated as unknown, never guessed."""

from __future__ import annotations

import os

from seqpt_jax.convert.run_records import Stage, lineage

_PIPELINE = {"encoder_mlm": "fill-mask", "encoder_decoder": "text2text-generation",
             "encoder": "feature-extraction"}
_AUTO = {"encoder_mlm": "AutoModelForMaskedLM", "encoder_decoder": "AutoModelForSeq2SeqLM",
         "encoder": "T5EncoderModel"}


def _num(x, unit: str = "") -> str:
    return "unknown" if x is None else f"{x:,.0f}{unit}" if isinstance(x, int) else f"{x:.3e}{unit}"


def _loss(at) -> str:
    return f"{at[1]:.4f} (step {at[0]})" if at else "unknown"


def _how(stage: Stage) -> str:
    if stage.missing:
        return f"`{stage.path}` (no longer on disk: its records are not included)"
    if not stage.is_run:
        return f"checkpoint `{stage.path}` ({stage.kind or 'unknown kind'}; no training records)"
    what = {"encoder_mlm": "MLM", "encoder_decoder": "seq2seq", "encoder": "encoder"}.get(stage.kind, stage.kind)
    start = (f"{stage.init} `{stage.source}`" + (f" ({stage.init_details})" if stage.init_details else "")
             if stage.init else "from scratch")
    parts = [f"run `{stage.path}`: {what} pre-training {start}"]
    parts += [p for p in (stage.frozen, stage.stages) if p]
    parts.append(f"{_num(stage.steps)} steps, {_num(stage.tokens)} tokens, {_num(stage.flops)} training FLOPs")
    if stage.eval_loss:
        parts.append(f"validation loss {stage.eval_loss[1]:.4f} at step {stage.eval_loss[0]}")
    return "; ".join(parts)


def _total(stages: list[Stage], field: str):
    """The sum over the lineage, or None when a stage's figure is unknown (a source without records)."""
    values = [getattr(s, field) for s in stages]
    return None if any(v is None for v in values) else sum(values)


def render(source: str, kind: str, cfg, arch: str, n_params: int, vocab_path: str | None) -> str:
    """The card's markdown for the model exported from `source` (a MODEL_DIR or a checkpoint)."""
    stages = lineage(source)
    last = stages[-1]
    langs = sorted({lang for s in stages for lang in s.languages})
    corpora = sorted({s.corpus for s in stages if s.corpus})
    objective = ", ".join(dict.fromkeys(s.objective for s in stages if s.objective)) or "unknown"
    front = ["---", "library_name: transformers", f"pipeline_tag: {_PIPELINE[kind]}",
             "tags:", "- seqpt_jax", f"- {cfg.family}"]
    if langs:
        front += ["language:"] + [f"- {lang}" for lang in langs]
    front.append("---")
    auto = _AUTO[kind]
    lines = [
        *front, "",
        f"# {os.path.basename(os.path.abspath(source))}", "",
        f"A {cfg.family}-family {arch} ({n_params:,} parameters: {cfg.num_encoder_layers} encoder"
        + (f" + {cfg.num_decoder_layers} decoder" if kind == "encoder_decoder" else "")
        + f" layers, d_model {cfg.d_model}, {cfg.num_heads} heads, vocabulary {cfg.vocab_size:,}) pre-trained "
          f"with seqpt_jax and exported from `{os.path.abspath(source)}`.", "",
        "```python",
        f"from transformers import AutoTokenizer, {auto}",
        'tokenizer = AutoTokenizer.from_pretrained("THIS_DIR")',
        f'model = {auto}.from_pretrained("THIS_DIR")',
        "```", "",
        "## Training", "",
        "| | |", "|---|---|",
        f"| Objective | {objective} |",
        f"| Corpus | {', '.join(f'`{c}`' for c in corpora) or 'unknown'} |",
        f"| Languages | {', '.join(langs) or 'unknown'} |",
        f"| Vocabulary | {'`' + vocab_path + '`' if vocab_path else 'not included'} |",
        f"| Tokens seen (this run) | {_num(last.tokens)} |",
        f"| Tokens seen (with its sources) | {_num(_total(stages, 'tokens'))} |",
        f"| Training FLOPs (this run) | {_num(last.flops)} |",
        f"| Training FLOPs (cumulative, with its sources) | {_num(_total(stages, 'flops'))} |",
        f"| Validation loss | {_loss(last.eval_loss)} |",
    ]
    if last.flops_by_phase and len(last.flops_by_phase) > 1:
        lines.append("| FLOPs by phase | " + ", ".join(f"{k}: {v:.3e}" for k, v in last.flops_by_phase.items()) + " |")
    lines += ["", "## Lineage", "", *[f"{i + 1}. {_how(s)}" for i, s in enumerate(stages)], ""]
    if vocab_path:
        from seqpt_jax.convert.tokenizer import describe
        lines += ["## Tokenizer", "", describe(vocab_path, kind), ""]
    return "\n".join(lines)
