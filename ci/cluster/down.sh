#!/usr/bin/env bash
# Tears the local cluster down completely, whatever state up.sh left it in: every process it
# started (and every container process, found through the pods' cgroups, the namespace and the
# mount namespace), the mount and network namespaces (with their mounts, bridge and iptables
# chains), the pod cgroups, the host sysctls the kubelet changed, and $CLUSTER_DIR.
# Then checks that nothing is left and exits non-zero if something is.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=ci/cluster/lib.sh
source "$here/lib.sh"

netns_file="/run/netns/$CLUSTER_NETNS"
mntns_file="$CLUSTER_DIR/mntns"

# Every pid that belongs to the cluster.
cluster_pids() {
  local f pid net_ino="" mnt_ino=""
  [ -e "$netns_file" ] && net_ino=$(stat -L -c %i "$netns_file" 2>/dev/null)
  # The bound namespace file is an nsfs inode once mounted; a plain file is not a namespace.
  if [ -e "$mntns_file" ] && [ "$(stat -f -c %T "$mntns_file" 2>/dev/null)" = nsfs ]; then
    mnt_ino=$(stat -L -c %i "$mntns_file")
  fi
  for f in "$CLUSTER_DIR"/pids/*; do [ -e "$f" ] && cat "$f"; done
  for f in /sys/fs/cgroup/*"$CGROUP_ROOT"; do
    [ -d "$f" ] && find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null
  done
  for f in /proc/[0-9]*; do
    pid=${f#/proc/}
    if { [ -n "$net_ino" ] && [ "$(stat -L -c %i "$f/ns/net" 2>/dev/null)" = "$net_ino" ]; } ||
       { [ -n "$mnt_ino" ] && [ "$(stat -L -c %i "$f/ns/mnt" 2>/dev/null)" = "$mnt_ino" ]; }; then
      echo "$pid"
    fi
  done
}

# 1. Processes: TERM first (containerd and kubelet exit cleanly), then KILL what is left.
for sig in TERM KILL; do
  pids=$(cluster_pids | sort -un | grep -vx "$$" || true)
  [ -n "$pids" ] || break
  # Frozen or stopped tasks never see TERM; thaw them first.
  freezer=/sys/fs/cgroup/freezer$CGROUP_ROOT
  [ -d "$freezer" ] && find "$freezer" -name freezer.state -exec sh -c 'echo THAWED > "$1"' _ {} \; 2>/dev/null
  # shellcheck disable=SC2086  # a list of pids
  kill -"$sig" $pids 2>/dev/null
  # shellcheck disable=SC2086
  kill -CONT $pids 2>/dev/null
  for _ in $(seq 1 50); do
    alive=""
    for p in $pids; do [ -d "/proc/$p" ] && alive+=" $p"; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
done

# 2. Namespaces (their mounts, the cni0 bridge, the iptables chains go with them).
if [ -e "$mntns_file" ]; then umount "$mntns_file" 2>/dev/null; fi
if [ -e "$netns_file" ]; then ip netns del "$CLUSTER_NETNS" 2>/dev/null; fi

# 3. Pod cgroups, deepest first.
for f in /sys/fs/cgroup/*"$CGROUP_ROOT"; do
  [ -d "$f" ] && find "$f" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# 4. Host sysctls the kubelet set.
if [ -f "$CLUSTER_DIR/sysctls.saved" ]; then
  while IFS='=' read -r key value; do
    echo "$value" > "/proc/sys/$key" 2>/dev/null || log "could not restore $key=$value"
  done < "$CLUSTER_DIR/sysctls.saved"
fi

# 5. Empty mount points up.sh made on the host; then state.
if [ -f "$CLUSTER_DIR/created-dirs" ]; then
  while read -r d; do rmdir "$d" 2>/dev/null; done < "$CLUSTER_DIR/created-dirs"
fi
# Keep the components' logs where the caller asked (e2e.sh: .run/cluster/cluster-logs).
if [ -n "${TFSTACK_CLUSTER_KEEP_LOGS:-}" ] && [ -d "$CLUSTER_DIR/logs" ]; then
  mkdir -p "$TFSTACK_CLUSTER_KEEP_LOGS" && cp -r "$CLUSTER_DIR/logs/." "$TFSTACK_CLUSTER_KEEP_LOGS/"
fi
rm -rf "$CLUSTER_DIR" 2>/dev/null

# 6. Check: nothing left.
left=()
[ -e "$netns_file" ] && left+=("network namespace $CLUSTER_NETNS")
[ -e "$CLUSTER_DIR" ] && left+=("$CLUSTER_DIR")
for f in /sys/fs/cgroup/*"$CGROUP_ROOT"; do [ -d "$f" ] && left+=("cgroup $f"); done
grep -q "$CLUSTER_DIR\|tfstack-" /proc/self/mountinfo && left+=("mounts: $(grep -c "$CLUSTER_DIR\|tfstack-" /proc/self/mountinfo)")
ip link show cni0 >/dev/null 2>&1 && left+=("host bridge cni0")
iptables-save 2>/dev/null | grep -q 'KUBE-\|CNI-' && left+=("host iptables chains KUBE-*/CNI-*")
pids=$(cluster_pids | sort -un | grep -vx "$$" || true)
[ -z "$pids" ] || left+=("processes: $pids")
if [ ${#left[@]} -gt 0 ]; then
  log "teardown left: ${left[*]}"
  exit 1
fi
log "cluster torn down: no process, mount, namespace, bridge, chain or cgroup left"
