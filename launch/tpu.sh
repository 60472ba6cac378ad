#!/usr/bin/env bash
# Run a seqpt_jax gin config on a Cloud TPU VM or pod slice, start to finish:
# create the slice, check out and install seqpt_jax on every worker (the gin files ship in the
# package, so models/, runs/, hw/ paths resolve the same as here), start `seqpt train` on all workers,
# tail worker 0's log until training ends, copy nothing (MODEL_DIR should be a gs:// path),
# and delete the slice (unless --keep).
#
#   launch/tpu.sh --name my-run --zone us-central2-b --type v4-32 -- \
#       --gin_file=models/mt5_base.gin --gin_file=runs/pretrain_span_mc4.gin \
#       --gin_file=hw/tpu_pod.gin --gin.MODEL_DIR=gs://bucket/runs/mt5-base \
#       --gin.VOCAB=gs://bucket/spm.model --gin.TFDS_DATA_DIR=gs://bucket/tfds
#
# --dry-run prints the exact gcloud commands instead of running them.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/tpu.sh --name NAME --zone ZONE --type TYPE [options] -- SEQPT_TRAIN_ARGS...

  --name NAME         TPU VM / slice name
  --zone ZONE         e.g. us-central2-b (v4), us-west4-a (v5e), us-east5-a (v5p)
  --type TYPE         accelerator type: v4-8, v4-32, v5e-16 (= v5litepod-16), v5p-8, v6e-8, ...
  --project ID        GCP project (default: gcloud's configured project)
  --version V         TPU software version (default: chosen from the type)
  --spot              request spot capacity
  --repo URL          git repository of seqpt_jax (default: $SEQPT_REPO or the origin of this checkout)
  --ref REF           git ref to install (default: the current commit of this checkout)
  --keep              do not delete the slice when training ends
  --dry-run           print the gcloud commands, run nothing
  -h, --help          this help
Everything after `--` is passed to `seqpt train` on every worker.
EOF
}

die() { echo "tpu.sh: error: $*" >&2; exit 2; }

NAME="" ZONE="" TYPE="" PROJECT="" VERSION="" SPOT=0 KEEP=0 DRY_RUN=0
REPO="${SEQPT_REPO:-}" REF=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME="${2:?--name needs a value}"; shift 2 ;;
    --zone) ZONE="${2:?--zone needs a value}"; shift 2 ;;
    --type) TYPE="${2:?--type needs a value}"; shift 2 ;;
    --project) PROJECT="${2:?--project needs a value}"; shift 2 ;;
    --version) VERSION="${2:?--version needs a value}"; shift 2 ;;
    --repo) REPO="${2:?--repo needs a value}"; shift 2 ;;
    --ref) REF="${2:?--ref needs a value}"; shift 2 ;;
    --spot) SPOT=1; shift ;;
    --keep) KEEP=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option '$1'; run launch/tpu.sh --help" ;;
  esac
done
TRAIN_ARGS=("$@")

[[ -n "$NAME" ]] || die "--name is required (a name for the TPU VM)"
[[ -n "$ZONE" ]] || die "--zone is required (e.g. --zone us-central2-b)"
[[ -n "$TYPE" ]] || die "--type is required (e.g. --type v4-32)"
[[ ${#TRAIN_ARGS[@]} -gt 0 ]] || die "no training arguments; pass them after '--' (e.g. -- --gin_file=...)"

# Accelerator type as gcloud spells it, and the matching runtime image.
case "$TYPE" in
  v5e-*) ACCEL="v5litepod-${TYPE#v5e-}" ;;
  *) ACCEL="$TYPE" ;;
esac
if [[ -z "$VERSION" ]]; then
  case "$ACCEL" in
    v4-*) VERSION="tpu-ubuntu2204-base" ;;
    v5litepod-*) VERSION="v2-alpha-tpuv5-lite" ;;
    v5p-*) VERSION="v2-alpha-tpuv5" ;;
    v6e-*) VERSION="v2-alpha-tpuv6e" ;;
    *) die "unknown accelerator type '$TYPE'; use v4-N, v5e-N, v5p-N or v6e-N, or pass --version" ;;
  esac
fi

[[ -n "$REPO" ]] || REPO="$(git -C "$(dirname "$0")/.." remote get-url origin 2>/dev/null || true)"
[[ -n "$REPO" ]] || die "no repository to install from; pass --repo URL or set SEQPT_REPO"
[[ -n "$REF" ]] || REF="$(git -C "$(dirname "$0")/.." rev-parse HEAD 2>/dev/null || echo main)"

GCLOUD=(gcloud compute tpus tpu-vm)
WHERE=(--zone="$ZONE")
[[ -n "$PROJECT" ]] && WHERE+=(--project="$PROJECT")

# The remote command is one string run by bash on each worker; every argument is single-quoted
# where needed so spaces and quotes in gin bindings survive the trip (and read well in --dry-run).
q() {
  local arg
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./=:@,+%-]+$ ]]; then
      printf '%s ' "$arg"
    else
      printf "'%s' " "${arg//\'/\'\\\'\'}"
    fi
  done
}
LOG="\$HOME/seqpt_train.log"
SRC="\$HOME/seqpt_jax"
INSTALL="(test -d $SRC || git clone $(q "$REPO") $SRC) && cd $SRC && git fetch -q origin && \
git checkout -q $(q "$REF") && python3 -m pip install -q -U pip && python3 -m pip install -q -e '.[tpu]'"
TRAIN="cd $SRC && nohup python3 -m seqpt_jax train $(q "${TRAIN_ARGS[@]}")> $LOG 2>&1 & echo \$! > \$HOME/seqpt_train.pid"
TAIL="tail --pid=\$(cat \$HOME/seqpt_train.pid) -n +1 -f $LOG"

run() {
  if [[ $DRY_RUN -eq 1 ]]; then
    q "$@"; echo
  else
    "$@"
  fi
}

CREATE=("${GCLOUD[@]}" create "$NAME" "${WHERE[@]}" --accelerator-type="$ACCEL" --version="$VERSION")
[[ $SPOT -eq 1 ]] && CREATE+=(--spot)

run "${CREATE[@]}"
if [[ $KEEP -eq 0 && $DRY_RUN -eq 0 ]]; then
  trap 'echo "tpu.sh: deleting $NAME"; "${GCLOUD[@]}" delete "$NAME" "${WHERE[@]}" --quiet' EXIT
fi
run "${GCLOUD[@]}" ssh "$NAME" "${WHERE[@]}" --worker=all --command="$INSTALL"
run "${GCLOUD[@]}" ssh "$NAME" "${WHERE[@]}" --worker=all --command="$TRAIN"
run "${GCLOUD[@]}" ssh "$NAME" "${WHERE[@]}" --worker=0 --command="$TAIL"
if [[ $KEEP -eq 0 && $DRY_RUN -eq 1 ]]; then
  run "${GCLOUD[@]}" delete "$NAME" "${WHERE[@]}" --quiet
fi
