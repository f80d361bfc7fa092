#!/usr/bin/env bash
# Brings up a single-node Kubernetes cluster from the binaries build-k8s.sh made:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (CRI, runc, CNI bridge),
# kubelet and kube-proxy (iptables mode), all as processes of this host, inside
#   - a network namespace of their own ($CLUSTER_NETNS; the node's address $NODE_IP lives on an
#     interface there, so no cluster traffic can leave it), and
#   - a mount namespace of their own (bound at $CLUSTER_DIR/mntns, private from the host), with
#     tmpfs over the host paths that the kubelet, containerd and CNI hard-code (/var/lib/cni,
#     /var/log/pods, /run/netns, ...), so their state vanishes with the namespace.
# Pods live under the cgroup $CGROUP_ROOT in every v1 hierarchy. down.sh undoes all of it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=ci/cluster/lib.sh
source "$here/lib.sh"

[ "$(id -u)" = 0 ] || die "the local cluster needs root (namespaces, cgroups, mounts)"
[ -x "$K8S_BIN/kubelet" ] || die "no Kubernetes binaries in $K8S_BIN: run ci/cluster/build-k8s.sh"
if [ -e "/run/netns/$CLUSTER_NETNS" ] || [ -e "$CLUSTER_DIR" ]; then
  log "a previous cluster is still here; tearing it down first"
  bash "$here/down.sh"
fi

mkdir -p "$CLUSTER_DIR"/{logs,pids,etcd,containerd,kubelet,cni/net.d,cni/ipam}
start=$(date +%s)

# --- host state the kubelet changes: remembered here, restored by down.sh ---
for s in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops \
    kernel/keys/root_maxkeys kernel/keys/root_maxbytes; do
  echo "$s=$(cat "/proc/sys/$s")"
done > "$CLUSTER_DIR/sysctls.saved"

# --- the pods' cgroup parent, in every hierarchy (the kubelet wants it to exist) ---
for hierarchy in /sys/fs/cgroup/*/; do
  [ -e "$hierarchy/cgroup.procs" ] || continue
  mkdir -p "$hierarchy${CGROUP_ROOT#/}"
  # A new v1 cpuset starts with no CPUs and no memory nodes: inherit the parent's.
  for f in cpuset.cpus cpuset.mems; do
    [ -e "$hierarchy$f" ] && cat "$hierarchy$f" > "$hierarchy${CGROUP_ROOT#/}/$f"
  done
done

# --- network namespace: loopback + the node's address ---
[ -d /run/netns ] || echo /run/netns >> "$CLUSTER_DIR/created-dirs"
ip netns add "$CLUSTER_NETNS"
nsx() { ip netns exec "$CLUSTER_NETNS" "$@"; }
nsx ip link set lo up
# A veth pair with both ends inside (this kernel has no dummy driver): an interface to carry the
# node's address and the default route.
nsx ip link add node0 type veth peer name node0-peer
nsx ip addr add "$NODE_IP/24" dev node0
nsx ip link set node0-peer up
nsx ip link set node0 up
nsx ip route add default dev node0
nsx sysctl -qw net.ipv4.ip_forward=1
nsx sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true

# --- mount namespace: private from the host, shared inside (the kubelet needs propagation) ---
touch "$CLUSTER_DIR/mntns"
unshare --mount="$CLUSTER_DIR/mntns" --propagation private true
mnt() { nsenter --mount="$CLUSTER_DIR/mntns" -- "$@"; }
mnt mount --make-rshared /
for d in /var/lib/cni /var/log/pods /var/log/containers /run/netns /run/containerd /etc/cni \
    /var/lib/kubelet /opt/cni; do
  # An empty mount point made on the host is removed again by down.sh.
  [ -d "$d" ] || { mkdir -p "$d" && echo "$d" >> "$CLUSTER_DIR/created-dirs"; }
  mnt mount -t tmpfs -o mode=0755,size=256m "tfstack-$(basename "$d")" "$d"
done

# A daemon of the cluster: in both namespaces, in its own session, its pid recorded.
daemon() {  # name, command...
  local name=$1; shift
  nsenter --mount="$CLUSTER_DIR/mntns" --net="/run/netns/$CLUSTER_NETNS" -- \
    setsid "$@" >"$CLUSTER_DIR/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$CLUSTER_DIR/pids/$name"
}
wait_for() {  # what, seconds, command...
  local what=$1 secs=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$what not ready after ${secs}s (logs: $CLUSTER_DIR/logs)"
    sleep 0.5
  done
  log "$what ready ($(( $(date +%s) - start )) s)"
}

bash "$here/pki.sh"
pki="$CLUSTER_DIR/pki"

# --- etcd ---
daemon etcd etcd --name tfstack --data-dir "$CLUSTER_DIR/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster tfstack=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
  --unsafe-no-fsync --quota-backend-bytes 2147483648
wait_for etcd 30 nsx curl -sf http://127.0.0.1:2381/health

# --- control plane ---
daemon kube-apiserver "$K8S_BIN/kube-apiserver" \
  --etcd-servers=http://127.0.0.1:2379 \
  --advertise-address="$NODE_IP" --bind-address=0.0.0.0 --secure-port=6443 \
  --service-cluster-ip-range="$SERVICE_CIDR" --service-node-port-range=30000-32767 \
  --allow-privileged=false \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --client-ca-file="$pki/ca.crt" \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$pki/ca.crt" \
  --kubelet-preferred-address-types=InternalIP \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --requestheader-client-ca-file="$pki/front-proxy-ca.crt" \
  --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$pki/front-proxy-client.crt" \
  --proxy-client-key-file="$pki/front-proxy-client.key" \
  --enable-aggregator-routing=true \
  --profiling=false
wait_for kube-apiserver 90 in_cluster kubectl get --raw /readyz

daemon kube-controller-manager "$K8S_BIN/kube-controller-manager" \
  --kubeconfig="$pki/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$pki/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$pki/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false \
  --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
  --root-ca-file="$pki/ca.crt" --service-account-private-key-file="$pki/sa.key" \
  --use-service-account-credentials=true \
  --allocate-node-cidrs=true --cluster-cidr="$POD_CIDR" --node-cidr-mask-size=24 \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --horizontal-pod-autoscaler-sync-period=5s \
  --profiling=false
daemon kube-scheduler "$K8S_BIN/kube-scheduler" \
  --kubeconfig="$pki/scheduler.kubeconfig" \
  --authentication-kubeconfig="$pki/scheduler.kubeconfig" \
  --authorization-kubeconfig="$pki/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --profiling=false

# --- containerd (CRI), runc, CNI bridge ---
containerd_config "$CLUSTER_DIR/containerd/root" "$CLUSTER_DIR/containerd/state" \
  "$CONTAINERD_SOCK" /usr/lib/cni "$CLUSTER_DIR/cni/net.d" > "$CLUSTER_DIR/containerd/config.toml"
cat > "$CLUSTER_DIR/cni/net.d/10-tfstack.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "tfstack",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$CLUSTER_DIR/cni/ipam",
        "ranges": [[{"subnet": "$NODE_POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
daemon containerd containerd --config "$CLUSTER_DIR/containerd/config.toml"
wait_for containerd 30 ctr --address "$CONTAINERD_SOCK" version

log "importing images into the cluster's containerd"
bash "$here/images.sh" load --address "$CONTAINERD_SOCK"

# The chart's image overrides for this cluster: the images just imported, never pulled. The TF
# Serving image is tfstack's stand-in (tfstack/modelserver/Dockerfile), run by the chart's unchanged
# command, flags, mounts and security settings; a user's cluster runs tensorflow/serving.
ref() { bash "$here/images.sh" list | awk -v n="$1" '$1 == n {print $2}'; }
image_values() {  # key, image ref
  printf '%s:\n  image:\n    repository: %s\n    tag: "%s"\n    pullPolicy: Never\n' "$1" "${2%:*}" "${2##*:}"
}
{
  echo "# Written by ci/cluster/up.sh: images built here (ci/cluster/images.sh), never pulled."
  image_values gateway "$(ref gateway)"
  image_values modelSource "$(ref models)"
  image_values tfserving "$(ref tfserving-standin)"
} > "$CLUSTER_DIR/values-images.yaml"

# --- kubelet ---
echo "nameserver 127.0.0.1" > "$CLUSTER_DIR/kubelet/resolv.conf"
cat > "$CLUSTER_DIR/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$pki/kubelet-serving.crt"
tlsPrivateKeyFile: "$pki/kubelet-serving.key"
containerRuntimeEndpoint: "unix://$CONTAINERD_SOCK"
cgroupDriver: cgroupfs
cgroupRoot: "$CGROUP_ROOT"
# Kubernetes 1.34 still runs on cgroup v1 (deprecated); 1.35+ refuses it unless this is false.
failCgroupV1: false
failSwapOn: false
clusterDNS: ["$CLUSTER_DNS_IP"]
clusterDomain: cluster.local
resolvConf: "$CLUSTER_DIR/kubelet/resolv.conf"
volumePluginDir: "$CLUSTER_DIR/kubelet/volume-plugins"
# This host refuses a negative oom_score_adj (no CAP_SYS_RESOURCE).
oomScoreAdj: 0
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: "200Mi", nodefs.available: "2%", imagefs.available: "2%"}
syncFrequency: 10s
fileCheckFrequency: 5s
YAML
daemon kubelet "$K8S_BIN/kubelet" \
  --config="$CLUSTER_DIR/kubelet/config.yaml" \
  --kubeconfig="$pki/kubelet.kubeconfig" \
  --root-dir="$CLUSTER_DIR/kubelet/root" --cert-dir="$CLUSTER_DIR/kubelet/pki" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP"

# --- kube-proxy (iptables mode; rules live in the namespace) ---
cat > "$CLUSTER_DIR/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: "$POD_CIDR"
hostnameOverride: "$NODE_NAME"
clientConnection: {kubeconfig: "$pki/kube-proxy.kubeconfig"}
# Host-wide conntrack sysctls stay as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
metricsBindAddress: 127.0.0.1:10249
YAML
daemon kube-proxy "$K8S_BIN/kube-proxy" --config="$CLUSTER_DIR/kube-proxy.yaml"

node_ready() {
  [ "$(in_cluster kubectl get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
wait_for "node $NODE_NAME" 120 node_ready

# --- cluster addons: CoreDNS, metrics-server, Prometheus, prometheus-adapter ---
bash "$here/addons/apply.sh"
touch "$CLUSTER_DIR/READY"
log "cluster up in $(( $(date +%s) - start )) s: $(in_cluster kubectl version -o json | \
  python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])'); KUBECONFIG=$KUBECONFIG_ADMIN (inside netns $CLUSTER_NETNS)"
