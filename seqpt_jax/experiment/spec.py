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

import dataclasses
from pathlib import Path

from seqpt_jax import gin_config
from seqpt_jax.errors import UserError

ROLES = ("source", "scratch", "recipe", "control", "encoder")
OPS = ("train", "init")

# The gin plumbing (gin_config), under the names the experiment modules use.
value, macro, placeholder_bindings, required_macros = (gin_config.value, gin_config.macro,
                                                       gin_config.placeholder_bindings, gin_config.required_macros)


def gin_dir() -> str:
    return gin_config.GIN_DIR


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
    gin_config.parse(gin_files(experiment, arm, scale, hw), bindings, optional=optional)


def train_config(**overrides):
    """The parsed arm's `train.config.TrainConfig` (what its run trains with)."""
    return gin_config.train_config(**overrides)


def train_value(name: str):
    """One `loop.train` argument as the parsed arm binds it (or its default), evaluating only
    that binding (a check of one setting need not build the model; `train_config` builds all)."""
    import inspect

    from seqpt_jax.train import loop
    return value(f"loop.train.{name}", inspect.signature(loop.train).parameters[name].default)


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
