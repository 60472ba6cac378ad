"""The project's task and mixture names (no seqio here, so the TensorFlow-free feed of an
exported corpus reads them too):

  seqpt_local_<lang>_<objective>, mixture seqpt_local_<objective>   the embedded corpus
  seqpt_mc4_<lang>_<objective>,   mixture seqpt_mc4_<objective>     mC4 via TFDS
"""

from __future__ import annotations

from seqpt_jax.data import preprocessors
from seqpt_jax.errors import UserError

LOCAL, MC4_PREFIX = "seqpt_local_", "seqpt_mc4_"


def task_name(prefix: str, lang: str, objective: str) -> str:
    return f"{prefix}{lang.replace('-', '_')}_{objective}"


def objective_of(name: str, prefix: str) -> tuple[str | None, str]:
    """(language or None for the mixture, objective) of a project task / mixture name."""
    rest = name[len(prefix):]
    for objective in sorted(preprocessors.OBJECTIVES, key=len, reverse=True):
        if rest == objective:
            return None, objective
        if rest.endswith("_" + objective):
            return rest[:-len(objective) - 1], objective
    raise UserError(f"{name!r} names no objective; end it with one of {', '.join(preprocessors.OBJECTIVES)} "
                    f"(e.g. {prefix}mlm).")
