#!/usr/bin/env bash
# Step 6: drive load through the gateway with a bounded in-cluster Job and assert that the TF Serving
# HPA scales out, that (almost) every request succeeds meanwhile, and that it scales back in after.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
need kubectl "run bash ci/tools/install-helm.sh"

LOAD_SECONDS=${LOAD_SECONDS:-300}
LOAD_CONCURRENCY=${LOAD_CONCURRENCY:-16}
SCALE_OUT_TIMEOUT=${SCALE_OUT_TIMEOUT:-420}
SCALE_IN_TIMEOUT=${SCALE_IN_TIMEOUT:-600}
hpa="$RELEASE-tfserving"
job="$RELEASE-load"

replicas() {  # current replicas the HPA reports
  kubectl --context "$CONTEXT" -n "$NAMESPACE" get hpa "$hpa" -o jsonpath='{.status.currentReplicas}'
}
min_replicas=$(query kubectl --context "$CONTEXT" -n "$NAMESPACE" get hpa "$hpa" -o jsonpath='{.spec.minReplicas}')
min_replicas=${min_replicas:-1}
log "HPA $hpa: minReplicas $min_replicas, now $(query replicas)"

# The Job manifest is rendered locally (also in dry-run mode, so it can be inspected).
rendered="$ARTIFACTS/load-job.yaml"
mkdir -p "$ARTIFACTS"
sed -e "s|@JOB@|$job|g" -e "s|@IMAGE@|$GATEWAY_IMAGE|g" \
  -e "s|@URL@|http://$RELEASE-gateway:8080/v1/models/half_plus_two:predict|g" \
  -e "s|@SECONDS@|$LOAD_SECONDS|g" -e "s|@CONCURRENCY@|$LOAD_CONCURRENCY|g" \
  "$ROOT/ci/kind/load-job.yaml" > "$rendered"
kctl -n "$NAMESPACE" delete job "$job" --ignore-not-found --wait
kctl -n "$NAMESPACE" apply -f "$rendered"

scaled_out() { [ "$(replicas)" -gt "$min_replicas" ]; }
wait_for "HPA $hpa to scale out above $min_replicas replicas" "$SCALE_OUT_TIMEOUT" scaled_out
log "scaled out: $(query replicas) replicas"
kctl -n "$NAMESPACE" get hpa "$hpa"

kctl -n "$NAMESPACE" wait --for=condition=complete "job/$job" --timeout "$((LOAD_SECONDS + 180))s"
kctl -n "$NAMESPACE" logs "job/$job"

scaled_in() { [ "$(replicas)" -le "$min_replicas" ]; }
wait_for "HPA $hpa to scale back in to $min_replicas replicas" "$SCALE_IN_TIMEOUT" scaled_in
log "scaled back in: $(query replicas) replicas"
