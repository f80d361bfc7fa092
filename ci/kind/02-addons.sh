#!/usr/bin/env bash
# Step 2: cluster add-ons. Always metrics-server (the CPU-based HPAs need resource metrics); with
# WITH_PROMETHEUS=1 also kube-prometheus-stack (Prometheus Operator, Prometheus, Grafana) and
# prometheus-adapter with tfstack's rules (the custom metric tfserving_requests_per_second).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
need helm "run bash ci/tools/install-helm.sh"
need kubectl "run bash ci/tools/install-helm.sh (installs kubectl too)"

run helm repo add metrics-server https://kubernetes-sigs.github.io/metrics-server/ --force-update
hlm upgrade --install metrics-server metrics-server/metrics-server \
  --version "$METRICS_SERVER_CHART_VERSION" --namespace kube-system \
  -f "$ROOT/k8s/monitoring/metrics-server-values.yaml" --wait --timeout 5m
wait_for "resource metrics (metrics.k8s.io) for the nodes" 300 \
  kubectl --context "$CONTEXT" top nodes

if [ "$WITH_PROMETHEUS" = 1 ]; then
  run helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update
  hlm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
    --version "$KUBE_PROMETHEUS_STACK_VERSION" --namespace monitoring --create-namespace \
    -f "$ROOT/k8s/monitoring/kube-prometheus-stack-values.yaml" --wait --timeout 10m
  hlm upgrade --install prometheus-adapter prometheus-community/prometheus-adapter \
    --version "$PROMETHEUS_ADAPTER_VERSION" --namespace monitoring \
    -f "$ROOT/k8s/prometheus-adapter/values.yaml" --wait --timeout 5m
  wait_for "the custom metrics API (custom.metrics.k8s.io)" 300 \
    kubectl --context "$CONTEXT" get --raw /apis/custom.metrics.k8s.io/v1beta1
fi
