"""`seqpt train --gin_file=... [--gin_file=...] --gin.MODEL_DIR=... [--gin.X=...]` (T5X style).

Gin files compose in the order given (models/, runs/, hw/; later bindings win), then the
`--gin.X=V` bindings. Files are looked up as given, then under the package's gin/ folder
(seqpt_jax/gin), so `--gin_file=runs/pretrain_mlm.gin` works from anywhere. String values may
be given bare: `--gin.MODEL_DIR=/tmp/run` means `MODEL_DIR = '/tmp/run'`. The run is `train.loop.train`
called through gin; the operative config is written to MODEL_DIR/config.gin.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys

from seqpt_jax.errors import UserError

# The gin files ship inside the package (seqpt_jax/gin), so an installed `seqpt` finds them.
GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gin")


# `--gin.X` bindings see the same short module names as the gin files.
BINDING_IMPORTS = [
    "from __gin__ import dynamic_registration",
    "from seqpt_jax import models",
    "from seqpt_jax.train import data",
    "from seqpt_jax.train import loop",
    "from seqpt_jax.train import optimizers",
    "from seqpt_jax.train import state",
]


def split_gin_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(other args, gin binding strings) from `--gin.X=V` / `--gin.X V` arguments."""
    rest, bindings, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--gin.") and arg != "--gin.":
            if "=" in arg:
                name, value = arg[len("--gin."):].split("=", 1)
            elif i + 1 < len(argv):
                name, value, i = arg[len("--gin."):], argv[i + 1], i + 1
            else:
                raise UserError(f"{arg} has no value; write {arg}=VALUE.")
            bindings.append(f"{name} = {_gin_value(value)}")
        else:
            rest.append(arg)
        i += 1
    return rest, bindings


def _gin_value(value: str) -> str:
    """Gin literals, references and macros pass through; anything else becomes a string."""
    if value.startswith(("@", "%")) or value in ("True", "False", "None"):
        return value
    try:
        ast.literal_eval(value)
        return value
    except (ValueError, SyntaxError):
        return repr(value)


def resolve_gin_file(path: str, search: list[str]) -> str:
    for base in ["", *search]:
        candidate = os.path.join(base, path) if base else path
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise UserError(f"gin file {path!r} not found (looked here and under {', '.join(search)}); "
                    f"see `ls {GIN_DIR}/models {GIN_DIR}/runs {GIN_DIR}/hw`.")


def _one_line(e: Exception) -> str:
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    where = next((s for s in lines[1:] if s.startswith(("In ", "File "))), "")
    return f"{lines[0] if lines else type(e).__name__}" + (f" ({where})" if where else "")


def parse_gin(files: list[str], bindings: list[str], search: list[str]) -> None:
    """Parses gin files + bindings; any gin mistake becomes a one-line UserError."""
    import gin
    gin.clear_config()
    for path in search:
        gin.add_config_file_search_path(path)
    resolved = [resolve_gin_file(f, search) for f in files]
    try:
        gin.parse_config_files_and_bindings(resolved, [*BINDING_IMPORTS, *bindings], finalize_config=True)
    except Exception as e:  # noqa: BLE001 - gin raises ValueError, SyntaxError, KeyError, ...
        raise UserError(f"bad gin config: {_one_line(e)}") from None


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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="seqpt train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="--gin.NAME=VALUE  any gin binding, e.g. --gin.MODEL_DIR=/tmp/run "
                                            "--gin.TRAIN_STEPS=200")
    parser.add_argument("--gin_file", action="append", default=[],
                        help="gin file (repeatable; models/, runs/, hw/ compose)")
    parser.add_argument("--gin_search_path", action="append", default=[],
                        help="extra folder to look up gin files and includes in")
    rest, bindings = split_gin_args(argv)
    args = parser.parse_args(rest)
    if not args.gin_file:
        raise UserError("no --gin_file given; e.g. --gin_file=models/bert_tiny.gin "
                        "--gin_file=runs/pretrain_mlm.gin --gin_file=hw/cpu.gin --gin.MODEL_DIR=/tmp/run")
    search = [*args.gin_search_path, GIN_DIR]
    parse_gin(args.gin_file, bindings, search)
    maybe_initialize_distributed()
    import gin
    from seqpt_jax.train import loop

    def write_config():
        import jax
        from seqpt_jax.convert.run_records import init_source, parse_operative_config
        from seqpt_jax.data import vocab_record
        # Records VOCAB; refuses one that differs from a resumed run's or its init source's.
        vocab_record.record(model_dir(), gin.query_parameter("VOCAB/macro.value") if _has_macro("VOCAB") else None,
                            write=jax.process_index() == 0,
                            source=init_source(parse_operative_config(gin.operative_config_str())))
        if jax.process_index() == 0:
            with open(os.path.join(model_dir(), "config.gin"), "w") as f:
                f.write(gin.operative_config_str())

    def model_dir():
        return gin.query_parameter("MODEL_DIR/macro.value") if _has_macro("MODEL_DIR") else "."

    try:
        summary = gin.get_configurable(loop.train)(on_ready=write_config)
    except UserError:
        raise
    except (ValueError, TypeError) as e:
        if "gin" in repr(type(e)).lower() or "Required" in str(e) or "binding" in str(e).lower():
            raise UserError(f"bad gin config: {_one_line(e)}") from None
        raise
    write_config()
    print(f"trained {summary['steps']} steps: loss {summary['first_loss']} -> {summary['last_loss']}; "
          f"{summary['train_flops']:.3e} training FLOPs", file=sys.stderr)
    return 0


def _has_macro(name: str) -> bool:
    import gin
    try:
        gin.query_parameter(f"{name}/macro.value")
        return True
    except ValueError:
        return False

