#!/usr/bin/env bash
# Run `seqpt train` on local GPUs, or on several GPU nodes as one JAX job.
#
# One node (all its GPUs):
#   launch/gpu.sh --gin_file=models/bert_small.gin --gin_file=runs/pretrain_mlm.gin \
#       --gin.MODEL_DIR=runs/bert-small --gin.VOCAB=spm.model
# Several nodes: start the same command on every node with
#   NUM_NODES=4 NODE_RANK=<0..3> COORDINATOR=<host of rank 0>:1234 launch/gpu.sh ...
# (under SLURM, jax.distributed finds these by itself; leave the variables unset).
# hw/gpu.gin (seqpt_jax/gin/hw/) is added unless you pass your own hw/ file.
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
[[ $# -gt 0 ]] || { echo "gpu.sh: error: no training arguments; see launch/gpu.sh --help" >&2; exit 2; }

HW=(--gin_file=hw/gpu.gin)
for arg in "$@"; do
  [[ "$arg" == --gin_file=hw/* || "$arg" == --gin_file=*/hw/* ]] && HW=()
done

if [[ -n "${NUM_NODES:-}" ]]; then
  : "${NODE_RANK:?set NODE_RANK (0..NUM_NODES-1) on every node}"
  : "${COORDINATOR:?set COORDINATOR=host:port of the rank-0 node}"
  # Read by seqpt_jax's trainer, which calls jax.distributed.initialize with them.
  export JAX_COORDINATOR_ADDRESS="$COORDINATOR" JAX_NUM_PROCESSES="$NUM_NODES" JAX_PROCESS_ID="$NODE_RANK"
fi
# Let XLA use most of the GPU memory up front, with headroom for cuDNN workspaces.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
cd "$(dirname "$0")/.."
exec python3 -m seqpt_jax train "${HW[@]}" "$@"
