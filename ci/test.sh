#!/usr/bin/env bash
# README's test command (`make test`) ends here: every check CI runs, in order, failing on the first
# broken one. Assumes ci/setup.sh and the model build have run (the Makefile sees to both).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PWD/.venv/bin:$PATH"

step() { printf '\n== %s\n' "$*"; }
# shellcheck source=ci/jobs.sh
source ci/jobs.sh

# The cluster build's downloads (Go modules, sources, wheels: minutes on a cold machine) overlap the
# checks and pytest instead of following them. Lowest CPU and I/O priority, so the timing-sensitive
# tests keep the machine; stopped if a check fails. Its own failure fails nothing: the build then
# downloads what is missing itself, and fails there if the network is really gone.
prefetch_pid=
if [ "${TFSTACK_SKIP_E2E:-0}" != 1 ]; then
  prefetch_log=${TFSTACK_ARTIFACTS:-$PWD/.run/cluster}/prefetch.log
  low=(nice -n 19)
  # SCHED_IDLE: a CPU only when no other task wants it, given up at once when one wakes (nice 19
  # alone still takes a share and delays wake-ups). The idle I/O class (honoured by BFQ and
  # mq-deadline). Each where the kernel or container allows it.
  if command -v chrt >/dev/null && chrt --idle 0 true 2>/dev/null; then low=(chrt --idle 0 "${low[@]}"); fi
  if command -v ionice >/dev/null && ionice -c3 true 2>/dev/null; then low+=(ionice -c3); fi
  step "in the background until the cluster suite: its downloads (ci/cluster/prefetch.sh, log: $prefetch_log)"
  job_start "$prefetch_log" "${low[@]}" bash ci/cluster/prefetch.sh
  prefetch_pid=$JOB_PID
  trap 'job_stop "$prefetch_pid"' EXIT
fi

step "generated code is up to date (tfstack/protocol/proto/generate.sh --check)"
bash tfstack/protocol/proto/generate.sh --check

step "lint (ci/lint.sh)"
bash ci/lint.sh

step "pytest: every suite except the cluster-only one (-m 'not cluster')"
python -m pytest -m "not cluster" "$@"

if [ "${TFSTACK_SKIP_E2E:-0}" = 1 ]; then
  e2e_note="- tests marked \`cluster\` (tests/e2e): NOT RUN, TFSTACK_SKIP_E2E=1 was set."
else
  step "the cluster build's downloads (ci/cluster/prefetch.sh, started before the checks)"
  if wait "$prefetch_pid"; then
    grep ' cluster: ' "$prefetch_log" || true
  else
    tail -n 20 "$prefetch_log"
    echo "prefetch FAILED (exit status above, log: $prefetch_log); the build downloads what is missing"
  fi
  trap - EXIT
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
