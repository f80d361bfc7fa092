# Background jobs for the CI scripts (sourced, not run). A job runs in a session of its own
# (setsid), so stopping it stops everything it started (go, pip, npm: a plain `kill PID` would
# leave them running), with stdin closed and its output in a log file.
#   job_start LOG CMD...   starts CMD in the background; its pid (also its process group) in JOB_PID
#   job_stop PID...        stops each job and what it started (SIGTERM to its group), reaps it
# shellcheck shell=bash

job_start() {
  local log=$1
  shift
  mkdir -p "$(dirname "$log")"
  setsid "$@" >"$log" 2>&1 </dev/null &
  # shellcheck disable=SC2034  # read by the caller
  JOB_PID=$!
}

job_stop() {
  local pid _
  for pid in "$@"; do
    # Until setsid has run, the job is not yet the leader of a group of its own.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "$@"; do
    wait "$pid" 2>/dev/null || true
    # What it started may take a moment to clean up (go does); 10 s, then SIGKILL.
    for _ in $(seq 50); do
      kill -0 -- "-$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
}
