#!/usr/bin/env bash
# Installs Grafana's dashboard schema (@grafana/schema) and the TypeScript compiler, pinned by
# tfstack/observability/grafana-schema/package-lock.json, into .tools/grafana-schema/. tests/observability
# type-checks every dashboard JSON against the schema's `Dashboard` type with this tsc.
# Idempotent: does nothing when the installed tree matches the lock file.
set -euo pipefail
cd "$(dirname "$0")/../.."

SCHEMA_VERSION=13.2.3
TSC_VERSION=5.9.3
src=tfstack/observability/grafana-schema
dest=.tools/grafana-schema
stamp="$dest/.tfstack-installed"
want=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)

if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && [ -x "$dest/node_modules/.bin/tsc" ]; then
  echo "install-grafana-schema: @grafana/schema $SCHEMA_VERSION + typescript $TSC_VERSION already in $dest"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "install-grafana-schema: npm not found; installing Debian's nodejs and npm"
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-grafana-schema: need root (or an npm on PATH) to install npm" >&2
    exit 1
  fi
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm >/dev/null
fi

mkdir -p "$dest"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
echo "install-grafana-schema: npm ci in $dest"
(cd "$dest" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

version_of() { node -p "require('./$dest/node_modules/$1/package.json').version"; }
[ "$(version_of @grafana/schema)" = "$SCHEMA_VERSION" ] \
  || { echo "install-grafana-schema: @grafana/schema is not $SCHEMA_VERSION" >&2; exit 1; }
[ "$(version_of typescript)" = "$TSC_VERSION" ] \
  || { echo "install-grafana-schema: typescript is not $TSC_VERSION" >&2; exit 1; }
echo "$want" > "$stamp"
echo "install-grafana-schema: installed @grafana/schema $SCHEMA_VERSION + typescript $TSC_VERSION into $dest"
