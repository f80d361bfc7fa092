#!/usr/bin/env bash
# Installs pinned `prometheus` and `promtool` into .tools/bin/ without installing anything system-wide:
# Debian's prometheus package is downloaded with apt-get and unpacked with dpkg-deb (no dpkg install,
# no root needed when apt's package lists exist; the binaries are static Go programs).
# Idempotent: does nothing when .tools/bin already holds the pinned version.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=2.42.0
DEB_VERSION="${VERSION}+ds-5+deb12u1"

deb_sha256() {  # sha256 of Debian bookworm's .deb per architecture (apt checks it against the signed
  # index too; this pin catches a silently changed package)
  case "$1" in
    amd64) echo 81d59a24fce84f7fbe97a45a4f2914b6a5881b5cd1db2a6a0e129e515e1a5f55 ;;
    *) echo "" ;;
  esac
}

bin=.tools/bin

installed_version() {  # prints the version of "$1" (a prometheus or promtool binary), or nothing
  "$1" --version 2>/dev/null | sed -n 's/^[a-z]*, version \([0-9.]*\).*/\1/p' | head -n 1
}

have_pinned() {
  [ -x "$bin/prometheus" ] && [ -x "$bin/promtool" ] \
    && [ "$(installed_version "$bin/prometheus")" = "$VERSION" ] \
    && [ "$(installed_version "$bin/promtool")" = "$VERSION" ]
}

if have_pinned; then
  echo "install-prometheus: prometheus $VERSION already in $bin"
  exit 0
fi
mkdir -p "$bin"

# A system-wide install of the same version (e.g. `apt-get install prometheus`) is used as is.
if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] \
  && [ "$(installed_version /usr/bin/prometheus)" = "$VERSION" ]; then
  ln -sfn /usr/bin/prometheus "$bin/prometheus"
  ln -sfn /usr/bin/promtool "$bin/promtool"
  echo "install-prometheus: using the system's prometheus $VERSION"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
arch=$(dpkg --print-architecture)
deb="prometheus_${DEB_VERSION}_${arch}.deb"

echo "install-prometheus: downloading Debian's prometheus=$DEB_VERSION ($arch)"
download() { (cd "$work" && apt-get download -q "prometheus=$DEB_VERSION" >/dev/null 2>&1); }
if ! download; then
  # A fresh machine has no package lists yet.
  echo "install-prometheus: apt-get download failed; running apt-get update first"
  apt-get update -q >/dev/null
  download || true
fi
want=$(deb_sha256 "$arch")
if [ ! -f "$work/$deb" ]; then
  # Debian replaces a stable package when it ships a security fix; accept the same upstream
  # version (checked below) rather than fail, and say so.
  echo "install-prometheus: $deb is gone from the archive; taking the current $VERSION build" >&2
  (cd "$work" && apt-get download -q prometheus >/dev/null)
  deb=$(cd "$work" && ls prometheus_"${VERSION}"+*_"$arch".deb)
  want=""
fi
if [ -n "$want" ]; then
  echo "$want  $work/$deb" | sha256sum --check --quiet -
else
  echo "install-prometheus: no pinned checksum for $deb; relying on apt's signed index" >&2
fi

dpkg-deb -x "$work/$deb" "$work/root"
for tool in prometheus promtool; do
  install -m 0755 "$work/root/usr/bin/$tool" "$bin/$tool"
done

have_pinned || { echo "install-prometheus: installed binaries are not version $VERSION" >&2; exit 1; }
echo "install-prometheus: installed prometheus and promtool $VERSION into $bin"
