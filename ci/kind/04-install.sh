#!/usr/bin/env bash
# Step 4: helm install the chart with the kind values (local images, small CPU requests so load
# moves the HPA) and wait until TF Serving has loaded its models and the gateway is ready.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
need helm "run bash ci/tools/install-helm.sh"

# The chart ships no models: serve the example ones the models image holds.
values=(-f "$ROOT/charts/tfstack/examples/example-models.yaml" -f "$ROOT/ci/kind/values-kind.yaml")
if [ "$WITH_PROMETHEUS" = 1 ]; then
  values+=(-f "$ROOT/ci/kind/values-kind-prometheus.yaml")
fi
hlm upgrade --install "$RELEASE" "$ROOT/charts/tfstack" --namespace "$NAMESPACE" --create-namespace \
  "${values[@]}" --set "fullnameOverride=$RELEASE" --set "gateway.image.tag=$IMAGE_TAG" --set "modelSource.image.tag=$IMAGE_TAG" \
  --set "tfserving.image.tag=${TFSERVING_IMAGE##*:}" --wait --timeout 15m
kctl -n "$NAMESPACE" rollout status "deployment/$RELEASE-tfserving" --timeout 15m
kctl -n "$NAMESPACE" rollout status "deployment/$RELEASE-gateway" --timeout 5m
kctl -n "$NAMESPACE" get pods,svc,hpa,pdb -o wide
