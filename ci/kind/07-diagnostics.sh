#!/usr/bin/env bash
# Step 7 (on failure): dump what explains a failed run into $ARTIFACTS: objects, events, describe,
# logs of every container (and the previous run of restarted ones), HPA state, helm status.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# Diagnostics collect what they can: one failing command must not hide the rest.
set +e
dir="$ARTIFACTS/diagnostics"
mkdir -p "$dir"
log "writing diagnostics to $dir"
dump() {  # dump FILE CMD...
  local file=$1
  shift
  printf '+ %s > %s\n' "$*" "$dir/$file"
  [ "$DRY_RUN" = 1 ] || "$@" > "$dir/$file" 2>&1
}
k() { kubectl --context "$CONTEXT" "$@"; }
dump nodes.txt k get nodes -o wide
dump all.txt k get all,hpa,pdb,networkpolicy,endpointslices,configmaps -A -o wide
dump events.txt k get events -A --sort-by=.lastTimestamp
dump describe-pods.txt k -n "$NAMESPACE" describe pods
dump describe-hpa.txt k -n "$NAMESPACE" describe hpa
dump top-pods.txt k top pods -A
dump helm-status.txt helm --kube-context "$CONTEXT" -n "$NAMESPACE" status "$RELEASE"
dump helm-values.txt helm --kube-context "$CONTEXT" -n "$NAMESPACE" get values --all "$RELEASE"
if [ "$DRY_RUN" != 1 ]; then
  for pod in $(k -n "$NAMESPACE" get pods -o name); do
    name=${pod#pod/}
    dump "logs-$name.txt" k -n "$NAMESPACE" logs "$pod" --all-containers --prefix --timestamps
    dump "logs-$name-previous.txt" k -n "$NAMESPACE" logs "$pod" --all-containers --previous
  done
fi
# The essentials on the console too (a CI log is often all there is).
query k -n "$NAMESPACE" get pods,hpa -o wide
query tail -n 40 "$dir/events.txt"
exit 0
