"""The numbers `seqpt experiment run growth --scale test` gave before the run-as-a-value refactor
(issue 21): every arm's FLOPs, tokens, losses and validation curve, in
tests/fixtures/growth_test_golden.json, recorded from the code before the refactor (main at a6c425b,
with issues 22-25 merged) on tests/data_fixtures.py's corpus with the vocabulary the runner trains
on it. tests/test_no_tensorflow.py's growth run (the same corpus exported with that vocabulary,
which feeds the same batches: tests/test_corpus_export.py) is compared with them.

Regenerate only for an intended change of results: SEQPT_WRITE_GOLDEN=1 pytest tests/test_no_tensorflow.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from seqpt_jax.experiment import runner

GOLDEN = Path(__file__).parent / "fixtures" / "growth_test_golden.json"
FIELDS = ("steps", "params", "tokens", "train_flops", "flops_by_phase", "init_val_loss", "final_val_loss",
          "train_loss", "curve")


def numbers(out: Path) -> dict:
    records = runner.load_records(out)["records"]
    return {arm: {k: seeds[0].get(k) for k in FIELDS} for arm, seeds in sorted(records.items())}


def close(got, want, path: str = "") -> list[str]:
    """Where `got` differs from `want`: numbers within 1e-5 relative (CPU float noise), the rest equal."""
    if isinstance(want, dict):
        if set(got) != set(want):
            return [f"{path}: keys {sorted(got)} != {sorted(want)}"]
        return [d for k in want for d in close(got[k], want[k], f"{path}.{k}")]
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{path}: {got} != {want}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in close(g, w, f"{path}[{i}]")]
    if isinstance(want, float) and isinstance(got, (int, float)):
        return [] if got == pytest.approx(want, rel=1e-5, abs=1e-7) else [f"{path}: {got} != {want}"]
    return [] if got == want else [f"{path}: {got!r} != {want!r}"]


def check(out: Path) -> list[str]:
    """Where the growth run at `out` differs from the recorded numbers (SEQPT_WRITE_GOLDEN=1:
    records them instead)."""
    got = numbers(out)
    if os.environ.get("SEQPT_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    return close(got, json.loads(GOLDEN.read_text()))
