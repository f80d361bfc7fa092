#!/usr/bin/env bash
# Builds Kubernetes' server binaries from the Go module k8s.io/kubernetes at one pinned version,
# into the machine-wide cache ($TFSTACK_CACHE/k8s/$K8S_VERSION/bin), once per machine.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces ~30 staging modules with
# ./staging/... paths. A wrapper module requires k8s.io/kubernetes and replaces each staging module
# k8s.io/NAME with its published twin k8s.io/NAME v0.<minor>.<patch>; the server binaries are then
# built from k8s.io/kubernetes/cmd/... with the version stamped the way upstream's build does, so the
# API server reports its true version (Helm's kubeVersion checks depend on it).
#
#   build-k8s.sh           # the binaries, unless cached
#   build-k8s.sh --fetch   # only the downloads (into go's module cache): the network-bound part, which
#                          # ci/test.sh runs under pytest; does nothing when the binaries are cached
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=ci/cluster/lib.sh
source "$here/lib.sh"

out="$K8S_CACHE/bin"
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
fetch_only=0
case ${1:-} in
  --fetch) fetch_only=1 ;;
  "") ;;
  *) die "usage: build-k8s.sh [--fetch]" ;;
esac
have_all() { local b; for b in "${binaries[@]}"; do [ -x "$out/$b" ] || return 1; done; }
if have_all && [ "$("$out/kube-apiserver" --version 2>/dev/null)" = "Kubernetes $K8S_VERSION" ]; then
  log "kubernetes $K8S_VERSION binaries cached in $out"
  exit 0
fi

command -v go >/dev/null || die "go is needed to build Kubernetes (Go >= 1.24)"
mod="$K8S_CACHE/module"
staging_minor="v0.${K8S_VERSION#v1.}"

# The wrapper module in $mod, tidied: every module the build needs is then in go's module cache
# (tidy downloads what any package of the build graph imports). Rewritten from scratch each time,
# so an interrupted run leaves nothing that the next one trusts; with the modules cached it takes
# a few seconds and no network.
wrapper_module() {
  local upstream_mod b
  mkdir -p "$mod"
  cd "$mod"
  GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
  upstream_mod=$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/go.mod
  {
    echo "module tfstack.local/k8sbuild"
    echo
    sed -n 's/^go \(.*\)/go \1/p' "$upstream_mod"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging_minor"'#p' "$upstream_mod"
    echo ")"
  } > go.mod
  # A file importing each command keeps `go mod tidy` from dropping what the build needs.
  {
    echo "//go:build tools"
    echo
    echo "package k8sbuild"
    echo
    echo "import ("
    for b in "${binaries[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$b\""; done
    echo ")"
  } > tools.go
  GOFLAGS=-mod=mod go mod tidy
}

if [ "$fetch_only" = 1 ]; then
  start=$(date +%s)
  (wrapper_module)
  log "kubernetes $K8S_VERSION modules fetched in $(( $(date +%s) - start )) s ($(go env GOMODCACHE))"
  exit 0
fi

mkdir -p "$out"
log "building kubernetes $K8S_VERSION from the Go module (cold: ~15-25 min on 2 cores; cached after)"
start=$(date +%s)
(
  wrapper_module
  ldflags="-s -w"
  pkg=k8s.io/component-base/version
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  for v in "k8s.io/client-go/pkg/version" "$pkg"; do
    ldflags+=" -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor"
    ldflags+=" -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
  done
  for b in "${binaries[@]}"; do
    log "  go build $b"
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$out/$b.tmp" "k8s.io/kubernetes/cmd/$b"
    mv "$out/$b.tmp" "$out/$b"
  done
)
log "kubernetes $K8S_VERSION built in $(( $(date +%s) - start )) s: $("$out/kube-apiserver" --version)"
