# Shared settings for the from-source cluster scripts (sourced, not run).
# shellcheck shell=bash
# The settings are read by the scripts that source this file.
# shellcheck disable=SC2034
K8S_VERSION=${K8S_VERSION:-v1.34.4}
# Built binaries and images are machine-wide, so later clones (CI) on the same machine reuse them.
TFSTACK_CACHE=${TFSTACK_CACHE:-/var/cache/tfstack}
K8S_CACHE="$TFSTACK_CACHE/k8s/$K8S_VERSION"

log() { printf '%s cluster: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The running cluster: its state (certs, etcd, containerd, kubelet, logs) lives in CLUSTER_DIR,
# its network in the namespace CLUSTER_NETNS, its mounts in the mount namespace bound at
# CLUSTER_DIR/mntns. Short paths: unix socket paths are limited to 108 bytes.
CLUSTER_DIR=${TFSTACK_CLUSTER_DIR:-/var/lib/tfstack-cluster}
CLUSTER_NETNS=${TFSTACK_CLUSTER_NETNS:-tfstack-e2e}
# The node's address inside CLUSTER_NETNS (on a veth inside it; nothing outside the namespace).
NODE_NAME=tfstack-node
NODE_IP=10.250.0.2
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
CLUSTER_DNS_IP=10.96.0.10
POD_CIDR=10.244.0.0/16
NODE_POD_CIDR=10.244.0.0/24
# cgroup parent of every pod (cgroupfs driver): one subtree to clean up in each v1 hierarchy.
CGROUP_ROOT=/tfstack
K8S_BIN="$K8S_CACHE/bin"
CONTAINERD_SOCK="$CLUSTER_DIR/containerd/containerd.sock"
KUBECONFIG_ADMIN="$CLUSTER_DIR/pki/admin.kubeconfig"

# Run a command inside the cluster's network namespace (where the API server, Services and pods
# are reachable) with the admin kubeconfig and the built kubectl on PATH.
in_cluster() {
  nsenter --net="/run/netns/$CLUSTER_NETNS" -- env KUBECONFIG="$KUBECONFIG_ADMIN" \
    PATH="$K8S_BIN:$PATH" "$@"
}
# Addon versions and image references, among them containerd's sandbox image ($PAUSE_IMAGE).
# shellcheck source=ci/cluster/addons/versions.sh
source "$(dirname "${BASH_SOURCE[0]}")/addons/versions.sh"

# containerd's configuration as the cluster needs it on these hosts, on stdout:
#   containerd_config ROOT STATE SOCKET CNI_BIN_DIR CNI_CONF_DIR
# runc with the cgroupfs driver, overlayfs, the locally built sandbox image, and
# restrict_oom_score_adj (without it every sandbox fails here: the host refuses a negative
# oom_score_adj, as it lacks CAP_SYS_RESOURCE).
containerd_config() {
  cat <<TOML
version = 2
root = "$1"
state = "$2"
[grpc]
  address = "$3"
[ttrpc]
  address = "$3.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$2/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$4"
    conf_dir = "$5"
TOML
}
