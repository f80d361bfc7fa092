#!/usr/bin/env bash
# Step 5: `helm test` (a real prediction through the gateway, answer checked), then the cluster
# tests in tests/e2e (pytest -m kind): model reload without restart, metrics, RBAC, security.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
need helm "run bash ci/tools/install-helm.sh"

hlm test "$RELEASE" --namespace "$NAMESPACE" --logs --timeout 5m
cd "$ROOT"
# tests/e2e/conftest.py reads where the release is from these.
export TFSTACK_KIND_CONTEXT="$CONTEXT" TFSTACK_NAMESPACE="$NAMESPACE" TFSTACK_RELEASE="$RELEASE"
run .venv/bin/python -m pytest -m kind tests/e2e -v -p no:cacheprovider
