"""`seqpt bench train|freeze`: the trainer's own steady-state speed for a gin config.

It runs the real trainer (`launcher`, as `seqpt train` does) for a few steps in a temporary
MODEL_DIR (no eval, one save at the end, outside the timing) and prints, per phase, tokens/s, step time, TFLOP/s per device
and MFU with the peak it divides by. `freeze` times one seq2seq run whose first half has the
encoder and the shared embeddings frozen (stop-gradient) and whose second half is unfrozen,
so both step costs come from one process on the same hardware.
"""

from __future__ import annotations

import tempfile

FREEZE_FILES = ["models/t5_tiny.gin", "runs/pretrain_span.gin", "hw/cpu.gin"]
FREEZE_BINDINGS = ["VOCAB = 'unused'", "loop.train.data = @data.synthetic",
                   "data.synthetic.objective = 'seq2seq'", "data.synthetic.length = 128",
                   "data.synthetic.target_length = 32", "models.preset.vocab_size = 32128",
                   "BATCH_SIZE = 16", "loop.train.freeze = ('^encoder/', '^token_embedder/')"]


def run(files: list[str], bindings: list[str], steps: int, unfreeze_step: int | None = None) -> dict:
    """The train summary of a short timed run of the gin config (see the module docstring)."""
    from seqpt_jax import launcher
    with tempfile.TemporaryDirectory(prefix="seqpt-bench-") as tmp:
        extra = [f"MODEL_DIR = {tmp!r}", f"loop.train.model_dir = {tmp!r}", f"loop.train.steps = {steps}",
                 "loop.train.eval_every = 0", f"loop.train.save_every = {10 ** 9}",
                 f"loop.train.log_every = {steps}", "loop.train.progress = False"]
        if unfreeze_step is not None:
            extra.append(f"loop.train.unfreeze_step = {unfreeze_step}")
        return launcher.train(files, bindings + extra)


def report(summary: dict) -> str:
    rows = [f"peak: {summary['peak']}",
            f"{'phase':<8} {'steps':>5} {'step ms':>9} {'tokens/s':>11} {'TFLOP/s/dev':>12} {'MFU':>7}"]
    for name, t in summary["throughput"].items():
        rows.append(f"{name:<8} {t['steps_timed']:>5} {1e3 * t['step_time']:>9.1f} {t['tokens_per_s']:>11,.0f} "
                    f"{t['tflops_per_device']:>12.4f} {100 * t['mfu']:>6.2f}%")
    return "\n".join(rows)


def freeze_comparison(steps: int = 20, files=None, bindings=None) -> dict:
    """Frozen vs unfrozen step of a seq2seq model in one run; returns the summary."""
    return run(files or FREEZE_FILES, [*FREEZE_BINDINGS, *(bindings or [])], steps, unfreeze_step=steps // 2)
