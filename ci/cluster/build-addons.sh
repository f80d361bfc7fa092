#!/usr/bin/env bash
# Builds the cluster addons' binaries once per machine, each into its own image build context
# $TFSTACK_CACHE/addons/<name>-<version>/ (binary + the few /etc files a FROM-scratch image needs):
#   pause               ci/cluster/addons/pause/pause.c, cc -static -Os
#   coredns             github.com/coredns/coredns, the plugins below     (Go module proxy)
#   metrics-server      sigs.k8s.io/metrics-server/cmd/metrics-server     (Go module proxy)
#   prometheus-adapter  sigs.k8s.io/prometheus-adapter/cmd/adapter        (Go module proxy)
#   prometheus          github.com/prometheus/prometheus/cmd/prometheus,  (Go module proxy)
#                       Kubernetes service discovery only
# Versions: ci/cluster/addons/versions.sh. Go binaries are static (CGO_ENABLED=0), -trimpath, and
# stamped the way each project's Makefile stamps them.
#   build-addons.sh [NAME...]           # builds what is not cached (default: all)
#   build-addons.sh --fetch [NAME...]   # only the downloads (sources and modules, into go's module
#                                       # cache) of what is not cached, for ci/test.sh to run under pytest
set -euo pipefail
# The *_tree functions run in $(...) and call others there: a failing step must stop them too.
shopt -s inherit_errexit
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=ci/cluster/lib.sh
source "$here/lib.sh"
# shellcheck source=ci/cluster/addons/versions.sh
source "$here/addons/versions.sh"

ADDONS_CACHE=${ADDONS_CACHE:-$TFSTACK_CACHE/addons}
# go install MODULE@VERSION ignores any go.mod around it; keep the toolchain and flags local.
export GOTOOLCHAIN=local GOFLAGS=

context_dir() { echo "$ADDONS_CACHE/$1-$2"; }
# This run's temporary trees and GOBINs, removed on any exit (a fetch may be stopped half-way). A
# tree copied from the module cache is read-only until made writable.
tmp_prefix="$ADDONS_CACHE/.build.$$"
trap 'chmod -R u+w "$tmp_prefix".* 2>/dev/null || true; rm -rf "$tmp_prefix".*' EXIT

# Copies the /etc files of a FROM-scratch image (users, resolver order, CA bundle) into a context.
stage_etc() {
  local ctx=$1
  install -D -m 0644 -t "$ctx/etc" "$here/addons/rootfs/etc/passwd" "$here/addons/rootfs/etc/group" \
    "$here/addons/rootfs/etc/nsswitch.conf"
  [ -f /etc/ssl/certs/ca-certificates.crt ] || die "/etc/ssl/certs/ca-certificates.crt missing (apt-get install ca-certificates)"
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$ctx/etc/ssl/certs/ca-certificates.crt"
}

# The module proxy's record of MODULE@VERSION (its .info file: Version, Time, Origin when known).
module_info() {
  local info
  info=$(go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"Info": "\(.*\)".*/\1/p')
  cat "$info"
}

# Prints the commit the module proxy recorded for MODULE@VERSION (empty when it recorded none).
module_commit() {
  module_info "$1" "$2" | sed -n 's/.*"Hash":"\([0-9a-f]\{40\}\)".*/\1/p'
}

# Prints the release time the module proxy recorded for MODULE@VERSION (RFC 3339).
module_time() {
  module_info "$1" "$2" | sed -n 's/.*"Time":"\([^"]*\)".*/\1/p'
}

# go_install CONTEXT PACKAGE VERSION LDFLAGS: a static binary into CONTEXT, replaced atomically.
go_install() {
  local ctx=$1 pkg=$2 version=$3 ldflags=$4 tmp
  tmp=$(mktemp -d "$tmp_prefix.XXXXXX")
  GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" "$pkg@$version"
  mkdir -p "$ctx"
  mv "$tmp/${pkg##*/}" "$ctx/"
  rmdir "$tmp"
}

# module_tree MODULE VERSION: a writable copy of MODULE@VERSION's source (from the module proxy) in a
# temporary directory under $ADDONS_CACHE, printed. Builds run in it as the main module, so its own
# go.mod applies whole (replace and exclude directives included, which `go install MODULE@VERSION`
# refuses: Prometheus replaces klog), and its generators can rewrite the plugin lists.
module_tree() {
  local mod=$1 version=$2 json dir tree
  json=$(go mod download -json "$mod@$version") \
    || die "go mod download $mod@$version: $(sed -n 's/^[[:space:]]*"Error": "\(.*\)".*/\1/p' <<<"$json")"
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)".*/\1/p' <<<"$json")
  [ -f "$dir/go.mod" ] || die "go mod download $mod@$version gave no module directory"
  tree=$(mktemp -d "$tmp_prefix.XXXXXX")
  cp -R "$dir/." "$tree"
  chmod -R u+w "$tree"
  echo "$tree"
}

# go_fetch_tree TREE PACKAGE [TAGS]: downloads every module a build of PACKAGE in TREE needs, then
# removes TREE. `go list -deps` loads the package graph `go build` would (same tags, CGO_ENABLED=0),
# which takes each imported package's module source, and compiles nothing.
go_fetch_tree() {
  local tree=$1 pkg=$2 tags=${3:-}
  (cd "$tree" && CGO_ENABLED=0 go list -deps -tags "$tags" "$pkg" >/dev/null)
  rm -rf "$tree"
}

# go_build_tree CONTEXT/BINARY TREE PACKAGE LDFLAGS [TAGS]: builds PACKAGE (a path inside TREE,
# e.g. ./cmd/adapter) into CONTEXT/BINARY as a static binary, then removes TREE.
go_build_tree() {
  local out=$1 tree=$2 pkg=$3 ldflags=$4 tags=${5:-}
  mkdir -p "$(dirname "$out")"
  (cd "$tree" && CGO_ENABLED=0 go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  rm -rf "$tree"
}

# A context's binary is reused only when it was built from the same recipe (the plugin lists below);
# built_from CONTEXT BINARY RECIPE says so, recipe_done CONTEXT RECIPE records it after a build.
built_from() { [ -x "$1/$2" ] && [ "$(cat "$1/.recipe" 2>/dev/null)" = "$3" ]; }
recipe_done() { printf '%s' "$2" > "$1/.recipe"; }

# CoreDNS compiles in every plugin of its plugin.cfg (cloud DNS providers with their SDKs, tracing,
# etcd, ...). Its documented way to choose them: edit plugin.cfg, `go generate`, `go build`. These are
# the plugins of kubeadm's default Corefile, plus `template` and `log` that ours uses.
COREDNS_PLUGINS="errors log health ready kubernetes prometheus forward cache loop reload loadbalance template"

# Prometheus compiles in every service discovery of its plugins.yml (AWS, Azure, GCE, Consul, ...);
# its documented way to choose them: edit plugins.yml, `make plugins` (go generate -tags plugins
# ./plugins). The cluster's Prometheus discovers pods through the API server only; file and HTTP
# discovery are always built in (plugins/minimum.go).
PROMETHEUS_SD="kubernetes"

build_pause() {
  local ctx src stamp sum
  ctx=$(context_dir pause "$PAUSE_VERSION")
  src="$here/addons/pause/pause.c"
  stamp="$ctx/.source-sha256"
  sum=$(sha256sum "$src" | cut -d' ' -f1)
  if [ -x "$ctx/pause" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then return 0; fi
  command -v cc >/dev/null && [ -f /usr/lib/x86_64-linux-gnu/libc.a ] \
    || { log "installing gcc and libc6-dev for the static pause binary"; apt-get install -y -q gcc libc6-dev >/dev/null; }
  mkdir -p "$ctx"
  cc -static -Os -s -Wall -Wextra -Werror -DVERSION="\"$PAUSE_VERSION\"" -o "$ctx/pause.tmp" "$src"
  mv "$ctx/pause.tmp" "$ctx/pause"
  echo "$sum" > "$stamp"
}

# Each Go addon has build_NAME, fetch_NAME (the same downloads, no compile) and NAME_cached (its
# binary is built, from the current recipe: neither has anything to do). *_tree functions print the
# source tree both work from.
coredns_cached() { built_from "$(context_dir coredns "$COREDNS_VERSION")" coredns "$COREDNS_PLUGINS"; }
metrics_server_cached() { [ -x "$(context_dir metrics-server "$METRICS_SERVER_VERSION")/metrics-server" ]; }
prometheus_adapter_cached() { [ -x "$(context_dir prometheus-adapter "$PROMETHEUS_ADAPTER_VERSION")/adapter" ]; }
prometheus_cached() { built_from "$(context_dir prometheus "$PROMETHEUS_VERSION")" prometheus "$PROMETHEUS_SD"; }

# CoreDNS' source with our plugins only, generated.
coredns_tree() {
  local tree
  tree=$(module_tree github.com/coredns/coredns "$COREDNS_VERSION")
  # plugin.cfg lines are NAME:PACKAGE in execution order; keep ours, in upstream's order.
  grep -E "^($(echo "$COREDNS_PLUGINS" | tr ' ' '|')):" "$tree/plugin.cfg" > "$tree/plugin.cfg.new"
  [ "$(wc -l < "$tree/plugin.cfg.new")" -eq "$(wc -w <<< "$COREDNS_PLUGINS")" ] \
    || die "coredns $COREDNS_VERSION: plugin.cfg lacks one of: $COREDNS_PLUGINS"
  mv "$tree/plugin.cfg.new" "$tree/plugin.cfg"
  (cd "$tree" && go generate coredns.go) >&2
  echo "$tree"
}

fetch_coredns() {
  local tree
  tree=$(coredns_tree)
  go_fetch_tree "$tree" .
}

build_coredns() {
  local ctx tree mod=github.com/coredns/coredns
  ctx=$(context_dir coredns "$COREDNS_VERSION")
  stage_etc "$ctx"
  coredns_cached && return 0
  tree=$(coredns_tree)
  # CoreDNS' Makefile: -X coremain.GitCommit (its version is a constant in coremain/version.go).
  go_build_tree "$ctx/coredns" "$tree" . \
    "-s -w -X $mod/coremain.GitCommit=$(module_commit "$mod" "$COREDNS_VERSION")"
  recipe_done "$ctx" "$COREDNS_PLUGINS"
}

# `go install MODULE/cmd/...@VERSION` builds with MODULE's own go.mod as the main module (it has no
# replace directives), so a copy of its tree resolves the same modules.
fetch_metrics_server() {
  local tree
  tree=$(module_tree sigs.k8s.io/metrics-server "$METRICS_SERVER_VERSION")
  go_fetch_tree "$tree" ./cmd/metrics-server
}

build_metrics_server() {
  local ctx mod=sigs.k8s.io/metrics-server v=k8s.io/client-go/pkg/version commit
  ctx=$(context_dir metrics-server "$METRICS_SERVER_VERSION")
  stage_etc "$ctx"
  metrics_server_cached && return 0
  # metrics-server's Makefile stamps client-go's version package (gitVersion, gitCommit, buildDate).
  commit=$(module_commit "$mod" "$METRICS_SERVER_VERSION")
  go_install "$ctx" "$mod/cmd/metrics-server" "$METRICS_SERVER_VERSION" \
    "-s -w -X $v.gitVersion=$METRICS_SERVER_VERSION -X $v.gitCommit=${commit:-unknown} -X $v.buildDate=$(module_time "$mod" "$METRICS_SERVER_VERSION")"
}

fetch_prometheus_adapter() {
  local tree
  tree=$(module_tree sigs.k8s.io/prometheus-adapter "$PROMETHEUS_ADAPTER_VERSION")
  go_fetch_tree "$tree" ./cmd/adapter
}

build_prometheus_adapter() {
  local ctx tree
  ctx=$(context_dir prometheus-adapter "$PROMETHEUS_ADAPTER_VERSION")
  stage_etc "$ctx"
  prometheus_adapter_cached && return 0
  tree=$(module_tree sigs.k8s.io/prometheus-adapter "$PROMETHEUS_ADAPTER_VERSION")
  # prometheus-adapter's Makefile stamps nothing (plain `go build ./cmd/adapter`); neither do we.
  go_build_tree "$ctx/adapter" "$tree" ./cmd/adapter "-s -w"
}

# Prometheus' source with our service discoveries only, generated; .promu.yml's build tags.
PROMETHEUS_TAGS=netgo,stringlabels
prometheus_tree() {
  local tree sd mod=github.com/prometheus/prometheus
  tree=$(module_tree "$mod" "$PROMETHEUS_MODULE_VERSION")
  for sd in $PROMETHEUS_SD; do
    grep -qx -- "- $mod/discovery/$sd" "$tree/plugins.yml" || die "prometheus $PROMETHEUS_VERSION: no discovery '$sd' in plugins.yml"
    echo "- $mod/discovery/$sd"
  done > "$tree/plugins.yml.new"
  mv "$tree/plugins.yml.new" "$tree/plugins.yml"
  (cd "$tree" && go generate -tags plugins ./plugins) >&2
  echo "$tree"
}

fetch_prometheus() {
  local tree
  tree=$(prometheus_tree)
  go_fetch_tree "$tree" ./cmd/prometheus "$PROMETHEUS_TAGS"
}

# Not Debian's package binary: Debian builds Prometheus without Kubernetes service discovery (and
# linked against libc). .promu.yml's tags and version stamps, less builtinassets (the built web UI
# is not in the module; the HTTP API, all the adapter uses, is unaffected).
build_prometheus() {
  local ctx tree mod=github.com/prometheus/prometheus v=github.com/prometheus/common/version commit
  ctx=$(context_dir prometheus "$PROMETHEUS_VERSION")
  stage_etc "$ctx"
  prometheus_cached && return 0
  tree=$(prometheus_tree)
  commit=$(module_commit "$mod" "$PROMETHEUS_MODULE_VERSION")
  go_build_tree "$ctx/prometheus" "$tree" ./cmd/prometheus \
    "-s -w -X $v.Version=$PROMETHEUS_VERSION -X $v.Revision=${commit:-unknown} -X $v.Branch=HEAD -X $v.BuildUser=tfstack -X $v.BuildDate=$(module_time "$mod" "$PROMETHEUS_MODULE_VERSION")" \
    "$PROMETHEUS_TAGS"
  recipe_done "$ctx" "$PROMETHEUS_SD"
}

all=(pause coredns metrics-server prometheus-adapter prometheus)
verb=build
if [ "${1:-}" = --fetch ]; then verb=fetch; shift; fi
[ "$#" -gt 0 ] || set -- "${all[@]}"
mkdir -p "$ADDONS_CACHE"
for name in "$@"; do
  case "$name" in
    pause | coredns | metrics-server | prometheus-adapter | prometheus) ;;
    *) die "unknown addon '$name' (one of: ${all[*]})" ;;
  esac
  start=$(date +%s)
  if [ "$verb" = build ]; then
    "build_${name//-/_}"
    log "addon $name ready in $(( $(date +%s) - start )) s ($ADDONS_CACHE)"
  # pause is built from a file in this repository: nothing to fetch.
  elif [ "$name" != pause ] && ! "${name//-/_}_cached"; then
    "fetch_${name//-/_}"
    log "addon $name: sources and modules fetched in $(( $(date +%s) - start )) s ($(go env GOMODCACHE))"
  fi
done
