#!/usr/bin/env bash
# Sets up everything tfstack's local stack and tests need, from scratch and idempotently:
#   - .venv/  a virtualenv with the pinned Python dependencies (pyproject.toml, all extras)
#   - .tools/ pinned binaries (helm, prometheus, ...) fetched by ci/tools/install-*.sh
# Re-running it is fast: each step is skipped when its inputs have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
venv=.venv
stamp="$venv/.tfstack-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv with $($PYTHON --version)"
  "$PYTHON" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pinned Python dependencies (first run takes about a minute)"
  # This machine's pip config lists local package folders that may be absent; drop that noise.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[server,dev,kubernetes]' \
    2> >(grep -v "^WARNING: Location '" >&2)
  echo "$want" > "$stamp"
else
  echo "setup: Python dependencies up to date"
fi

mkdir -p .tools/bin
for installer in ci/tools/install-*.sh; do
  [ -e "$installer" ] || continue
  bash "$installer"
done
