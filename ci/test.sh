#!/usr/bin/env bash
# README's test command (`make test`) ends here: every check CI runs, in order, failing on the first
# broken one. Assumes ci/setup.sh and the model build have run (the Makefile sees to both).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PWD/.venv/bin:$PATH"

step() { printf '\n== %s\n' "$*"; }

step "generated code is up to date (gateway/proto/generate.sh --check)"
bash gateway/proto/generate.sh --check

step "lint (ci/lint.sh)"
bash ci/lint.sh

step "pytest: every suite except the cluster-only one (-m 'not cluster')"
python -m pytest -m "not cluster" "$@"

step "not run here"
cat <<'TXT'
- tests marked `cluster` (tests/e2e): they need a Kubernetes cluster. `make e2e` builds one here and
  runs them (ci/cluster/); `make e2e-kind` runs them where Docker and kind exist (ci/kind/).
- benchmarks (bench/): measurements, not pass/fail tests; `make bench` runs them.
TXT
