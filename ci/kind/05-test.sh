#!/usr/bin/env bash
# Step 5: `helm test` of the release 04-install.sh made, then the cluster suite (tests/e2e,
# pytest -m cluster) — the same suite ci/cluster runs on Kubernetes built here. It installs the
# chart itself, in namespaces of its own, with tests/e2e/values/user.yaml plus the image
# overrides written below, and reaches the cluster through kubectl port-forward.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
need helm "run bash ci/tools/install-helm.sh"

# No --logs: the chart deletes the test pod once it succeeds, and helm then fails to fetch its logs.
hlm test "$RELEASE" --namespace "$NAMESPACE" --timeout 5m
cd "$ROOT"
mkdir -p "$ARTIFACTS/e2e"
images="$ARTIFACTS/values-images.yaml"
cat > "$images" <<YAML
# Image overrides for the cluster suite on kind (written by ci/kind/05-test.sh).
gateway:
  image: {repository: ${GATEWAY_IMAGE%:*}, tag: "$IMAGE_TAG", pullPolicy: Never}
modelSource:
  image: {repository: ${MODELS_IMAGE%:*}, tag: "$IMAGE_TAG", pullPolicy: Never}
tfserving:
  image: {repository: ${TFSERVING_IMAGE%:*}, tag: "${TFSERVING_IMAGE##*:}", pullPolicy: IfNotPresent}
YAML
# tests/e2e/conftest.py reads where the cluster is, and what it has, from these.
export TFSTACK_E2E_KUBECONFIG="${KUBECONFIG:-$HOME/.kube/config}" TFSTACK_E2E_CONTEXT="$CONTEXT"
export TFSTACK_E2E_IMAGE_VALUES="$images" TFSTACK_E2E_ARTIFACTS="$ARTIFACTS/e2e"
if [ "$WITH_PROMETHEUS" != 1 ]; then
  # No prometheus-adapter without --with-prometheus: the custom-metric HPA test reports "not run".
  export TFSTACK_E2E_NO_CUSTOM_METRICS=1
fi
run .venv/bin/python -m pytest -m cluster tests/e2e -v -p no:cacheprovider
