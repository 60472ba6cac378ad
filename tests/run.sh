#!/usr/bin/env bash
# Installs everything the tests need, then runs them (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[hf,test]" -c .ci/constraints-cpu.txt  # the pinned CPU stack
# shellcheck lints launch/*.sh in the tests; best effort where apt is not available.
if ! command -v shellcheck >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get install -y -q shellcheck || (apt-get update -q && apt-get install -y -q shellcheck)) >/dev/null 2>&1 || true
fi
# Lint first (pyproject.toml [tool.ruff]: pyflakes, pycodestyle, bugbear; no formatter).
python -m ruff check .
python -m pytest -q -n 2 --dist worksteal --durations=15 tests "$@"
