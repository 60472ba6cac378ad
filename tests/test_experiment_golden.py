"""`seqpt experiment run growth --scale test` gives the numbers it gave before the run-as-a-value
refactor (issue 21): every arm's FLOPs, tokens, losses and validation curve, against
tests/fixtures/growth_test_golden.json, recorded from the code before the refactor (main at a6c425b,
with issues 22-25 merged).

Regenerate only for an intended change of results: SEQPT_WRITE_GOLDEN=1 pytest this file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from data_fixtures import make_corpus
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


@pytest.mark.slow  # every growth arm at --scale test: ten tiny training runs
def test_growth_at_scale_test_gives_the_recorded_numbers(tmp_path):
    corpus = str(make_corpus(tmp_path / "corpus"))
    runner.Runner("growth", "test", 1, tmp_path / "out", corpus=corpus, progress=False, log=lambda s: None).run()
    got = numbers(tmp_path / "out")
    if os.environ.get("SEQPT_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())
    assert close(got, want) == []
