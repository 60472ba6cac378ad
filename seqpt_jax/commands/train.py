"""`seqpt train --gin_file=... [--gin_file=...] --gin.MODEL_DIR=... [--gin.X=...]` (T5X style).

Gin files compose in the order given (models/, runs/, hw/; later bindings win), then the
`--gin.X=V` bindings. Files are looked up as given, then under the package's gin/ folder
(seqpt_jax/gin), so `--gin_file=runs/pretrain_mlm.gin` works from anywhere. String values may
be given bare: `--gin.MODEL_DIR=/tmp/run` means `MODEL_DIR = '/tmp/run'`. The run is `train.loop.train`
called through gin; the operative config is written to MODEL_DIR/config.gin.

Every --gin.X must name a macro the files define or a parameter that exists (a typo is an
error with the closest names). One trainer per MODEL_DIR (MODEL_DIR/trainer.lock); a rerun
resumes only with the settings recorded in MODEL_DIR/run.json (more TRAIN_STEPS, another
learning rate or cadence are fine; see docs/reliability.md).

Exit codes: 0 done; 2 a mistake, named in one line with the fix; 3 the loss became NaN/inf;
143 stopped by SIGTERM (preemption) and 130 by Ctrl-C, each after saving a checkpoint of the
current step: rerun the same command to continue.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import os
import re
import sys

from seqpt_jax.errors import UserError

# The gin files ship inside the package (seqpt_jax/gin), so an installed `seqpt` finds them.
GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gin")


# `--gin.X` bindings see the same short module names as the gin files.
BINDING_IMPORTS = [
    "from __gin__ import dynamic_registration",
    "from seqpt_jax import models",
    "from seqpt_jax.mappings import init_hooks",
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
    """Parses gin files + bindings; any gin mistake becomes a one-line UserError.

    Every `--gin.X` must bind something that exists: a macro (NAME) one of the files defines, or
    a parameter of a configurable. A typo is an error with the closest valid names, never a new
    macro that nothing reads.
    """
    import gin
    gin.clear_config()
    for path in search:
        gin.add_config_file_search_path(path)
    resolved = [resolve_gin_file(f, search) for f in files]
    try:
        gin.parse_config_files_and_bindings(resolved, BINDING_IMPORTS, finalize_config=False)
        _check_macros(bindings, defined_macros())
        gin.clear_config()
        gin.parse_config_files_and_bindings(resolved, [*BINDING_IMPORTS, *bindings], finalize_config=True)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - gin raises ValueError, SyntaxError, KeyError, ...
        raise UserError(f"bad gin config: {_one_line(e)}{_closest(e, resolved)}") from None


_MACRO = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def macros_defined_by(files: list[str], search: list[str]) -> set[str]:
    """The macros `files` define (parsed, not finalized: REQUIRED macros may stay unset)."""
    import gin
    gin.clear_config()
    for path in search:
        gin.add_config_file_search_path(path)
    try:
        gin.parse_config_files_and_bindings([resolve_gin_file(f, search) for f in files], BINDING_IMPORTS,
                                            finalize_config=False)
        return defined_macros()
    except Exception as e:  # noqa: BLE001 - gin raises ValueError, SyntaxError, KeyError, ...
        raise UserError(f"bad gin config: {_one_line(e)}") from None
    finally:
        gin.clear_config()


def defined_macros() -> set[str]:
    """Macros the parsed files define (top-level `NAME = value` lines of the config)."""
    import gin
    return {line.split(" = ", 1)[0] for line in gin.config_str().splitlines()
            if " = " in line and _MACRO.fullmatch(line.split(" = ", 1)[0])}


def _check_macros(bindings: list[str], defined: set[str]) -> None:
    for binding in bindings:
        name = binding.split("=", 1)[0].strip()
        if _MACRO.fullmatch(name) and name not in defined:
            close = difflib.get_close_matches(name, sorted(defined), n=3, cutoff=0.6)
            hint = (f"did you mean {' or '.join('--gin.' + c for c in close)}?" if close else
                    f"the gin files define {', '.join(sorted(defined))}.")
            raise UserError(f"--gin.{name} binds a macro that no gin file defines, so it would be ignored; {hint}")


def _aliases(resolved: list[str]) -> dict[str, str]:
    """Short module names the bindings can use -> module paths (BINDING_IMPORTS and the files')."""
    lines = list(BINDING_IMPORTS)
    for path in resolved:
        with open(path) as f:
            lines += f.read().splitlines()
    out = {}
    for line in lines:
        m = re.match(r"\s*from\s+([\w.]+)\s+import\s+(\w+)(?:\s+as\s+(\w+))?\s*$", line)
        if m and m.group(1) != "__gin__":
            out[m.group(3) or m.group(2)] = f"{m.group(1)}.{m.group(2)}"
    return out


def _closest(error: Exception, resolved: list[str]) -> str:
    """'; did you mean ...?' for gin's unknown-parameter / unknown-name errors, else ''."""
    import importlib
    import inspect
    text, aliases, choices, wrong = str(error), _aliases(resolved), [], None
    try:
        if m := re.search(r"Configurable '([\w.]+)' doesn't have a parameter named '(\w+)'", text):
            module, _, attr = m.group(1).rpartition(".")
            target = getattr(importlib.import_module(aliases[module]), attr)
            choices, wrong = list(inspect.signature(target).parameters), m.group(2)
        elif m := re.search(r"Couldn't resolve selector ([\w.]+)", text):
            module, _, wrong = m.group(1).rpartition(".")
            mod = importlib.import_module(aliases[module])
            choices = [f"{n}" for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n))]
        elif m := re.search(r"'(\w+)' was not provided by an import statement", text):
            choices, wrong = list(aliases), m.group(1)
    except (KeyError, ImportError, AttributeError, TypeError, ValueError):
        return ""
    close = difflib.get_close_matches(wrong, choices, n=3, cutoff=0.6) if wrong else []
    if close:
        return f"; did you mean {' or '.join(close)}?"
    return f"; valid names: {', '.join(choices)}" if choices and len(choices) <= 40 else ""


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
        vocab_record.record(model_dir(), _macro_value("VOCAB") if _has_macro("VOCAB") else None,
                            write=jax.process_index() == 0,
                            source=init_source(parse_operative_config(gin.operative_config_str())))
        from etils import epath
        if jax.process_index() == 0:
            (epath.Path(model_dir()) / "config.gin").write_text(gin.operative_config_str())

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
    if summary.get("stopped"):
        from seqpt_jax.train.preemption import EXIT_CODES
        print(f"stopped by {summary['stopped']} after step {summary['stopped_at']} of {summary['steps']}; the "
              f"checkpoint is saved: rerun the same command to continue (exit code "
              f"{EXIT_CODES[summary['stopped']]}).", file=sys.stderr)
        return EXIT_CODES[summary["stopped"]]
    print(f"trained {summary['steps']} steps: loss {summary['first_loss']} -> {summary['last_loss']}; "
          f"{summary['train_flops']:.3e} training FLOPs", file=sys.stderr)
    return 0


def _macro_value(name: str):
    """A macro's value; one bound to `@fn()` (runs/continue_pretraining.gin's VOCAB) is evaluated."""
    import gin
    value = gin.query_parameter(f"{name}/macro.value")
    if isinstance(value, gin.config.ConfigurableReference) and value.evaluate:
        return value.scoped_configurable_fn()
    return value


def _has_macro(name: str) -> bool:
    import gin
    try:
        gin.query_parameter(f"{name}/macro.value")
        return True
    except ValueError:
        return False

