#!/usr/bin/env bash
# Proves the built images work under containerd + runc, the way the chart runs them, without a
# cluster: a throwaway containerd (own config, state and socket, CRI configured as the cluster's
# must be), `images.sh load` into it, then
#   1. the models image's copy step (the chart's init container command) into a host folder;
#   2. the TF Serving stand-in with the chart's own rendered command, args, env, config files,
#      read-only root filesystem, tmpfs /tmp and dropped capabilities, in a network namespace this
#      script creates; the chart's readiness script (exec, bash) must pass, `/v1/models/...` and a
#      predict must answer on that namespace's loopback; the preStop `sleep` must run.
# Everything is removed at the end, also on failure.
#
#   bash ci/cluster/images-smoke.sh        # after `bash ci/cluster/images.sh build` and `make setup`
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck disable=SC1091  # lib.sh: shared settings, linted on its own
source "$here/lib.sh"

HELM=${HELM:-$repo/.tools/bin/helm}
PY=${PY:-$repo/.venv/bin/python}
[ -x "$HELM" ] && [ -x "$PY" ] || die "smoke: needs helm and the venv (make setup)"

mkdir -p "$TFSTACK_CACHE/tmp"
S=$(mktemp -d "$TFSTACK_CACHE/tmp/smoke.XXXXXX")
netns=tfstack-smoke-$$
ns_pid=''
sock=$S/containerd.sock

ctr_() { ctr --address "$sock" -n k8s.io "$@"; }
# ctr has no "drop ALL": drop each capability of its default set (the OCI default for Linux).
drop_all=()
for cap in CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP \
  NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE; do
  drop_all+=(--cap-drop "CAP_$cap")
done

cleanup() {
  set +e
  if [ -n "$ns_pid" ] && kill -0 "$ns_pid" 2>/dev/null; then
    ctr_ tasks kill -s KILL standin >/dev/null 2>&1
    for _ in $(seq 50); do ctr_ tasks ls -q 2>/dev/null | grep -q . || break; sleep 0.1; done
    ctr_ tasks delete standin >/dev/null 2>&1
    ctr_ containers delete standin copy-models >/dev/null 2>&1
    kill -TERM "$(cat "$S/containerd.pid")" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$ns_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$ns_pid" 2>/dev/null
    wait "$ns_pid" 2>/dev/null
  fi
  ip netns del "$netns" 2>/dev/null
  [ -e "$S/made-run-containerd" ] && rmdir /run/containerd
  find /sys/fs/cgroup -mindepth 1 -maxdepth 3 -type d -name tfstack-smoke 2>/dev/null \
    | while read -r dir; do find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null; done
  rm -rf "$S"
}
trap cleanup EXIT

# ---- the chart's TF Serving container, rendered: command, args, env, probe, preStop, configs ---
# The project's own images (the addons have their own checks in the cluster run).
images=(gateway models tfserving-standin)
refs=$(bash "$here/images.sh" list "${images[@]}")
standin=$(awk '$1 == "tfserving-standin" {print $2}' <<<"$refs")
# The chart ships no models: the example ones, which the models image holds.
"$HELM" template smoke "$repo/charts/tfstack" -f "$repo/charts/tfstack/examples/example-models.yaml" \
  --set "tfserving.image.repository=${standin%:*}" --set "tfserving.image.tag=${standin##*:}" \
  >"$S/rendered.yaml"
mkdir -p "$S/etc-models" "$S/etc-config" "$S/models"
"$PY" - "$S" <<'PY'
import json, os, sys, yaml
out = sys.argv[1]
docs = [d for d in yaml.safe_load_all(open(os.path.join(out, "rendered.yaml"))) if d]
deploy = next(d for d in docs if d["kind"] == "Deployment"
              and d["metadata"]["labels"]["app.kubernetes.io/component"] == "tfserving")
pod = deploy["spec"]["template"]["spec"]
c = next(x for x in pod["containers"] if x["name"] == "tfserving")
init = next(x for x in pod["initContainers"] if x["name"] == "copy-models")
mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
volumes = {v["name"]: v for v in pod["volumes"]}
for name, target in (("model-config", "etc-models"), ("tfserving-config", "etc-config")):
    cm = next(d for d in docs if d["kind"] == "ConfigMap"
              and d["metadata"]["name"] == volumes[name]["configMap"]["name"])
    for key, text in cm["data"].items():
        open(os.path.join(out, target, key), "w").write(text)
spec = {
    "image": c["image"], "init_image": init["image"], "init_command": init["command"],
    "argv": c["command"] + c["args"],
    "env": [f"{e['name']}={e['value']}" for e in c["env"]],
    "ready": c["readinessProbe"]["exec"]["command"],
    "prestop": c["lifecycle"]["preStop"]["exec"]["command"],
    "uid": pod["securityContext"]["runAsUser"], "gid": pod["securityContext"]["runAsGroup"],
    "read_only": c["securityContext"]["readOnlyRootFilesystem"],
    "drops_all": c["securityContext"]["capabilities"]["drop"] == ["ALL"],
    "mounts": {k: mounts[k] for k in ("model-config", "tfserving-config", "tmp", "models")},
}
json.dump(spec, open(os.path.join(out, "spec.json"), "w"))
PY
# A value of the rendered spec; lists NUL-separated (the readiness script has newlines).
spec() { "$PY" -c "import json, sys; v = json.load(open('$S/spec.json'))[sys.argv[1]]; \
sys.stdout.write(''.join(f'{x}\0' for x in v) if isinstance(v, list) else f'{v}')" "$1"; }
mountpoint() { "$PY" -c "import json; print(json.load(open('$S/spec.json'))['mounts']['$1'])"; }
[ "$(spec read_only)" = True ] && [ "$(spec drops_all)" = True ] \
  || die "smoke: the chart no longer asks for a read-only root and no capabilities; update this"

# ---- a throwaway containerd, configured as the cluster's must be (docs/cluster-e2e.md) ----
containerd_config "$S/root" "$S/state" "$sock" "$S/cni-bin" "$S/cni-conf" >"$S/containerd.toml"
# The stand-in's network namespace exists before containerd's private mount namespace is made,
# so its bind mount is visible in there (mounts made later would not propagate).
ip netns add "$netns"
ip -n "$netns" link set lo up
# containerd 1.6 keeps shim sockets and runc state under /run/containerd whatever its config
# says: a tmpfs there, private to its mount namespace, leaves nothing on the host's /run. (The
# stdio fifos, made by ctr outside that namespace, go to $S/fifo: every ctr run/exec names it.)
if [ ! -d /run/containerd ]; then mkdir /run/containerd && touch "$S/made-run-containerd"; fi
# shellcheck disable=SC2016  # expanded by the inner bash
unshare --mount --propagation private bash -c '
  mount -t tmpfs -o mode=0711 tfstack-smoke-run /run/containerd
  containerd --config "$1/containerd.toml" >"$1/containerd.log" 2>&1 &
  echo $! >"$1/containerd.pid"
  wait' _ "$S" &
ns_pid=$!
for _ in $(seq 100); do ctr --address "$sock" version >/dev/null 2>&1 && break; sleep 0.1; done
ctr --address "$sock" version >/dev/null || { tail "$S/containerd.log" >&2; die "smoke: containerd"; }
[[ $(ctr --address "$sock" plugins ls) =~ io.containerd.grpc.v1[[:space:]]+cri[[:space:]]+[^[:space:]]+[[:space:]]+ok ]] \
  || die "smoke: containerd's CRI plugin did not load with this config"

start=$(date +%s)
bash "$here/images.sh" load --address "$sock" "${images[@]}"
log "smoke: load took $(($(date +%s) - start)) s"
ctr_ images ls | awk '/tfstack/ {print "  " $1, $4, $5}'
loaded=$(ctr_ images ls -q)
while read -r _ ref _; do
  grep -qx "\(docker.io/\)\?\(library/\)\?$ref" <<<"$loaded" \
    || die "smoke: $ref is not in containerd's k8s.io namespace"
done <<<"$refs"
full() { grep -x -m 1 "\(docker.io/\)\?\(library/\)\?$1" <<<"$loaded"; }

# ---- 1. the models image's copy step (non-root: the image's uid, not root) -----------------------
chown "$(spec uid):$(spec gid)" "$S/models"
chmod 0777 "$S/models"   # the image's own uid (65532) copies here; the chart uses fsGroup instead
mapfile -d '' -t copy < <(spec init_command)
ctr_ run --fifo-dir "$S/fifo" --rm --read-only --cgroup /tfstack-smoke/copy-models "${drop_all[@]}" \
  --mount "type=bind,src=$S/models,dst=/model-store,options=rbind:rw" \
  "$(full "$(spec init_image)")" copy-models "${copy[@]}"
[ -s "$S/models/half_plus_two/1/saved_model.pb" ] || die "smoke: the models were not copied"
log "smoke: models copied ($(du -sh "$S/models" | cut -f1)), files readable by others: \
$(find "$S/models" -type f ! -perm -o=r | wc -l) unreadable"

# ---- 2. the stand-in, as the chart runs it ----------------------------------------------------------
mapfile -d '' -t argv < <(spec argv)
mapfile -d '' -t envs < <(spec env)
env_flags=()
for e in "${envs[@]}"; do env_flags+=(--env "$e"); done
ctr_ run --fifo-dir "$S/fifo" -d --read-only "${drop_all[@]}" --cgroup /tfstack-smoke/standin \
  --with-ns "network:/var/run/netns/$netns" "${env_flags[@]}" \
  --mount "type=tmpfs,src=tmpfs,dst=$(mountpoint tmp),options=nosuid:nodev:mode=1777" \
  --mount "type=bind,src=$S/etc-models,dst=$(mountpoint model-config),options=rbind:ro" \
  --mount "type=bind,src=$S/etc-config,dst=$(mountpoint tfserving-config),options=rbind:ro" \
  --mount "type=bind,src=$S/models,dst=$(mountpoint models),options=rbind:ro" \
  "$(full "$standin")" standin "${argv[@]}" >/dev/null
uid=$(ctr_ tasks exec --fifo-dir "$S/fifo" --exec-id id standin id -u)
[ "$uid" = "$(spec uid)" ] || die "smoke: the stand-in runs as uid $uid, the chart expects $(spec uid)"
caps=$(ctr_ tasks exec --fifo-dir "$S/fifo" --exec-id caps standin sh -c 'grep -E "^Cap(Eff|Prm|Bnd):" /proc/self/status')
grep -qv '0000000000000000' <<<"$caps" && die "smoke: capabilities left: $caps"

mapfile -d '' -t ready < <(spec ready)
log "smoke: models the chart's exec probe waits for: ${ready[*]:5}"
start=$(date +%s)
until ctr_ tasks exec --fifo-dir "$S/fifo" --exec-id "ready-$SECONDS" standin "${ready[@]}" >/dev/null 2>&1; do
  [[ $(ctr_ tasks ls) =~ standin[[:space:]]+[0-9]+[[:space:]]+RUNNING ]] \
    || { ctr_ tasks ls >&2; die "smoke: the stand-in exited"; }
  [ $(($(date +%s) - start)) -lt 180 ] || die "smoke: not ready after 180 s"
  sleep 1
done
log "smoke: the chart's readiness script passed after $(($(date +%s) - start)) s"
ip netns exec "$netns" curl -fsS http://127.0.0.1:8501/v1/models/half_plus_two
echo
answer=$(ip netns exec "$netns" curl -fsS -d '{"instances": [1.0, 2.0, 5.0]}' \
  http://127.0.0.1:8501/v1/models/half_plus_two:predict)
echo "$answer"
tr -d ' \n' <<<"$answer" | grep -q '"predictions":\[2.5,3.0,4.5\]' || die "smoke: wrong predictions"
if ctr_ tasks exec --fifo-dir "$S/fifo" --exec-id write standin sh -c 'echo x > /etc/tfstack-write-test' 2>/dev/null; then
  die "smoke: the root filesystem is writable"
fi
mapfile -d '' -t prestop < <(spec prestop)
ctr_ tasks exec --fifo-dir "$S/fifo" --exec-id prestop standin "${prestop[0]}" 1
log "smoke: OK (stand-in: chart command, args, env, readiness script, preStop; uid $uid, read-only root)"
