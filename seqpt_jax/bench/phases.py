"""`seqpt bench phases`: does each phase of a run cost what the ledger counts?

It builds a run's phases from the same gin files `seqpt train` reads (bert2BERT sub-models,
frozen warm start, distillation from a teacher, full model), compiles each phase's real train
step, and prints per phase: the ledger's GFLOP per step (`perf.train_flops`, what the run
books), the dot_general GFLOP of the step's own jaxpr (`train.jaxpr_flops`), the measured ms per
step, and (time ratio to the full phase) / (FLOPs ratio to the full phase): near 1 when every
phase's time follows its counted FLOPs. Phases are timed alternately, round after round, after
compiling, on synthetic batches; the state starts from a fresh init (no checkpoint is read
but a distillation teacher's, e.g. --gin.TEACHER_CHECKPOINT=DIR: its forward pass is timed).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time

# Placeholders for what a timing run never reads, this project's vocabulary size (8k pieces +
# sentinels) and a small batch so it takes minutes on a CPU; the sequence lengths are the run's.
# Every one can be overridden with --gin.X=... .
DEFAULTS = ["VOCAB = 'unused'", "ENCODER_CHECKPOINT = 'unused'", "SMALL_CHECKPOINT = 'unused'",
            "SEQ2SEQ_CHECKPOINT = 'unused'", "models.preset.vocab_size = 8192", "BATCH_SIZE = 8"]


def build(files: list[str], bindings: list[str]) -> dict:
    """The run's phases with their compiled steps, counted and jaxpr FLOPs, a state and a batch:
    the trainer's own set-up (`loop.setup`) of the gin config, on synthetic batches."""
    import gin

    from seqpt_jax import gin_config, launcher
    with tempfile.TemporaryDirectory(prefix="seqpt-bench-") as tmp:
        defined = gin_config.macros_defined_by(files)  # placeholders only for these
        defaults = [d for d in DEFAULTS if "." in d.split("=")[0] or d.split("=")[0].strip() in defined]
        try:
            config = launcher.configure(files, [f"MODEL_DIR = {tmp!r}", *defaults, *bindings])
            lengths = gin_config.value("data.mixture_or_task.task_feature_lengths", {})
        finally:
            gin.clear_config()
    return from_config(config, lengths)


def from_config(config, lengths: dict, phases=None) -> dict:
    """`build`'s result for a training config already made (the experiment's `--plan --measure`
    passes each arm's): `phases` (names) limits which phases are compiled (default all)."""
    import jax

    from seqpt_jax.errors import UserError
    from seqpt_jax.train import data as data_lib, jaxpr_flops, loop
    # A fresh init: timing reads no checkpoint (but a distillation teacher's).
    trainer = loop.setup(dataclasses.replace(config, recipe=dataclasses.replace(config.recipe, init=None)))
    kind, cfg, batch = trainer.kind, trainer.cfg, config.schedule.batch_size
    if batch % trainer.mesh.size:
        raise UserError(f"batch size {batch} must divide by the {trainer.mesh.size} devices; set --gin.BATCH_SIZE.")
    state = trainer.new_state()
    enc = lengths.get("inputs", 64)
    dec = lengths.get("targets", 16) if kind == "encoder_decoder" else 0
    objective = ("seq2seq_masked" if config.recipe.encoder_mlm_weight else "seq2seq") if dec else "mlm"
    source = data_lib.synthetic("train", batch, 0, (0, 1), objective=objective, vocab_size=cfg.vocab_size,
                                length=enc, target_length=max(dec, 1))
    example = data_lib.to_global(next(source), trainer.mesh)
    rows = []
    for phase in trainer.phases:
        if phases is not None and phase.name not in phases:
            continue
        fn = trainer.step_fn(phase)
        rows.append({"phase": phase.name, "fn": fn, "counted": trainer.batch_flops(phase, example),
                     "jaxpr": jaxpr_flops.jaxpr_flops(fn.trace(state, example))})
    return {"rows": rows, "state": state, "batch": example, "kind": kind, "cfg": cfg, "trainer": trainer,
            "sizes": (batch, enc, dec), "devices": jax.device_count()}


def measure(built: dict, rounds: int = 5, steps: int = 3) -> list[dict]:
    """ms per step of every phase: after one compile call each, `rounds` rounds in which every
    phase runs `steps` steps (order rotated each round); the median over rounds."""
    import jax
    state, batch, rows = built["state"], built["batch"], built["rows"]
    for row in rows:  # compile
        state, metrics = row["fn"](state, batch)
        jax.block_until_ready(metrics)
        row["times"] = []
    for r in range(rounds):
        for row in rows[r % len(rows):] + rows[:r % len(rows)]:
            t = time.perf_counter()
            for _ in range(steps):
                state, metrics = row["fn"](state, batch)
            jax.block_until_ready((state, metrics))
            row["times"].append((time.perf_counter() - t) / steps)
    full = next(r for r in rows if r["phase"] == "full")
    t_full = statistics.median(full["times"])
    out = []
    for row in rows:
        ms = statistics.median(row["times"])
        out.append({"phase": row["phase"], "counted_gflop": row["counted"] / 1e9,
                    "jaxpr_gflop": row["jaxpr"] / 1e9, "ms_per_step": 1e3 * ms,
                    "ratio": (ms / t_full) / (row["counted"] / full["counted"])})
    return out


def report(built: dict, results: list[dict]) -> str:
    batch, enc, dec = built["sizes"]
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    head = (f"{built['kind']} d_model={built['cfg'].d_model} layers={built['cfg'].num_encoder_layers}"
            f"{'+' + str(built['cfg'].num_decoder_layers) if dec else ''}, batch {batch} x {enc}"
            f"{' -> ' + str(dec) if dec else ''}, {built['devices']} device(s); "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    rows = [head, f"{'phase':<14} {'counted GFLOP':>13} {'jaxpr GFLOP':>12} {'ms/step':>9} "
                  f"{'(t/t_full)/(F/F_full)':>22}"]
    for r in results:
        rows.append(f"{r['phase']:<14} {r['counted_gflop']:>13.4f} {r['jaxpr_gflop']:>12.4f} "
                    f"{r['ms_per_step']:>9.1f} {r['ratio']:>22.3f}")
    return "\n".join(rows)


def main_phases(files: list[str], bindings: list[str], rounds: int, steps: int) -> int:
    built = build(files, bindings)
    print(report(built, measure(built, rounds, steps)))
    return 0
