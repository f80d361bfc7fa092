#!/usr/bin/env bash
# Sets up everything tfstack's local stack and tests need, from scratch and idempotently:
#   - .venv/  a virtualenv with the pinned Python dependencies (pyproject.toml, all extras)
#   - .tools/ pinned binaries (helm, prometheus, ...) fetched by ci/tools/install-*.sh
# Re-running it is fast: each step is skipped when its inputs have not changed.
# The tool installers run while pip installs the venv (they download too); their output is shown
# when they are done, and kept in .run/setup/.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/jobs.sh
source ci/jobs.sh

PYTHON=${PYTHON:-python3}
venv=.venv
stamp="$venv/.tfstack-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv with $($PYTHON --version)"
  "$PYTHON" -m venv "$venv"
fi

# Each installer is a job of its own; those that may call apt-get hold one lock while they run (apt
# admits one apt at a time and fails, rather than waits, when another holds its lock).
mkdir -p .tools/bin .run/setup
installers=()
pids=()
for installer in ci/tools/install-*.sh; do
  [ -e "$installer" ] || continue
  cmd=(bash "$installer")
  if grep -q 'apt-get' "$installer"; then cmd=(flock .run/setup/apt.lock "${cmd[@]}"); fi
  job_start ".run/setup/$(basename "$installer" .sh).log" "${cmd[@]}"
  installers+=("$installer")
  pids+=("$JOB_PID")
done
trap 'job_stop "${pids[@]}"' EXIT

if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pinned Python dependencies (first run takes about a minute)"
  # This machine's pip config lists local package folders that may be absent; drop that noise.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[server,dev,kubernetes]' \
    2> >(grep -v "^WARNING: Location '" >&2)
  echo "$want" > "$stamp"
else
  echo "setup: Python dependencies up to date"
fi

failed=()
for i in "${!pids[@]}"; do
  log=".run/setup/$(basename "${installers[$i]}" .sh).log"
  if wait "${pids[$i]}"; then
    cat "$log"
  else
    cat "$log" >&2
    echo "setup: ${installers[$i]} FAILED (log: $log)" >&2
    failed+=("${installers[$i]}")
  fi
done
trap - EXIT
[ ${#failed[@]} -eq 0 ] || { echo "setup: failed: ${failed[*]}" >&2; exit 1; }
