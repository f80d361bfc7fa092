#!/usr/bin/env bash
# Step 1: create the kind cluster from k8s/kind-cluster.yaml (skipped when it already exists).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
need kind "install kind (https://kind.sigs.k8s.io), e.g. go install sigs.k8s.io/kind@v0.29.0"
need docker "kind needs a container engine"

if [ "$DRY_RUN" != 1 ] && kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "cluster $CLUSTER exists; reusing it"
else
  run kind create cluster --name "$CLUSTER" --config "$ROOT/k8s/kind-cluster.yaml" \
    --wait 180s ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
fi
kctl get nodes -o wide
