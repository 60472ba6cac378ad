"""An experiment's arms, read out of its gin files.

Every `gin/experiments/<name>/<arm>.gin` (files starting with `_` are shared includes, and
`scale_*.gin` are the scales) is a training run composed like `seqpt train`'s: it includes a
models/ and a runs/ gin, and declares what the runner must know in one macro:

    ARM = {'role': 'recipe',                           # source | scratch | recipe | control | encoder
           'needs': {'SMALL_CHECKPOINT': 'source'},    # checkpoint macro -> the arm that provides it
           'source': 'source',                         # whose compute this arm starts from
           'compare': 'scratch',                       # the scratch arm its savings are measured against
           'teacher': 'source',                        # the arm distilled from (loop.train.distill)
           'op': 'train',                              # train | init (the run's init, saved, no steps)
           'downstream': False,                        # fine-tune it downstream (experiment/downstream.py)
           'downstream_curve': 'mlm',                  # encoders: score against pre-training FLOPs, measured
                                                       # against this arm's final score (experiment/downstream_curve.py)
           'generation': False}                        # seq2seq: fine-tune it on generation (experiment/generation.py)

An arm composes as [<arm>.gin, scale_<scale>.gin, hw gin] + bindings, so the scale file (parsed
later) sets the sizes and budgets every arm refers to through macros.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import logging
import re
from pathlib import Path

from seqpt_jax.errors import UserError

ROLES = ("source", "scratch", "recipe", "control", "encoder")
OPS = ("train", "init")


def gin_dir() -> str:
    from seqpt_jax.commands.train import GIN_DIR
    return GIN_DIR


def experiments_dir() -> Path:
    return Path(gin_dir()) / "experiments"


def experiments() -> list[str]:
    root = experiments_dir()
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def scales(experiment: str) -> list[str]:
    return sorted(p.stem[len("scale_"):] for p in (experiments_dir() / experiment).glob("scale_*.gin"))


def arm_names(experiment: str) -> list[str]:
    folder = experiments_dir() / experiment
    if not folder.is_dir():
        raise UserError(f"unknown experiment {experiment!r}; choose one of: {', '.join(experiments())}.")
    return sorted(p.stem for p in folder.glob("*.gin") if not p.stem.startswith(("_", "scale_")))


@dataclasses.dataclass(frozen=True)
class Arm:
    name: str
    role: str
    needs: dict            # checkpoint macro -> arm name
    source: str | None     # the arm whose (cumulative) compute this one starts from
    compare: str | None    # the scratch arm it is measured against
    op: str = "train"
    downstream: bool = False   # fine-tuned downstream beside a random init (encoders)
    generation: bool = False   # fine-tuned on generation beside a random init (seq2seq models)
    downstream_curve: str | None = None  # the arm whose final downstream score is this one's target
    teacher: str | None = None  # the arm it distils from; one of `needs` (its forward passes are counted)


def gin_files(experiment: str, arm: str, scale: str, hw: str) -> list[str]:
    if scale not in scales(experiment):
        raise UserError(f"experiment {experiment!r} has no scale {scale!r}; choose one of: "
                        f"{', '.join(scales(experiment))}.")
    return [f"experiments/{experiment}/{arm}.gin", f"experiments/{experiment}/scale_{scale}.gin", hw]


def parse(experiment: str, arm: str, scale: str, hw: str, bindings: list[str], optional: list[str] = ()) -> None:
    """Parses the arm's composition into gin's global config (as `seqpt train` does).
    `optional`: macro bindings applied only where the composition defines the macro (e.g.
    `placeholder_bindings`; `seqpt train` refuses a binding of a macro nothing defines)."""
    from seqpt_jax.commands import train as train_cmd
    root = logging.getLogger()
    root.addFilter(_quiet_include_search)
    files = gin_files(experiment, arm, scale, hw)
    try:
        if optional:
            defined = train_cmd.macros_defined_by(files, [gin_dir()])
            bindings = [b for b in optional if b.split("=", 1)[0].strip() in defined] + list(bindings)
        train_cmd.parse_gin(files, bindings, [gin_dir()])
    finally:
        root.removeFilter(_quiet_include_search)


def _quiet_include_search(record: logging.LogRecord) -> bool:
    """gin logs an ERROR for every search-path entry an include is not under; not an error."""
    return not str(record.getMessage()).startswith("Path not found:")


def value(selector: str, default=inspect.Parameter.empty):
    """A bound gin value with references evaluated (macros, @fn()), else `default`."""
    import gin
    try:
        return copy.deepcopy(gin.query_parameter(selector))
    except ValueError:
        if default is inspect.Parameter.empty:
            raise
        return default


def macro(name: str, default=inspect.Parameter.empty):
    return value(f"{name}/macro.value", default)


def train_default(name: str):
    from seqpt_jax.train import loop
    return inspect.signature(loop.train).parameters[name].default


def train_value(name: str):
    """`loop.train`'s argument `name` as this composition binds it (or its default)."""
    return value(f"loop.train.{name}", train_default(name))


def trained_model() -> tuple:
    """(the model train.loop trains, its encoder MLM weight): a seq2seq run with an encoder MLM
    loss has the head (as the loop builds it), so its every evaluation and ledger sees it."""
    model = train_value("model")
    weight = float(train_value("encoder_mlm_weight") or 0.0)
    return (model.clone(encoder_mlm_head=True) if weight else model), weight


def required_macros() -> list[str]:
    """Every macro some gin file declares `%gin.REQUIRED` (MODEL_DIR, VOCAB, checkpoints...)."""
    names = set()
    for path in Path(gin_dir()).rglob("*.gin"):
        names.update(re.findall(r"^([A-Z][A-Z0-9_]*)\s*=\s*%gin\.REQUIRED", path.read_text("utf-8"), re.M))
    return sorted(names)


def placeholder_bindings() -> list[str]:
    """Values for every %gin.REQUIRED macro: enough to parse and read shapes, touching no file."""
    return [f"{name} = '/nonexistent/{name.lower()}'" for name in required_macros()]


def read_arm(experiment: str, name: str, scale: str, hw: str = "hw/cpu.gin") -> Arm:
    parse(experiment, name, scale, hw, [], placeholder_bindings())
    try:
        decl = macro("ARM")
    except ValueError:
        raise UserError(f"gin/experiments/{experiment}/{name}.gin declares no ARM = {{...}} macro "
                        f"(see seqpt_jax/experiment/spec.py).") from None
    arm = Arm(name=name, role=decl.get("role", "recipe"), needs=dict(decl.get("needs", {})),
              source=decl.get("source"), compare=decl.get("compare"), op=decl.get("op", "train"),
              downstream=bool(decl.get("downstream", False)), generation=bool(decl.get("generation", False)),
              teacher=decl.get("teacher"), downstream_curve=decl.get("downstream_curve"))
    if arm.role not in ROLES or arm.op not in OPS:
        raise UserError(f"{name}.gin: ARM role must be one of {ROLES} and op one of {OPS}.")
    if arm.teacher is not None and arm.teacher not in arm.needs.values():
        raise UserError(f"{name}.gin: ARM teacher {arm.teacher!r} must also be in 'needs' (its checkpoint "
                        f"is the teacher's).")
    return arm


def closure(experiment: str, arms: list[Arm], names: list[str]) -> list[str]:
    """`names` and every arm they need, start from or are compared with, in the order of `arms`."""
    by_name = {a.name: a for a in arms}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise UserError(f"--arms: {', '.join(unknown)} not in experiment {experiment!r}; its arms: "
                        f"{', '.join(by_name)}.")
    want, todo = set(), list(names)
    while todo:
        arm = by_name[todo.pop()]
        if arm.name not in want:
            want.add(arm.name)
            todo += [*arm.needs.values(), *filter(None, (arm.source, arm.compare, arm.downstream_curve))]
    return [a.name for a in arms if a.name in want]


def read_arms(experiment: str, scale: str, hw: str = "hw/cpu.gin") -> list[Arm]:
    """Every arm, dependencies first."""
    arms = {n: read_arm(experiment, n, scale, hw) for n in arm_names(experiment)}
    for arm in arms.values():
        for dep in [*arm.needs.values(), *filter(None, (arm.source, arm.compare, arm.downstream_curve))]:
            if dep not in arms:
                raise UserError(f"{experiment}/{arm.name}.gin refers to arm {dep!r}, which has no gin file.")
    ordered: list[Arm] = []

    def visit(name: str, path: tuple) -> None:
        if name in path:
            raise UserError(f"experiment {experiment!r}: arms depend on each other in a cycle: {' -> '.join(path)}.")
        if any(a.name == name for a in ordered):
            return
        for dep in arms[name].needs.values():
            visit(dep, (*path, name))
        ordered.append(arms[name])

    for name in sorted(arms, key=lambda n: (ROLES.index(arms[n].role), n)):
        visit(name, ())
    return ordered
