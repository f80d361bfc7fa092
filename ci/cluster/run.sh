#!/usr/bin/env bash
# Runs a command inside the running local cluster's network namespace, with its admin kubeconfig,
# the built kubectl and the repository's tools on PATH, and the e2e suite's settings:
#   bash ci/cluster/run.sh kubectl get pods -A
#   bash ci/cluster/run.sh .venv/bin/python -m pytest tests/e2e -m cluster -k probes
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=ci/cluster/lib.sh
source "$here/lib.sh"
ROOT=$(cd "$here/../.." && pwd)
[ -e "/run/netns/$CLUSTER_NETNS" ] || die "no local cluster is running (make e2e-up)"
exec nsenter --net="/run/netns/$CLUSTER_NETNS" -- env KUBECONFIG="$KUBECONFIG_ADMIN" \
  PATH="$ROOT/.tools/bin:$ROOT/.venv/bin:$K8S_BIN:$PATH" \
  TFSTACK_E2E_KUBECONFIG="$KUBECONFIG_ADMIN" TFSTACK_E2E_DIRECT=1 \
  TFSTACK_E2E_IMAGE_VALUES="$CLUSTER_DIR/values-images.yaml" \
  TFSTACK_E2E_ARTIFACTS="${TFSTACK_ARTIFACTS:-$ROOT/.run/cluster}" "$@"
