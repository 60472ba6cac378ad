"""The gin plumbing, in one place: every command, the experiment runner, the planner and the
benchmarks parse their gin files here, and nowhere else.

- `split_gin_args`: T5X-style `--gin.NAME=VALUE` flags out of argv (bare strings are quoted).
- `parse(files, bindings)`: gin files, looked up as given and then under the package's gin/
  folder, composed in order, then the bindings. Strict: a binding of a macro no file defines,
  an unknown parameter or configurable, or a `%gin.REQUIRED` left unset is a one-line
  `UserError` with the closest valid names. `optional` bindings apply only where a file
  defines their macro (placeholders for what a plan never reads).
- `train_config()`: the `train.loop.TrainConfig` that `loop.train` is called with under the
  parsed config (gin records it in the operative config, as a run does).
- `macro`, `value`: bound values with references evaluated; `operative_config()`.

Library code stays gin-free: gin binds public functions from the gin files.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import difflib
import inspect
import logging
import os
import re
from pathlib import Path

from seqpt_jax.errors import UserError

# The gin files ship inside the package (seqpt_jax/gin), so an installed `seqpt` finds them.
GIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gin")

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

_MACRO = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# ---------------------------------------------------------------------------------------------
# Command lines.

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
            bindings.append(f"{name} = {gin_value(value)}")
        else:
            rest.append(arg)
        i += 1
    return rest, bindings


def gin_value(value: str) -> str:
    """Gin literals, references and macros pass through; anything else becomes a string."""
    if value.startswith(("@", "%")) or value in ("True", "False", "None"):
        return value
    try:
        ast.literal_eval(value)
        return value
    except (ValueError, SyntaxError):
        return repr(value)


# ---------------------------------------------------------------------------------------------
# Parsing.

def resolve_gin_file(path: str, search: list[str]) -> str:
    for base in ["", *search]:
        candidate = os.path.join(base, path) if base else path
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise UserError(f"gin file {path!r} not found (looked here and under {', '.join(search)}); "
                    f"see `ls {GIN_DIR}/models {GIN_DIR}/runs {GIN_DIR}/hw`.")


def one_line(e: Exception) -> str:
    """Gin's multi-line error as one line (its first line and where it happened)."""
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    where = next((s for s in lines[1:] if s.startswith(("In ", "File "))), "")
    return f"{lines[0] if lines else type(e).__name__}" + (f" ({where})" if where else "")


def _search(search) -> list[str]:
    return [*(search or ()), GIN_DIR] if GIN_DIR not in (search or ()) else list(search)


def _quiet_include_search(record: logging.LogRecord) -> bool:
    """gin logs an ERROR for every search-path entry an include is not under; not an error."""
    return not str(record.getMessage()).startswith("Path not found:")


def parse(files: list[str], bindings: list[str] = (), search: list[str] = (), optional: list[str] = ()) -> None:
    """Parses gin files + bindings into gin's global config; any gin mistake becomes a one-line
    UserError. Every binding must bind something that exists: a macro (NAME) one of the files
    defines, or a parameter of a configurable; a typo is an error with the closest valid names,
    never a new macro that nothing reads. `optional`: bindings kept only where the files define
    their macro (placeholders, e.g. `placeholder_bindings()`)."""
    import gin
    search = _search(search)
    root = logging.getLogger()
    root.addFilter(_quiet_include_search)
    try:
        gin.clear_config()
        for path in search:
            gin.add_config_file_search_path(path)
        resolved = [resolve_gin_file(f, search) for f in files]
        try:
            gin.parse_config_files_and_bindings(resolved, BINDING_IMPORTS, finalize_config=False)
            defined = defined_macros()
            bindings = [b for b in optional if _name(b) in defined] + list(bindings)
            _check_macros(bindings, defined)
            gin.clear_config()
            gin.parse_config_files_and_bindings(resolved, [*BINDING_IMPORTS, *bindings], finalize_config=True)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - gin raises ValueError, SyntaxError, KeyError, ...
            raise UserError(f"bad gin config: {one_line(e)}{_closest(e, resolved)}") from None
    finally:
        root.removeFilter(_quiet_include_search)


def macros_defined_by(files: list[str], search: list[str] = ()) -> set[str]:
    """The macros `files` define (parsed, not finalized: REQUIRED macros may stay unset)."""
    import gin
    search = _search(search)
    gin.clear_config()
    for path in search:
        gin.add_config_file_search_path(path)
    try:
        gin.parse_config_files_and_bindings([resolve_gin_file(f, search) for f in files], BINDING_IMPORTS,
                                            finalize_config=False)
        return defined_macros()
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - gin raises ValueError, SyntaxError, KeyError, ...
        raise UserError(f"bad gin config: {one_line(e)}") from None
    finally:
        gin.clear_config()


def defined_macros() -> set[str]:
    """Macros the parsed files define (top-level `NAME = value` lines of the config)."""
    import gin
    return {line.split(" = ", 1)[0] for line in gin.config_str().splitlines()
            if " = " in line and _MACRO.fullmatch(line.split(" = ", 1)[0])}


def _name(binding: str) -> str:
    return binding.split("=", 1)[0].strip()


def _check_macros(bindings: list[str], defined: set[str]) -> None:
    for binding in bindings:
        name = _name(binding)
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


def required_macros() -> list[str]:
    """Every macro some gin file declares `%gin.REQUIRED` (MODEL_DIR, VOCAB, checkpoints...)."""
    names = set()
    for path in Path(GIN_DIR).rglob("*.gin"):
        names.update(re.findall(r"^([A-Z][A-Z0-9_]*)\s*=\s*%gin\.REQUIRED", path.read_text("utf-8"), re.M))
    return sorted(names)


def placeholder_bindings() -> list[str]:
    """Values for every %gin.REQUIRED macro: enough to parse and read shapes, touching no file."""
    return [f"{name} = '/nonexistent/{name.lower()}'" for name in required_macros()]


# ---------------------------------------------------------------------------------------------
# Reading the parsed config.

def value(selector: str, default=inspect.Parameter.empty):
    """A bound gin value with references evaluated (macros, @fn()), else `default`."""
    import gin
    try:
        return copy.deepcopy(gin.query_parameter(selector))
    except ValueError:
        if default is inspect.Parameter.empty:
            raise
        return default


def has_macro(name: str) -> bool:
    import gin
    try:
        gin.query_parameter(f"{name}/macro.value")
        return True
    except ValueError:
        return False


def macro(name: str, default=inspect.Parameter.empty):
    """A macro's value; one bound to `@fn()` (runs/continue_pretraining.gin's VOCAB) is evaluated."""
    import gin
    if not has_macro(name):
        if default is inspect.Parameter.empty:
            raise ValueError(f"no macro {name} in the parsed gin config")
        return default
    found = gin.query_parameter(f"{name}/macro.value")
    if isinstance(found, gin.config.ConfigurableReference) and found.evaluate:
        return found.scoped_configurable_fn()
    return copy.deepcopy(found)


@contextlib.contextmanager
def one_line_errors():
    """Gin's errors raised while the config is used (a REQUIRED value unset, a bad reference)
    as one-line UserErrors; every other error passes through."""
    try:
        yield
    except UserError:
        raise
    except (ValueError, TypeError) as e:
        if "gin" in repr(type(e)).lower() or "Required" in str(e) or "binding" in str(e).lower():
            raise UserError(f"bad gin config: {one_line(e)}") from None
        raise


def train_config(**overrides):
    """The `TrainConfig` `loop.train` is called with under the parsed config, the call recorded
    in gin's operative config as a run's is. `overrides`: arguments set by code (on_step, progress)."""
    import gin

    from seqpt_jax.train import loop
    with one_line_errors():
        return gin.get_configurable(loop.train)(**overrides, then=lambda config: config)


def operative_config() -> str:
    import gin
    return gin.operative_config_str()
