#!/usr/bin/env bash
# The downloads of the cluster build (ci/cluster/e2e.sh) without its compiles, so that they can
# overlap something else (ci/test.sh runs this under pytest, at the lowest CPU and I/O priority):
#   Kubernetes   the wrapper module's `go mod tidy`: every module the 6 binaries import
#   addons       CoreDNS', metrics-server's, prometheus-adapter's and Prometheus' sources (as the
#                build trims and generates them) and the modules their builds import
#   wheelhouse   the images' Python wheels (TensorFlow's among them), downloaded by the host's pip
# Each part does nothing when what it feeds is cached (binaries built, wheelhouse current), and is
# safe to interrupt: go's module cache and the wheelhouse's key take only complete downloads.
# A part that fails is reported and the others still run; the build fetches again what is missing.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=ci/cluster/lib.sh
source "$here/lib.sh"

t0=$(date +%s)
failed=()
part() {
  local name=$1 rc=0
  shift
  "$@" || rc=$?
  [ "$rc" -eq 0 ] || { failed+=("$name"); log "prefetch: $name failed (exit $rc)"; }
}
# The wheels (pip, ~600 MB) alongside the Go modules: the two share the network, and the Go part's
# module loading and code generation need some CPU, so together they finish sooner.
bash "$here/images.sh" fetch &
wheels_pid=$!
part kubernetes bash "$here/build-k8s.sh" --fetch
part addons bash "$here/build-addons.sh" --fetch
part wheelhouse wait "$wheels_pid"
log "prefetch: done in $(( $(date +%s) - t0 )) s${failed[*]:+; failed: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
