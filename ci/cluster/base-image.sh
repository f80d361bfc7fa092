#!/usr/bin/env bash
# The base image every project image is built on, made here from Debian's packages (no registry):
# `debootstrap --variant=minbase bookworm` + python3 (3.11) with a venv at /opt/venv first on PATH,
# so it stands in for python:3.11-slim in our Dockerfiles: `python` and `pip` are the venv's
# (Debian's system pip refuses installs, PEP 668), bash, coreutils, useradd, CA certificates.
#
#   bash ci/cluster/base-image.sh      # prints the path of the image archive, building it if needed
#
# The result is a docker-archive tarball ($TFSTACK_CACHE/images/base.tar, tag BASE_REF) that both
# `docker load` and `ctr images import` accept. It is rebuilt only when this recipe (this file, the
# Debian mirror) changes; security updates arrive with such a change, not on every run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC1091  # lib.sh: shared settings, linted on its own
source "$here/lib.sh"

BASE_REF=${BASE_REF:-tfstack.local/base:bookworm}
BASE_SUITE=bookworm
# Beyond minbase (which already has bash, coreutils, passwd, libstdc++): what our Dockerfiles use.
BASE_PACKAGES=python3,python3-venv,python-is-python3,ca-certificates
images_dir="$TFSTACK_CACHE/images"
out="$images_dir/base.tar"

# The first deb822 URI of the host's Debian sources (the mirror this machine is allowed to use).
debian_mirror() {
  local uri
  uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources \
    2>/dev/null || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# What the image is made from: the two functions below (as bash parses them, so comments and
# the rest of this file do not count), the package list, the suite, the mirror and the tag.
recipe_key() {
  { declare -f populate_rootfs pack_image
    echo "$BASE_PACKAGES $BASE_SUITE $(debian_mirror) $BASE_REF"; } | sha256sum | cut -d' ' -f1
}

# Runs inside a private mount namespace: the /proc mount for the chroot and anything debootstrap
# mounts disappear with it, also when a step fails.
populate_rootfs() {
  local rootfs=$1 mirror=$2
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$BASE_SUITE" "$rootfs" "$mirror"
  mount -t proc proc "$rootfs/proc"
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  # Same suites as the host (bookworm-updates, bookworm-security): the image gets security fixes.
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/debian.sources"
    rm -f "$rootfs/etc/apt/sources.list"
  fi
  chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -euc 'apt-get update -q && apt-get -y -q --no-install-recommends upgrade && apt-get clean
             python3 -m venv /opt/venv
             /opt/venv/bin/python -c "import sys, ssl, tomllib; assert sys.version_info[:2] == (3, 11)"
             /opt/venv/bin/pip --version'
  umount "$rootfs/proc"
  # What a container runtime provides, and what only grows the image.
  : > "$rootfs/etc/resolv.conf"
  local d
  for d in var/lib/apt/lists var/cache/apt var/log usr/share/doc usr/share/man usr/share/info \
    tmp var/tmp dev run; do
    [ ! -d "${rootfs:?}/$d" ] || find "$rootfs/$d" -mindepth 1 -delete
  done
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
}

# A one-layer docker-archive (manifest.json + config + layer) around the root filesystem.
pack_image() {
  local rootfs=$1 work=$2
  mkdir -p "$work/archive"
  tar -C "$rootfs" --numeric-owner --sort=name -cf "$work/layer.tar" .
  python3 - "$work" "$BASE_REF" <<'PY'
import hashlib, json, os, shutil, sys
work, ref = sys.argv[1], sys.argv[2]
digest = hashlib.sha256()
with open(os.path.join(work, "layer.tar"), "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
layer_id = digest.hexdigest()
os.makedirs(os.path.join(work, "archive", layer_id))
shutil.move(os.path.join(work, "layer.tar"), os.path.join(work, "archive", layer_id, "layer.tar"))
config = {
    "architecture": "amd64",
    "os": "linux",
    "created": "1970-01-01T00:00:00Z",
    "config": {
        "Env": [
            "PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "VIRTUAL_ENV=/opt/venv",
            "LANG=C.UTF-8",
        ],
        "Cmd": ["python3"],
        "Labels": {
            "org.opencontainers.image.title": "tfstack base (Debian bookworm minbase + python3.11)",
            "org.opencontainers.image.description": "Built locally by ci/cluster/base-image.sh",
        },
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + layer_id]},
    "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "ci/cluster/base-image.sh"}],
}
blob = json.dumps(config, sort_keys=True).encode()
config_name = hashlib.sha256(blob).hexdigest() + ".json"
with open(os.path.join(work, "archive", config_name), "wb") as f:
    f.write(blob)
manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": [layer_id + "/layer.tar"]}]
with open(os.path.join(work, "archive", "manifest.json"), "w") as f:
    json.dump(manifest, f)
PY
  tar -C "$work/archive" --sort=name -cf "$work/base.tar" .
}

main() {
  local key work
  key=$(recipe_key)
  if [ -f "$out" ] && [ "$(cat "$out.key" 2>/dev/null)" = "$key" ]; then
    echo "$out"
    return
  fi
  [ "$(id -u)" = 0 ] || die "base image: debootstrap needs root"
  command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >&2
  mkdir -p "$images_dir" "$TFSTACK_CACHE/tmp"
  work=$(mktemp -d "$TFSTACK_CACHE/tmp/base.XXXXXX")
  # shellcheck disable=SC2064  # expand now: $work is fixed for this run
  trap "rm -rf '$work'" EXIT
  log "base image: debootstrap $BASE_SUITE from $(debian_mirror) (about a minute)"
  unshare --mount --propagation private \
    bash -c "$(declare -f populate_rootfs); BASE_SUITE=$BASE_SUITE BASE_PACKAGES=$BASE_PACKAGES; \
      set -euo pipefail; populate_rootfs \"\$1\" \"\$2\"" \
    _ "$work/rootfs" "$(debian_mirror)" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; die "base image: debootstrap failed"; }
  pack_image "$work/rootfs" "$work"
  mv "$work/base.tar" "$out"
  echo "$key" > "$out.key"
  log "base image: $BASE_REF, $(du -m "$out" | cut -f1) MB"
  echo "$out"
}

main "$@"
