#!/usr/bin/env bash
# Debian packages the local cluster needs on the host (Debian 12's versions): containerd 1.6 with
# its CRI plugin, runc, the reference CNI plugins, etcd 3.4, iptables, conntrack, openssl, and the
# image builders (docker.io's dockerd against its own containerd; debootstrap for the base image).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=ci/cluster/lib.sh
source "$here/lib.sh"

need=(containerd runc containernetworking-plugins iptables conntrack etcd-server openssl
      iproute2 util-linux curl debootstrap docker.io)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  log "host packages present"
  exit 0
fi
[ "$(id -u)" = 0 ] || die "installing ${missing[*]} needs root"
log "installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian packages start nothing here (no systemd); the cluster runs its own daemons.
