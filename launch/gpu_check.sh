#!/usr/bin/env bash
# The one-shot GPU check of docs/performance.md (issue 23), on the first local GPU:
#   launch/gpu_check.sh OUT_DIR [--size gpu|bert-base|mt5-small] [--ablate] [--stages ...]
# runs `seqpt bench gpu-suite`: cuDNN vs XLA attention numerics, the chunked loss against
# materialised logits, and `seqpt bench train --vs hf` at bert-base and mt5-small, writing
# OUT_DIR/gpu_suite.json and OUT_DIR/gpu_suite.md after each stage. It stops after
# GPU_CHECK_SECONDS (default 480) and keeps what it measured. Needs jax[cuda12] and a CUDA torch.
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" || $# -eq 0 ]]; then
  sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
  [[ $# -eq 0 ]] && exit 2 || exit 0
fi
OUT="$1"; shift
# JAX and torch share the GPU in one process: leave torch half of it.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}"
cd "$(dirname "$0")/.."
exec timeout --signal=TERM "${GPU_CHECK_SECONDS:-480}" python3 -m seqpt_jax bench gpu-suite --out "$OUT" "$@"
