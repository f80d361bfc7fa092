#!/usr/bin/env bash
# The whole kind end-to-end run (`make e2e-kind`): cluster, add-ons, images, helm install, helm test
# + cluster tests, load with HPA scale-out and scale-in; diagnostics on failure; cluster deleted at
# the end. Each step is also its own script (ci/kind/0N-*.sh) with the same settings (lib.sh).
#
#   bash ci/kind/e2e.sh [--with-prometheus] [--keep-cluster] [--dry-run]
#     --with-prometheus  also install kube-prometheus-stack + prometheus-adapter, enable the chart's
#                        ServiceMonitors/PrometheusRule/dashboards and the custom-metric HPA
#     --keep-cluster     leave the cluster up afterwards (delete it with ci/kind/08-delete.sh)
#     --dry-run          print every command instead of running it (needs no Docker or cluster)
# Needs: docker, kind, and .tools/bin/{helm,kubectl} (bash ci/setup.sh); about 15-25 minutes.
set -euo pipefail
here=$(dirname "$0")
keep=0
for arg in "$@"; do
  case "$arg" in
    --with-prometheus) export WITH_PROMETHEUS=1 ;;
    --keep-cluster) keep=1 ;;
    --dry-run) export DRY_RUN=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "e2e.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done
# shellcheck source=lib.sh
source "$here/lib.sh"

finish() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    log "FAILED (exit $status): collecting diagnostics"
    bash "$here/07-diagnostics.sh" || true
  fi
  if [ "$keep" = 1 ]; then
    log "keeping cluster $CLUSTER (context $CONTEXT)"
  else
    bash "$here/08-delete.sh" || true
  fi
  [ "$status" -eq 0 ] && log "PASSED: kind end-to-end run"
  exit "$status"
}
trap finish EXIT

started=$SECONDS
for step in 01-cluster 02-addons 03-images 04-install 05-test 06-load; do
  log "== step $step"
  bash "$here/$step.sh"
done
log "all steps passed in $((SECONDS - started)) s"
