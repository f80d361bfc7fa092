#!/usr/bin/env bash
# Installs the cluster addons into the running from-source cluster (ci/cluster/up.sh) and waits
# until each serves: CoreDNS, metrics-server (metrics.k8s.io), Prometheus and prometheus-adapter
# (custom.metrics.k8s.io). Their images must already be in the cluster's containerd (images.sh).
# Order: DNS first (the adapter finds Prometheus by name), then the aggregated APIs.
# Usage: apply.sh [--no-wait]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
# shellcheck source=ci/cluster/lib.sh
source "$here/../lib.sh"

wait=true
[ "${1:-}" = --no-wait ] && wait=false
python=python3
[ -x "$repo/.venv/bin/python" ] && python="$repo/.venv/bin/python"

# shellcheck source=ci/cluster/addons/versions.sh
source "$here/versions.sh"

kc() { in_cluster kubectl "$@"; }

# Every image the manifests name must be one build-addons.sh builds (versions.sh).
check_images() {
  local built=" $COREDNS_IMAGE $METRICS_SERVER_IMAGE $PROMETHEUS_IMAGE $PROMETHEUS_ADAPTER_IMAGE " ref
  while read -r ref; do
    [[ $built == *" $ref "* ]] || die "a manifest names image $ref; versions.sh builds:$built"
  done < <(sed -n 's/^ *image: *//p' "$here"/*/*.yaml)
}

# What a stuck addon is doing (deployment, its pods' events, logs), then fail.
explain() {
  local ns=$1 deploy=$2 selector
  # shellcheck disable=SC2016  # a Go template, not shell
  selector=$(kc -n "$ns" get deployment "$deploy" \
    -o go-template='{{range $k, $v := .spec.selector.matchLabels}}{{$k}}={{$v}},{{end}}' || true)
  kc -n "$ns" describe deployment "$deploy" >&2 || true
  [ -z "$selector" ] || kc -n "$ns" describe pods -l "${selector%,}" >&2 || true
  kc -n "$ns" logs "deployment/$deploy" --all-containers --tail=50 >&2 || true
  die "addon $ns/$deploy is not ready"
}

rollout() {
  local ns=$1 deploy=$2
  kc -n "$ns" rollout status "deployment/$deploy" --timeout=180s >&2 || explain "$ns" "$deploy"
}

# An aggregated API counts only once the API server reaches it (APIService Available).
available() {
  local apiservice=$1 ns=$2 deploy=$3
  kc wait --for=condition=Available "apiservice/$apiservice" --timeout=120s >&2 \
    || { kc get apiservice "$apiservice" -o yaml >&2 || true; explain "$ns" "$deploy"; }
}

check_images
start=$(date +%s)
log "addons: CoreDNS"
kc apply -f "$here/coredns/coredns.yaml"
log "addons: metrics-server"
kc apply -f "$here/metrics-server/metrics-server.yaml"
log "addons: Prometheus and prometheus-adapter (rules from k8s/prometheus-adapter/values.yaml)"
kc apply -f "$here/prometheus/prometheus.yaml"
"$python" "$here/prometheus-adapter/render_config.py" | kc apply -f -
kc apply -f "$here/prometheus-adapter/prometheus-adapter.yaml"
$wait || exit 0

rollout kube-system coredns
rollout kube-system metrics-server
available v1beta1.metrics.k8s.io kube-system metrics-server
rollout monitoring prometheus
rollout monitoring prometheus-adapter
available v1beta1.custom.metrics.k8s.io monitoring prometheus-adapter
log "addons ready in $(( $(date +%s) - start )) s"
