#!/usr/bin/env bash
# Builds the cluster addons' binaries once per machine, each into its own image build context
# $TFSTACK_CACHE/addons/<name>-<version>/ (binary + the few /etc files a FROM-scratch image needs):
#   pause               ci/cluster/addons/pause/pause.c, cc -static -Os
#   coredns             github.com/coredns/coredns                        (Go module proxy)
#   metrics-server      sigs.k8s.io/metrics-server/cmd/metrics-server     (Go module proxy)
#   prometheus-adapter  sigs.k8s.io/prometheus-adapter/cmd/adapter        (Go module proxy)
#   prometheus          github.com/prometheus/prometheus/cmd/prometheus   (Go module proxy)
# Versions: ci/cluster/addons/versions.sh. Go binaries are static (CGO_ENABLED=0), -trimpath, and
# stamped the way each project's Makefile stamps them. Usage: build-addons.sh [NAME...] (default all).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=ci/cluster/lib.sh
source "$here/lib.sh"
# shellcheck source=ci/cluster/addons/versions.sh
source "$here/addons/versions.sh"

ADDONS_CACHE=${ADDONS_CACHE:-$TFSTACK_CACHE/addons}
# go install MODULE@VERSION ignores any go.mod around it; keep the toolchain and flags local.
export GOTOOLCHAIN=local GOFLAGS=

context_dir() { echo "$ADDONS_CACHE/$1-$2"; }

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
  tmp=$(mktemp -d "$ADDONS_CACHE/.build.XXXXXX")
  GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" "$pkg@$version"
  mkdir -p "$ctx"
  mv "$tmp/${pkg##*/}" "$ctx/"
  rmdir "$tmp"
}

# go_build_wrapped CONTEXT MODULE VERSION PACKAGE LDFLAGS [TAGS]: for modules `go install
# MODULE@VERSION` cannot build. It refuses a module whose go.mod has replace directives
# (Prometheus replaces klog), and it fails when the proxy will not list the module's versions
# (prometheus-adapter: 403 on @v/list, asked for a deprecation notice). The build runs in a wrapper
# module that is upstream's go.mod under another name (same requirements, replaces, excludes, so
# the same dependency versions) plus a requirement on the module itself.
go_build_wrapped() {
  local ctx=$1 mod=$2 version=$3 pkg=$4 ldflags=$5 tags=${6:-} dir wrap
  dir=$(go mod download -json "$mod@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)".*/\1/p')
  [ -f "$dir/go.mod" ] || die "go mod download $mod@$version gave no module directory"
  wrap=$(mktemp -d "$ADDONS_CACHE/.build.XXXXXX")
  sed "s#^module .*#module tfstack.local/addonbuild\n\nrequire $mod $version#" "$dir/go.mod" > "$wrap/go.mod"
  cp "$dir/go.sum" "$wrap/go.sum"
  mkdir -p "$ctx"
  (cd "$wrap" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -tags "$tags" -ldflags "$ldflags" \
    -o "$ctx/${pkg##*/}.tmp" "$pkg")
  mv "$ctx/${pkg##*/}.tmp" "$ctx/${pkg##*/}"
  rm -rf "$wrap"
}

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

build_coredns() {
  local ctx mod=github.com/coredns/coredns
  ctx=$(context_dir coredns "$COREDNS_VERSION")
  stage_etc "$ctx"
  [ -x "$ctx/coredns" ] && return 0
  # CoreDNS' Makefile: -X coremain.GitCommit (its version is a constant in coremain/version.go).
  go_install "$ctx" "$mod" "$COREDNS_VERSION" \
    "-s -w -X $mod/coremain.GitCommit=$(module_commit "$mod" "$COREDNS_VERSION")"
}

build_metrics_server() {
  local ctx mod=sigs.k8s.io/metrics-server v=k8s.io/client-go/pkg/version commit
  ctx=$(context_dir metrics-server "$METRICS_SERVER_VERSION")
  stage_etc "$ctx"
  [ -x "$ctx/metrics-server" ] && return 0
  # metrics-server's Makefile stamps client-go's version package (gitVersion, gitCommit, buildDate).
  commit=$(module_commit "$mod" "$METRICS_SERVER_VERSION")
  go_install "$ctx" "$mod/cmd/metrics-server" "$METRICS_SERVER_VERSION" \
    "-s -w -X $v.gitVersion=$METRICS_SERVER_VERSION -X $v.gitCommit=${commit:-unknown} -X $v.buildDate=$(module_time "$mod" "$METRICS_SERVER_VERSION")"
}

build_prometheus_adapter() {
  local ctx
  ctx=$(context_dir prometheus-adapter "$PROMETHEUS_ADAPTER_VERSION")
  stage_etc "$ctx"
  [ -x "$ctx/adapter" ] && return 0
  # prometheus-adapter's Makefile stamps nothing (plain `go build ./cmd/adapter`); neither do we.
  go_build_wrapped "$ctx" sigs.k8s.io/prometheus-adapter "$PROMETHEUS_ADAPTER_VERSION" \
    sigs.k8s.io/prometheus-adapter/cmd/adapter "-s -w"
}

# Not Debian's package binary: Debian builds Prometheus without Kubernetes service discovery (and
# linked against libc). .promu.yml's tags and version stamps, less builtinassets (the built web UI
# is not in the module; the HTTP API, all the adapter uses, is unaffected).
build_prometheus() {
  local ctx mod=github.com/prometheus/prometheus v=github.com/prometheus/common/version commit
  ctx=$(context_dir prometheus "$PROMETHEUS_VERSION")
  stage_etc "$ctx"
  [ -x "$ctx/prometheus" ] && return 0
  commit=$(module_commit "$mod" "$PROMETHEUS_MODULE_VERSION")
  go_build_wrapped "$ctx" "$mod" "$PROMETHEUS_MODULE_VERSION" "$mod/cmd/prometheus" \
    "-s -w -X $v.Version=$PROMETHEUS_VERSION -X $v.Revision=${commit:-unknown} -X $v.Branch=HEAD -X $v.BuildUser=tfstack -X $v.BuildDate=$(module_time "$mod" "$PROMETHEUS_MODULE_VERSION")" \
    netgo,stringlabels
}

all=(pause coredns metrics-server prometheus-adapter prometheus)
[ "$#" -gt 0 ] || set -- "${all[@]}"
mkdir -p "$ADDONS_CACHE"
for name in "$@"; do
  case "$name" in
    pause | coredns | metrics-server | prometheus-adapter | prometheus) ;;
    *) die "unknown addon '$name' (one of: ${all[*]})" ;;
  esac
  start=$(date +%s)
  "build_${name//-/_}"
  log "addon $name ready in $(( $(date +%s) - start )) s ($ADDONS_CACHE)"
done
