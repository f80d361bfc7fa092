#!/usr/bin/env bash
# Step 3: build the gateway and models images and load them (and TF Serving's) into the kind nodes.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
need docker "building images needs a container engine"
need kind "install kind"

cd "$ROOT"
# Idempotent: rebuilds only stale models.
run .venv/bin/python -m tfstack.model_repo.build
run docker build -f tfstack/gateway/Dockerfile -t "$GATEWAY_IMAGE" .
run docker build -f model_repo/Dockerfile -t "$MODELS_IMAGE" model_repo
run docker pull "$TFSERVING_IMAGE"
for image in "$GATEWAY_IMAGE" "$MODELS_IMAGE" "$TFSERVING_IMAGE"; do
  run kind load docker-image --name "$CLUSTER" "$image"
done
