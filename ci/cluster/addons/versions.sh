# Pinned versions and image references of the cluster addons (sourced, not run).
# One place for them: build-addons.sh, the image table in images.sh and the manifests' image
# references (apply.sh refuses manifests whose images differ) all follow these.
# shellcheck shell=bash
# shellcheck disable=SC2034  # used by the scripts that source this file
PAUSE_VERSION=3.10                     # the sandbox image Kubernetes 1.34's kubeadm also uses (3.10.x)
COREDNS_VERSION=v1.12.4                # latest 1.12 patch; Kubernetes 1.34 ships CoreDNS 1.12.1
METRICS_SERVER_VERSION=v0.8.0
PROMETHEUS_ADAPTER_VERSION=v0.12.0     # latest release; the module proxy serves v0.11.2 and v0.12.0
PROMETHEUS_VERSION=2.53.3              # 2.53 is the long-term-support 2.x line; its module version is v0.53.3
PROMETHEUS_MODULE_VERSION=v0.53.3

ADDON_IMAGE_PREFIX=tfstack.local
PAUSE_IMAGE=$ADDON_IMAGE_PREFIX/pause:$PAUSE_VERSION
COREDNS_IMAGE=$ADDON_IMAGE_PREFIX/coredns:$COREDNS_VERSION
METRICS_SERVER_IMAGE=$ADDON_IMAGE_PREFIX/metrics-server:$METRICS_SERVER_VERSION
PROMETHEUS_ADAPTER_IMAGE=$ADDON_IMAGE_PREFIX/prometheus-adapter:$PROMETHEUS_ADAPTER_VERSION
PROMETHEUS_IMAGE=$ADDON_IMAGE_PREFIX/prometheus:v$PROMETHEUS_VERSION
