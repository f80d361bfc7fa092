#!/usr/bin/env bash
# Installs pinned actionlint (the GitHub Actions workflow checker; it also runs shellcheck over each
# `run:` script) into .tools/bin/ from the Go module proxy. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=v1.7.12
bin=.tools/bin

if [ -x "$bin/actionlint" ] && [ "$("$bin/actionlint" -version 2>/dev/null | head -n 1)" = "$VERSION" ]; then
  echo "install-actionlint: actionlint $VERSION already in $bin"
  exit 0
fi
command -v go >/dev/null || { echo "install-actionlint: needs the Go toolchain (go) on PATH" >&2; exit 1; }
mkdir -p "$bin"
echo "install-actionlint: go install github.com/rhysd/actionlint/cmd/actionlint@$VERSION"
GOBIN="$PWD/$bin" GOTOOLCHAIN=local GOFLAGS='' CGO_ENABLED=0 \
  go install -trimpath -ldflags "-s -w -X github.com/rhysd/actionlint.version=$VERSION" \
  "github.com/rhysd/actionlint/cmd/actionlint@$VERSION"
