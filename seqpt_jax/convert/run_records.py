"""What a training MODEL_DIR says about itself: the operative config (`config.gin`), the run
summary (`summary.json`: steps, tokens, FLOPs), the validation loss (TensorBoard events) and,
through the init hook in its config, the run it started from. The model card is built from
these records only, so it states what was done, not what someone remembers.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os

# Init hooks (mappings/init_hooks.py, train/state.py) -> how the lineage reads.
_INIT_HOOKS = {
    "init_hooks.warmstart_from": "encoder warm-started from",
    "init_hooks.grown_from": "grown from",
    "init_hooks.extracted_from": "encoder extracted from",
    "state.from_param_checkpoint": "initialised from",
}


def parse_operative_config(text: str) -> dict[str, object]:
    """{"MACRO" or "scope/configurable.param": value} of a gin operative config, macros resolved.

    Values that are Python literals are parsed; references (`@x()`) stay strings."""
    lines, joined = [], ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            joined += line[:-1].strip() + " "
            continue
        lines.append(joined + line.strip())
        joined = ""
    raw_values = {}
    for line in lines:
        if not line or line.startswith(("#", "from ", "import ")) or " = " not in line:
            continue
        name, value = line.split(" = ", 1)
        raw_values[name.strip()] = value.strip()

    def value_of(text: str, depth: int = 0):
        if text.startswith("%") and depth < 8:
            return value_of(raw_values.get(text[1:], "None"), depth + 1)
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    return {name: value_of(v) for name, v in raw_values.items()}


def init_source(config: dict) -> str | None:
    """The checkpoint a run's init hook starts from (warm start, growth, extraction), or None."""
    hook = config.get("loop.train.init")
    if not isinstance(hook, str):
        return None
    path = config.get(f"{hook.lstrip('@').rstrip('()')}.path")
    return path if isinstance(path, str) else None


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def eval_losses(model_dir: str) -> dict[int, float]:
    """{step: validation loss} from the run's TensorBoard events (eval/loss)."""
    from seqpt_jax.train import events
    return events.scalars(os.path.join(model_dir, "tb")).get("eval/loss", {})


@dataclasses.dataclass
class Stage:
    """One model in a lineage: a training run (with records) or a checkpoint (without)."""

    path: str
    is_run: bool
    missing: bool = False                          # the directory is gone
    kind: str | None = None
    steps: int | None = None
    tokens: int | None = None
    flops: float | None = None
    flops_by_phase: dict = dataclasses.field(default_factory=dict)
    eval_loss: tuple[int, float] | None = None     # (step, loss) of the last evaluation
    objective: str | None = None                   # the data mixture / task trained on
    corpus: str | None = None
    languages: list[str] = dataclasses.field(default_factory=list)
    vocab: str | None = None
    init: str | None = None                        # how it started, e.g. "grown from"
    init_details: str = ""                         # e.g. "method aki, unit map random"
    source: str | None = None                      # the path it started from
    frozen: str = ""                               # e.g. "encoder frozen for the first 1000 steps"
    stages: str = ""                               # bert2BERT two-stage training


def _languages(corpus: str | None) -> list[str]:
    if not corpus or not os.path.isdir(corpus):
        return []
    from seqpt_jax.data import records
    try:
        return records.languages(corpus)
    except Exception:  # noqa: BLE001 - a corpus we cannot read just has no language list
        return []


def read_stage(path: str) -> Stage:
    """The records of the run (or checkpoint) at `path`."""
    path = os.path.abspath(path)
    summary = _read_json(os.path.join(path, "summary.json"))
    config_file = os.path.join(path, "config.gin")
    if not summary and not os.path.isfile(config_file):
        return Stage(path, is_run=False, kind=_read_json(os.path.join(path, "model.json")).get("kind"))
    gin = parse_operative_config(open(config_file).read()) if os.path.isfile(config_file) else {}
    losses = eval_losses(path)
    stage = Stage(path, is_run=True, kind=summary.get("kind"), steps=summary.get("steps"),
                  tokens=summary.get("tokens"), flops=summary.get("train_flops"),
                  flops_by_phase=dict(summary.get("flops_by_phase") or {}),
                  eval_loss=(max(losses), losses[max(losses)]) if losses else None)
    stage.objective = gin.get("data.mixture_or_task.name") or gin.get("MIXTURE_OR_TASK_NAME")
    if isinstance(gin.get("loop.train.data"), str) and "synthetic" in gin["loop.train.data"]:
        stage.objective = f"synthetic {gin.get('data.synthetic.objective', 'mlm')} batches"
    if stage.objective and "synthetic" not in stage.objective:
        from seqpt_jax.paths import corpus_dir
        stage.corpus = str(gin.get("data.mixture_or_task.corpus_dir") or gin.get("CORPUS_DIR") or corpus_dir())
        stage.languages = _languages(stage.corpus)
    stage.vocab = gin.get("VOCAB") if isinstance(gin.get("VOCAB"), str) else None
    hook = gin.get("loop.train.init")
    if isinstance(hook, str):
        name = hook.lstrip("@").rstrip("()")
        stage.init = _INIT_HOOKS.get(name, f"initialised by {name} from")
        stage.source = init_source(gin)
        if name == "init_hooks.grown_from":
            stage.init_details = ", ".join(f"{k.replace('_', ' ')} {gin[f'{name}.{k}']}" for k in
                                           ("method", "unit_map", "depth") if f"{name}.{k}" in gin)
        elif name == "init_hooks.warmstart_from" and f"{name}.decoder_init" in gin:
            stage.init_details = f"decoder initialised: {gin[f'{name}.decoder_init']}"
    freeze, until = gin.get("loop.train.freeze") or (), gin.get("loop.train.unfreeze_step") or 0
    if freeze and until:
        from seqpt_jax.train import freezing
        named = {tuple(freezing.encoder_side(False)): "the encoder side (encoder and embeddings)",
                 tuple(freezing.encoder_side(True)): "the encoder side (shared token embedding trainable)"}
        if isinstance(freeze, str) and "encoder_side" in freeze:  # @freezing.encoder_side()
            shared = bool(gin.get("freezing.encoder_side.shared_token_embedding_trainable"))
            freeze = freezing.encoder_side(shared)
        what = named.get(tuple(freeze), ", ".join(map(str, freeze)))
        stage.frozen = f"{what} frozen for the first {until} steps"
    block, steps = gin.get("loop.TwoStage.block"), gin.get("loop.TwoStage.steps")
    if block and steps:
        stage.stages = (f"bert2BERT two-stage training: {steps} steps on sub-models of the bottom i x {block} "
                        f"layers drawn uniformly (the top {block} trained), then the full model")
    return stage


def lineage(path: str, limit: int = 16) -> list[Stage]:
    """The stages that led to `path`, oldest first (sources are followed while their records exist)."""
    out, seen = [], set()
    while path and len(out) < limit and os.path.abspath(path) not in seen:
        seen.add(os.path.abspath(path))
        if not os.path.isdir(path):
            out.append(Stage(os.path.abspath(path), is_run=False, missing=True))
            break
        stage = read_stage(path)
        out.append(stage)
        path = stage.source
    return out[::-1]
