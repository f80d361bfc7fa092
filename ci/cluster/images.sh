#!/usr/bin/env bash
# The project's container images, built here without a registry and cached by content.
#
#   bash ci/cluster/images.sh build [NAME...]           # build what changed; per-image timings
#   bash ci/cluster/images.sh load --address SOCK [NAME...]   # ctr import into SOCK's k8s.io namespace
#   bash ci/cluster/images.sh list                      # NAME REF ARCHIVE, one per line
#   bash ci/cluster/images.sh fetch                     # only the wheelhouse's downloads (below)
#
# How: the base image comes from ci/cluster/base-image.sh (Debian packages). For a build, a private
# containerd + dockerd (Debian's docker.io) run in their own mount namespace, on sockets and state
# under a scratch folder, with no bridge, no iptables rules and no IP forwarding changes; builds use
# the host network, and only ever reach a loopback wheel index. Each image is `docker save`d to
# $TFSTACK_CACHE/images/NAME.tar next to NAME.key, the hash of everything it is built from (context
# files, Dockerfile, build arguments, base image). Both daemons are stopped and the scratch folder
# removed at the end, also on failure. Python packages are downloaded on the host with pip (which
# knows this machine's CA and index settings) into a wheelhouse served on 127.0.0.1 to the builds
# through the PIP_INDEX_URL build argument, so the image builds never talk to PyPI themselves.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck disable=SC1091  # lib.sh: shared settings, linted on its own
source "$here/lib.sh"

IMAGES_DIR=${IMAGES_DIR:-$TFSTACK_CACHE/images}
BASE_REF=${BASE_REF:-tfstack.local/base:bookworm}
# Bump to rebuild every image after a change to how images are built (not to what is in them).
PIPELINE_VERSION=1
APP_VERSION=$(awk -F'"' '/^appVersion:/ {print $2}' "$repo/charts/tfstack/Chart.yaml")
TF_VERSION=$(sed -n 's/^ *"tensorflow==\([^"]*\)",*$/\1/p' "$repo/pyproject.toml")
DOCKER=/usr/bin/docker   # Debian's client, same API version as its dockerd

# ---------------------------------------------------------------------------------------------
# THE IMAGE TABLE. One line per image: NAME|REF|DOCKERFILE|CONTEXT|PATHS|BUILD_ARGS
#   DOCKERFILE, CONTEXT  relative to the repository root, or absolute (e.g. under $TFSTACK_CACHE)
#   PATHS       what is sent as build context, relative to CONTEXT, space-separated ("." = all);
#               files are sent with normalized owner (0) and modes (a+r), whatever the umask
#   BUILD_ARGS  space-separated KEY=VALUE; @BASE@ becomes the base image ref, @PIP_INDEX@ the
#               loopback wheel index (only Dockerfiles that `pip install` need it; they must
#               declare `ARG PIP_INDEX_URL`)
# Addon images (CoreDNS, metrics-server, pause, prometheus-adapter): append a line per
# ci/cluster/addons/<name>/Dockerfile, e.g.
#   "coredns|tfstack.local/coredns:1.12.0|ci/cluster/addons/coredns/Dockerfile|$TFSTACK_CACHE/addons/coredns|.|BASE=@BASE@"
# A Dockerfile may start FROM scratch or FROM the base (ARG BASE + FROM ${BASE}); binaries built
# outside the repo belong in a CONTEXT under $TFSTACK_CACHE, not in git. `images.sh load` imports
# every line, so the cluster gets them with no other change.
# shellcheck disable=SC1091  # versions.sh: shared settings, linted on its own
source "$here/addons/versions.sh"
ADDONS_CACHE=${ADDONS_CACHE:-$TFSTACK_CACHE/addons}
IMAGES=(
  "gateway|tfstack/gateway:$APP_VERSION|tfstack/gateway/Dockerfile|.|pyproject.toml tfstack/gateway tfstack/__init__.py tfstack/runtime tfstack/protocol|BASE_IMAGE=@BASE@ PIP_INDEX_URL=@PIP_INDEX@"
  "models|tfstack/models:$APP_VERSION|model_repo/Dockerfile|model_repo|models models.config batching_parameters.txt monitoring.config|BASE=@BASE@"
  "tfserving-standin|tfstack.local/tfserving-standin:$TF_VERSION|tfstack/modelserver/Dockerfile|.|pyproject.toml tfstack/modelserver tfstack/model_repo/__init__.py tfstack/model_repo/config.py tfstack/model_repo/layout.py tfstack/model_repo/protos.py tfstack/__init__.py tfstack/runtime tfstack/protocol|BASE_IMAGE=@BASE@ PIP_INDEX_URL=@PIP_INDEX@"
  # Cluster addons: FROM scratch, contexts filled by build-addons.sh (versions in addons/versions.sh).
  "pause|$PAUSE_IMAGE|ci/cluster/addons/pause/Dockerfile|$ADDONS_CACHE/pause-$PAUSE_VERSION|pause|"
  "coredns|$COREDNS_IMAGE|ci/cluster/addons/coredns/Dockerfile|$ADDONS_CACHE/coredns-$COREDNS_VERSION|etc coredns|"
  "metrics-server|$METRICS_SERVER_IMAGE|ci/cluster/addons/metrics-server/Dockerfile|$ADDONS_CACHE/metrics-server-$METRICS_SERVER_VERSION|etc metrics-server|"
  "prometheus|$PROMETHEUS_IMAGE|ci/cluster/addons/prometheus/Dockerfile|$ADDONS_CACHE/prometheus-$PROMETHEUS_VERSION|etc prometheus|"
  "prometheus-adapter|$PROMETHEUS_ADAPTER_IMAGE|ci/cluster/addons/prometheus-adapter/Dockerfile|$ADDONS_CACHE/prometheus-adapter-$PROMETHEUS_ADAPTER_VERSION|etc adapter|"
)
# ---------------------------------------------------------------------------------------------

field() { local IFS='|' f; read -r -a f <<<"$1|"; echo "${f[$2]:-}"; }
abspath() { case $1 in /*) echo "$1" ;; *) echo "$repo/$1" ;; esac; }

# Table lines for the names given (all when none).
select_images() {
  local line name found
  if [ $# -eq 0 ]; then printf '%s\n' "${IMAGES[@]}"; return; fi
  for name in "$@"; do
    found=
    for line in "${IMAGES[@]}"; do
      if [ "$(field "$line" 0)" = "$name" ]; then printf '%s\n' "$line"; found=1; fi
    done
    [ -n "$found" ] || die "no image named '$name' (images.sh list)"
  done
}

# The build context as a tar stream with stable order, owners, times and modes, so its hash is a
# content hash and the image's files are readable by any uid. The Dockerfile goes in as
# .tfstack/Dockerfile (it may live outside the context).
context_tar() {
  local line=$1 out=$2 dockerfile context paths
  dockerfile=$(abspath "$(field "$line" 2)")
  context=$(abspath "$(field "$line" 3)")
  read -r -a paths <<<"$(field "$line" 4)"
  [ -f "$dockerfile" ] || die "$(field "$line" 0): no Dockerfile at $dockerfile"
  [ -d "$context" ] || die "$(field "$line" 0): no build context at $context (addons: build-addons.sh)"
  # shellcheck disable=SC2054  # --mode takes a comma-separated mode
  local opts=(--format=gnu --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner
    --mode=u+rw,go+r,go-w,a+X --exclude=__pycache__ --exclude='*.pyc')
  tar "${opts[@]}" -C "$context" -cf "$out" "${paths[@]}"
  tar "${opts[@]}" -C "$(dirname "$dockerfile")" --transform='s|.*|.tfstack/Dockerfile|' \
    -rf "$out" "$(basename "$dockerfile")"
}

image_key() {
  local line=$1 ctx=$2 base_key=$3
  { echo "pipeline $PIPELINE_VERSION base $base_key"; echo "$line"; sha256sum <"$ctx"; } \
    | sha256sum | cut -d' ' -f1
}

is_cached() {
  local name=$1 key=$2
  [ -f "$IMAGES_DIR/$name.tar" ] && [ "$(cat "$IMAGES_DIR/$name.key" 2>/dev/null)" = "$key" ]
}

# ---- wheelhouse: the pinned Python packages, downloaded on the host, served on loopback --------

requirements() {
  python3 - "$repo/pyproject.toml" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project["optional-dependencies"]
# The gateway's runtime + its kubernetes extra + the stand-in's TensorFlow pins (not the dev tools).
wanted = project["dependencies"] + extras["kubernetes"]
wanted += [r for r in extras["server"] if r.split("==")[0] in ("tensorflow", "tensorflow-serving-api")]
print("\n".join(wanted))
PY
}

# Wheels for every requirement and its dependencies, laid out as a PEP 503 index
# (simple/<project>/<wheel>); re-downloaded only when the requirement list changes.
prepare_wheelhouse() {
  local house="$TFSTACK_CACHE/wheels" want
  want=$(requirements | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$house/.key" 2>/dev/null)" = "$want" ]; then echo "$house"; return; fi
  log "images: downloading wheels with the host's pip into $house"
  rm -rf "$house" && mkdir -p "$house/files"
  requirements >"$house/requirements.txt"
  # `|| die`: callers run this in $(...), where set -e does not reach; the key must not be
  # written over a partial download.
  python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    -d "$house/files" -r "$house/requirements.txt" 2> >(grep -v "^WARNING: Location '" >&2) \
    || die "images: pip could not download the wheels into $house"
  python3 - "$house" <<'PY' || die "images: could not index the wheels in $house"
import os, re, sys
house = sys.argv[1]
for wheel in os.listdir(os.path.join(house, "files")):
    project = re.sub(r"[-_.]+", "-", wheel.split("-")[0]).lower()
    os.makedirs(os.path.join(house, "simple", project), exist_ok=True)
    os.symlink(os.path.join("..", "..", "files", wheel), os.path.join(house, "simple", project, wheel))
PY
  echo "$want" >"$house/.key"
  echo "$house"
}

# ---- the private builder ------------------------------------------------------------------------

scratch=
ns_pid=
wheel_pid=
ctx_dir=
pip_index=

builder_start() {
  mkdir -p "$TFSTACK_CACHE/tmp"
  scratch=$(mktemp -d "$TFSTACK_CACHE/tmp/images.XXXXXX")
  mkdir "$scratch/state"
  if [ ! -d /etc/docker ]; then mkdir /etc/docker && touch "$scratch/made-etc-docker"; fi
  command -v dockerd >/dev/null || apt-get install -y -q docker.io >&2
  command -v containerd >/dev/null || apt-get install -y -q containerd runc >&2
  cat >"$scratch/containerd.toml" <<EOF
version = 2
root = "$scratch/state/containerd/root"
state = "$scratch/state/containerd/state"
# dockerd needs only the core services; no CRI, so no CNI and no pod networking.
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$scratch/containerd.sock"
[debug]
  address = ""
[metrics]
  address = ""
EOF
  echo '{}' >"$scratch/daemon.json"
  # Own mount namespace: the daemons' state, their overlay mounts, and what dockerd insists on
  # keeping in /run (plugin folder, shim sockets) live on tmpfs there and vanish with it. Only the
  # sockets, logs and pid files are on disk, where the docker client can reach them.
  # shellcheck disable=SC2016  # expanded by the inner bash
  unshare --mount --propagation private bash -c '
    set -e
    s=$1
    mount -t tmpfs -o mode=0755 tfstack-images-run /run
    mount -t tmpfs -o mode=0700 tfstack-images-state "$s/state"
    mount -t tmpfs -o mode=0755 tfstack-images-etc /etc/docker   # its key.json
    containerd --config "$s/containerd.toml" >"$s/containerd.log" 2>&1 &
    echo $! >"$s/containerd.pid"
    for _ in $(seq 100); do [ -S "$s/containerd.sock" ] && break; sleep 0.1; done
    dockerd --containerd "$s/containerd.sock" --data-root "$s/state/docker" \
      --exec-root "$s/state/exec" \
      -H "unix://$s/docker.sock" --pidfile "$s/docker.pid" --config-file "$s/daemon.json" \
      --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
      --userland-proxy=false --cgroup-parent=/tfstack-images --storage-driver=overlay2 \
      --log-level=warn >"$s/dockerd.log" 2>&1 &
    echo $! >"$s/dockerd.pid"
    wait' _ "$scratch" &
  ns_pid=$!
  export DOCKER_HOST="unix://$scratch/docker.sock" DOCKER_CONFIG="$scratch/docker-config"
  export DOCKER_BUILDKIT=0
  local i
  for i in $(seq 300); do
    "$DOCKER" version >/dev/null 2>&1 && return
    kill -0 "$(cat "$scratch/dockerd.pid" 2>/dev/null || echo "$ns_pid")" 2>/dev/null || break
    [ "$i" -lt 300 ] && sleep 0.2
  done
  tail -n 20 "$scratch/containerd.log" "$scratch/dockerd.log" >&2 || true
  die "images: dockerd did not start"
}

stop_pid() {
  local pid=$1 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  log "images: pid $pid ignored SIGTERM for 30 s; SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

builder_stop() {
  local pid ns proc
  [ -n "$wheel_pid" ] && stop_pid "$wheel_pid"
  if [ -n "$ns_pid" ]; then
    ns=$(readlink "/proc/$ns_pid/ns/mnt" 2>/dev/null || true)
    stop_pid "$(cat "$scratch/dockerd.pid" 2>/dev/null)"
    stop_pid "$(cat "$scratch/containerd.pid" 2>/dev/null)"
    # Anything still in the namespace (a shim of a build step cut short) was started by us.
    if [ -n "$ns" ]; then
      for proc in /proc/[0-9]*; do
        pid=${proc#/proc/}
        [ "$pid" != "$ns_pid" ] && [ "$(readlink "$proc/ns/mnt" 2>/dev/null)" = "$ns" ] \
          && kill -KILL "$pid" 2>/dev/null
      done
    fi
    stop_pid "$ns_pid"
    wait "$ns_pid" 2>/dev/null || true
  fi
  # Build steps' cgroups (cgroup v1, one folder per controller).
  find /sys/fs/cgroup -mindepth 1 -maxdepth 3 -type d -name tfstack-images 2>/dev/null \
    | while read -r dir; do find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true; done
  [ -e "$scratch/made-etc-docker" ] && rmdir /etc/docker
  [ -n "$scratch" ] && rm -rf "$scratch"
  ns_pid='' scratch='' wheel_pid=''
}

# Sets pip_index (and wheel_pid) for the builds.
serve_wheels() {
  local house=$1 i port
  python3 -u -m http.server --bind 127.0.0.1 --directory "$house" 0 >"$scratch/wheels.log" 2>&1 &
  wheel_pid=$!
  for i in $(seq 100); do
    port=$(sed -n 's/^Serving HTTP on .* port \([0-9]*\) .*/\1/p' "$scratch/wheels.log")
    [ -n "$port" ] && { pip_index="http://127.0.0.1:$port/simple/"; return; }
    [ "$i" -lt 100 ] && sleep 0.1
  done
  die "images: the loopback wheel index did not start"
}

# ---- commands -----------------------------------------------------------------------------------

build_one() {
  local line=$1 ctx=$2 key=$3 pip_index=$4 name ref args arg
  name=$(field "$line" 0)
  ref=$(field "$line" 1)
  args=()
  for arg in $(field "$line" 5); do
    arg=${arg//@BASE@/$BASE_REF}
    args+=(--build-arg "${arg//@PIP_INDEX@/$pip_index}")
  done
  "$DOCKER" build --network host --force-rm -f .tfstack/Dockerfile -t "$ref" "${args[@]}" - <"$ctx" \
    >"$scratch/build-$name.log" 2>&1 \
    || { tail -n 40 "$scratch/build-$name.log" >&2; die "images: $name failed to build"; }
  "$DOCKER" save -o "$IMAGES_DIR/$name.tar.tmp" "$ref"
  chmod 0644 "$IMAGES_DIR/$name.tar.tmp"
  mv "$IMAGES_DIR/$name.tar.tmp" "$IMAGES_DIR/$name.tar"
  echo "$key" >"$IMAGES_DIR/$name.key"
}

cmd_build() {
  local t0 base_tar base_key line name ctx key start house todo=() report=()
  t0=$(date +%s)
  mkdir -p "$IMAGES_DIR" "$TFSTACK_CACHE/tmp"
  # One build at a time per machine (CI and a developer may share the cache).
  exec 9>"$IMAGES_DIR/.build.lock"
  flock -w 3600 9 || die "images: another build holds $IMAGES_DIR/.build.lock"
  ctx_dir=$(mktemp -d "$TFSTACK_CACHE/tmp/contexts.XXXXXX")
  trap 'builder_stop; rm -rf "$ctx_dir"' EXIT
  start=$(date +%s)
  base_tar=$(bash "$here/base-image.sh")
  base_key=$(cat "$base_tar.key")
  report+=("$(printf '%-20s %-45s %5ss' base "$BASE_REF" $(($(date +%s) - start)))")
  # models: the SavedModels are built (and checked) by the project's own step first.
  if [ -n "$(select_images "$@" | awk -F'|' '$1 == "models"')" ]; then
    start=$(date +%s)
    if [ -x "$repo/.venv/bin/python" ]; then
      (cd "$repo" && .venv/bin/python -m tfstack.model_repo.build >/dev/null)
    else
      make -C "$repo" models >/dev/null
    fi
    report+=("$(printf '%-20s %-45s %5ss' 'make models' '' $(($(date +%s) - start)))")
  fi
  while read -r line; do
    name=$(field "$line" 0)
    context_tar "$line" "$ctx_dir/$name.tar"
    key=$(image_key "$line" "$ctx_dir/$name.tar" "$base_key")
    if is_cached "$name" "$key"; then
      report+=("$(printf '%-20s %-45s %5s' "$name" "$(field "$line" 1)" cached)")
    else
      todo+=("$line")
    fi
  done < <(select_images "$@")
  if [ ${#todo[@]} -gt 0 ]; then
    start=$(date +%s)
    builder_start
    "$DOCKER" load -q -i "$base_tar" >/dev/null
    if [[ ${todo[*]} == *@PIP_INDEX@* ]]; then
      house=$(prepare_wheelhouse)
      serve_wheels "$house"
    fi
    report+=("$(printf '%-20s %-45s %5ss' 'builder+wheels' '' $(($(date +%s) - start)))")
    for line in "${todo[@]}"; do
      name=$(field "$line" 0)
      start=$(date +%s)
      log "images: building $name ($(field "$line" 1))"
      build_one "$line" "$ctx_dir/$name.tar" \
        "$(image_key "$line" "$ctx_dir/$name.tar" "$base_key")" "$pip_index"
      report+=("$(printf '%-20s %-45s %5ss  %s MB' "$name" "$(field "$line" 1)" \
        $(($(date +%s) - start)) "$(du -m "$IMAGES_DIR/$name.tar" | cut -f1)")")
    done
    start=$(date +%s)
    builder_stop
    report+=("$(printf '%-20s %-45s %5ss' 'builder stop' '' $(($(date +%s) - start)))")
  fi
  printf '%s\n' "${report[@]}"
  printf '%-20s %-45s %5ss\n' total '' $(($(date +%s) - t0))
}

# The network-bound part of a build, for ci/test.sh to run under pytest: the wheelhouse (the base
# image's Debian packages are not worth it: that build overlaps the Kubernetes compile).
cmd_fetch() {
  local start house
  mkdir -p "$IMAGES_DIR"
  exec 9>"$IMAGES_DIR/.build.lock"
  # A build holding the lock fetches for itself.
  flock -n 9 || { log "images: a build is running; not fetching"; return 0; }
  start=$(date +%s)
  house=$(prepare_wheelhouse)
  log "images: wheelhouse ready in $house ($(($(date +%s) - start)) s)"
}

cmd_load() {
  local address='' line name
  while [ $# -gt 0 ]; do
    case $1 in
      --address) address=$2; shift 2 ;;
      --address=*) address=${1#*=}; shift ;;
      *) break ;;
    esac
  done
  [ -S "$address" ] || die "load: --address must be a containerd socket (got '$address')"
  while read -r line; do
    name=$(field "$line" 0)
    [ -f "$IMAGES_DIR/$name.tar" ] || die "load: $name is not built (images.sh build)"
    log "images: importing $(field "$line" 1)"
    ctr --address "$address" -n k8s.io images import "$IMAGES_DIR/$name.tar" >/dev/null
  done < <(select_images "$@")
}

cmd_list() {
  local line
  while read -r line; do
    printf '%s %s %s\n' "$(field "$line" 0)" "$(field "$line" 1)" "$IMAGES_DIR/$(field "$line" 0).tar"
  done < <(select_images "$@")
}

case ${1:-} in
  build) shift; cmd_build "$@" ;;
  load) shift; cmd_load "$@" ;;
  list) shift; cmd_list "$@" ;;
  fetch) shift; cmd_fetch ;;
  *) echo "usage: $0 build [NAME...] | load --address CONTAINERD_SOCK [NAME...] | list | fetch" >&2; exit 2 ;;
esac
