#!/usr/bin/env bash
# README's test command (`make test`) ends here: every check CI runs, in order, failing on the first
# broken one. Assumes ci/setup.sh and the model build have run (the Makefile sees to both).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PWD/.venv/bin:$PATH"

step() { printf '\n== %s\n' "$*"; }

step "generated code is up to date (tfstack/protocol/proto/generate.sh --check)"
bash tfstack/protocol/proto/generate.sh --check

step "lint (ci/lint.sh)"
bash ci/lint.sh

step "pytest: every suite except the cluster-only one (-m 'not cluster')"
python -m pytest -m "not cluster" "$@"

if [ "${TFSTACK_SKIP_E2E:-0}" = 1 ]; then
  e2e_note="- tests marked \`cluster\` (tests/e2e): NOT RUN, TFSTACK_SKIP_E2E=1 was set."
else
  step "the cluster suite on Kubernetes built here (ci/cluster/e2e.sh = make e2e)"
  bash ci/cluster/e2e.sh
  e2e_note="- the kind path (make e2e-kind): needs Docker and a registry; the same suite ran above on
  the cluster built here."
fi

step "not run here"
cat <<TXT
$e2e_note
- benchmarks (bench/): measurements, not pass/fail tests; \`make bench\` runs them.
- GPU scheduling and NetworkPolicy enforcement: no GPU node, and the CNI bridge enforces no policy
  (docs/cluster-e2e.md).
TXT
