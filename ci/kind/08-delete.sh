#!/usr/bin/env bash
# Step 8: delete the kind cluster.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
need kind "install kind"
run kind delete cluster --name "$CLUSTER"
