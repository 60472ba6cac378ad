"""One launcher: gin files + bindings -> a finished run. `seqpt train`, every experiment arm,
`seqpt bench` and the tests start runs here, so every run directory has the same layout
(`train.run_dir.LAYOUT`: config.gin, run.json, vocab.json, model.json, summary.json, ...).

    config = launcher.configure(files, bindings)   # parsed; the TrainConfig gin binds loop.train to
    summary = launcher.launch(config)              # trained, with the records written

`configure` alone is what a plan, a benchmark or an init evaluation needs (`loop.setup(config)`).
"""

from __future__ import annotations

import dataclasses
import os

from seqpt_jax import gin_config
from seqpt_jax.train import loop, run_dir
from seqpt_jax.train.config import TrainConfig


def maybe_initialize_distributed() -> None:
    """`jax.distributed.initialize()` when the environment describes several processes.

    JAX_COORDINATOR_ADDRESS (+ JAX_NUM_PROCESSES, JAX_PROCESS_ID) for GPU clusters and local
    tests; a multi-worker Cloud TPU slice (TPU_WORKER_HOSTNAMES) is detected by jax itself.
    """
    import jax
    env = os.environ
    if env.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(env["JAX_COORDINATOR_ADDRESS"], int(env["JAX_NUM_PROCESSES"]),
                                   int(env["JAX_PROCESS_ID"]))
    elif len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1 \
            or int(env.get("SLURM_NTASKS", "1")) > 1 or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        jax.distributed.initialize()


def configure(files: list[str], bindings: list[str] = (), *, search: list[str] = (), optional: list[str] = (),
              distributed: bool = False, **overrides) -> TrainConfig:
    """Parses the gin files + bindings (`gin_config.parse`) and returns the run's config.
    distributed: join a multi-process job first (`seqpt train`). overrides: loop.train
    arguments set by code (on_step, progress, ...), which win over the gin files'."""
    gin_config.parse(files, bindings, search, optional)
    if distributed:
        maybe_initialize_distributed()
    return gin_config.train_config(**overrides)


def launch(config: TrainConfig) -> dict:
    """Runs `config` (parsed by `configure`, whose gin config must still be the parsed one) and
    writes the records the trainer does not: config.gin and vocab.json, when the state is ready
    (so a refused vocabulary stops the run before its first step) and again at the end."""
    model_dir = run_dir.resolve(config.model_dir)

    def write_records():
        import jax

        from seqpt_jax.convert.run_records import init_source, parse_operative_config
        from seqpt_jax.data import vocab_record
        operative = gin_config.operative_config()
        # Records VOCAB; refuses one that differs from a resumed run's or its init source's.
        vocab_record.record(model_dir, gin_config.macro("VOCAB", None), write=jax.process_index() == 0,
                            source=init_source(parse_operative_config(operative)))
        if jax.process_index() == 0:
            run_dir.write_config(model_dir, operative)

    own = config.hooks.on_ready

    def on_ready():
        write_records()
        if own is not None:
            own()

    with gin_config.one_line_errors():  # e.g. a REQUIRED VOCAB, read when the data source is made
        summary = loop.run(dataclasses.replace(config, hooks=dataclasses.replace(config.hooks, on_ready=on_ready)))
    write_records()
    return summary


def train(files: list[str], bindings: list[str] = (), **kwargs) -> dict:
    """`configure` then `launch`: the summary of the finished (or stopped) run."""
    return launch(configure(files, bindings, **kwargs))
