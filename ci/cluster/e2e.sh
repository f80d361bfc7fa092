#!/usr/bin/env bash
# `make e2e`: the end-to-end suite on a real Kubernetes cluster built here.
#   1. host packages, Kubernetes binaries, addon binaries and images (each cached per machine)
#   2. the cluster (up.sh) in its own network and mount namespaces
#   3. pytest tests/e2e inside the cluster's network namespace, against its kubeconfig
#   4. on failure: diagnostics (events, describe, logs); always: down.sh, which checks that
#      nothing is left behind
# Extra arguments go to pytest (e.g. `make e2e ARGS="-k probes"` or `bash ci/cluster/e2e.sh -x`).
# `--up-only` (make e2e-up) stops after step 2 and leaves the cluster running for ci/cluster/run.sh;
# `make e2e-down` removes it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=ci/cluster/lib.sh
source "$here/lib.sh"
ROOT=$(cd "$here/../.." && pwd)
cd "$ROOT"

up_only=0
if [ "${1:-}" = --up-only ]; then up_only=1; shift; fi
t0=$(date +%s)
timing() { log "timing: $1 $(( $(date +%s) - t0 )) s"; }
ARTIFACTS=${TFSTACK_ARTIFACTS:-$ROOT/.run/cluster}
mkdir -p "$ARTIFACTS"

bash "$here/host-deps.sh"
.venv/bin/python -m tfstack.model_repo.build
# The project's images need none of the Go binaries: they build alongside the compile, whose CPU
# use leaves room for their downloads and unpacking on a cold machine (cached, they take seconds).
# Stopped on any exit before they finish (images.sh stops its private daemons on the way out).
project_images=(gateway models tfserving-standin)
bash "$here/images.sh" build "${project_images[@]}" >"$ARTIFACTS/images.log" 2>&1 &
images_pid=$!
trap 'kill "$images_pid" 2>/dev/null && wait "$images_pid"' EXIT
bash "$here/build-k8s.sh"
bash "$here/build-addons.sh"
wait "$images_pid" || { tail -n 40 "$ARTIFACTS/images.log" >&2; die "images: ${project_images[*]} failed (log: $ARTIFACTS/images.log)"; }
trap - EXIT
cat "$ARTIFACTS/images.log" >&2
bash "$here/images.sh" build
timing "binaries and images"

if [ "$up_only" = 1 ]; then
  bash "$here/up.sh" || { bash "$here/down.sh"; exit 1; }
  log "cluster left running: bash ci/cluster/run.sh kubectl get pods -A; make e2e-down removes it"
  exit 0
fi

status=0
finish() {
  local rc=$?
  [ "$status" -ne 0 ] || status=$rc
  if [ "$status" -ne 0 ] && [ -e "$CLUSTER_DIR" ]; then
    bash "$here/diagnostics.sh" "$ARTIFACTS/diagnostics" || true
  fi
  TFSTACK_CLUSTER_KEEP_LOGS="$ARTIFACTS/cluster-logs" bash "$here/down.sh" || status=1
  timing "total (exit $status)"
  exit "$status"
}
trap finish EXIT
trap 'exit 130' INT TERM

bash "$here/up.sh"
timing "cluster up"

TFSTACK_ARTIFACTS="$ARTIFACTS" bash "$here/run.sh" \
  .venv/bin/python -m pytest tests/e2e -m cluster -p no:cacheprovider "$@" || status=$?
timing "suite"
