#!/usr/bin/env bash
# Installs everything the tests need, then runs them (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[hf,test]"
python -m pytest -q -n 2 --durations=15 tests "$@"
