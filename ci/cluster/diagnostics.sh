#!/usr/bin/env bash
# What explains a failed cluster run, into DIR (default .run/cluster/diagnostics) and, in short, on
# the console: nodes, every object, events, describe and logs (current and previous) of every pod
# that is not Ready or has restarted, the cluster components' log tails.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=ci/cluster/lib.sh
source "$here/lib.sh"
dir=${1:-.run/cluster/diagnostics}
mkdir -p "$dir"
log "diagnostics into $dir"
k() { in_cluster kubectl "$@"; }
dump() { local file=$1; shift; "$@" > "$dir/$file" 2>&1; }

dump nodes.txt k describe nodes
dump all.txt k get all,hpa,pdb,endpointslices,configmaps,apiservices -A -o wide
dump events.txt k get events -A --sort-by=.lastTimestamp
dump helm.txt in_cluster "$here/../../.tools/bin/helm" list -A
for ns in $(k get ns -o jsonpath='{.items[*].metadata.name}'); do
  for pod in $(k -n "$ns" get pods -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'); do
    dump "describe-$ns-$pod.txt" k -n "$ns" describe pod "$pod"
    dump "logs-$ns-$pod.txt" k -n "$ns" logs "$pod" --all-containers --prefix --timestamps
    dump "logs-$ns-$pod-previous.txt" k -n "$ns" logs "$pod" --all-containers --prefix --previous
  done
done
for f in "$CLUSTER_DIR"/logs/*.log; do
  [ -e "$f" ] && tail -n 200 "$f" > "$dir/component-$(basename "$f")"
done

echo "---- pods not Ready or restarted ----"
# READY is "ready/total"; RESTARTS may read "2 (40s ago)".
# shellcheck disable=SC2016  # an awk program
unhealthy='{ split($3, r, "/"); if (r[1] != r[2] || $5 != 0 || $4 != "Running") print }'
k get pods -A -o wide | awk "NR == 1 $unhealthy"
echo "---- last events ----"
tail -n 40 "$dir/events.txt"
for pod in $(k get pods -A --no-headers | awk "$unhealthy" | awk '{print $1 "/" $2}'); do
  echo "---- logs of $pod (last 30 lines) ----"
  k -n "${pod%%/*}" logs "${pod#*/}" --all-containers --tail 30 2>&1
done
exit 0
