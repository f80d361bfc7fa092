#!/usr/bin/env bash
# Shared settings and helpers for ci/kind/*.sh (sourced, never run). Every setting is an environment
# variable with a default, so each step script runs alone with the same configuration as e2e.sh.
# The settings are read by the scripts that source this file.
# shellcheck disable=SC2034
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PATH="$ROOT/.tools/bin:$ROOT/.venv/bin:$PATH"

CLUSTER=${TFSTACK_KIND_CLUSTER:-tfstack-e2e}
CONTEXT="kind-$CLUSTER"
NAMESPACE=${TFSTACK_NAMESPACE:-tfstack}
RELEASE=${TFSTACK_RELEASE:-tfstack}
IMAGE_TAG=${TFSTACK_IMAGE_TAG:-e2e}
GATEWAY_IMAGE="tfstack/gateway:$IMAGE_TAG"
MODELS_IMAGE="tfstack/models:$IMAGE_TAG"
# Must match charts/tfstack/values.yaml tfserving.image.tag (or be passed to helm with --set).
TFSERVING_IMAGE=${TFSTACK_TFSERVING_IMAGE:-tensorflow/serving:2.21.0}
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-}            # empty: the kind release's default node image
WITH_PROMETHEUS=${WITH_PROMETHEUS:-0}           # 1: kube-prometheus-stack + prometheus-adapter
DRY_RUN=${DRY_RUN:-0}                           # 1: print the commands, run nothing
ARTIFACTS=${TFSTACK_ARTIFACTS:-$ROOT/.run/kind}
# Pinned chart versions of the cluster add-ons.
METRICS_SERVER_CHART_VERSION=${METRICS_SERVER_CHART_VERSION:-3.12.2}
KUBE_PROMETHEUS_STACK_VERSION=${KUBE_PROMETHEUS_STACK_VERSION:-65.1.1}
PROMETHEUS_ADAPTER_VERSION=${PROMETHEUS_ADAPTER_VERSION:-4.11.0}

log() { printf '[%s kind] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# run CMD...: prints the command (shell-quoted), then runs it unless DRY_RUN=1.
run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  [ "$DRY_RUN" = 1 ] || "$@"
}

kctl() { run kubectl --context "$CONTEXT" "$@"; }
hlm() { run helm --kube-context "$CONTEXT" "$@"; }

# need TOOL HINT: fails early, with a hint, when a tool is missing (not in dry-run mode).
need() {
  [ "$DRY_RUN" = 1 ] || command -v "$1" >/dev/null 2>&1 || die "$1 is not on PATH: $2"
}

# wait_for DESCRIPTION TIMEOUT_SECONDS CMD...: polls CMD every 5 s until it succeeds; bounded.
wait_for() {
  local what=$1 timeout=$2
  shift 2
  printf '+ wait up to %ss for: %s\n' "$timeout" "$what"
  [ "$DRY_RUN" = 1 ] && return 0
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out after ${timeout}s waiting for: $what"
      return 1
    fi
    sleep 5
  done
  log "ok: $what"
}

# query CMD...: runs a read-only command and prints its output; prints nothing in dry-run mode.
query() {
  [ "$DRY_RUN" = 1 ] && return 0
  "$@"
}
