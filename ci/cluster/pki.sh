#!/usr/bin/env bash
# Certificates and kubeconfigs for the local cluster, into $CLUSTER_DIR/pki (fresh for every run).
#   ca             signs every serving and client certificate below
#   front-proxy-ca signs the API server's client certificate towards aggregated APIs
#                  (metrics-server, prometheus-adapter)
#   sa.key/sa.pub  service-account token signing
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=ci/cluster/lib.sh
source "$here/lib.sh"

pki="$CLUSTER_DIR/pki"
mkdir -p "$pki"
cd "$pki"
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
ca() {  # name, CN
  key "$1"
  openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days 30 -out "$1.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}
cert() {  # name, signing CA, subject, extendedKeyUsage, [subjectAltName]
  local name=$1 signer=$2 subject=$3 usage=$4 san=${5:-}
  key "$name"
  openssl req -new -key "$name.key" -subj "$subject" -out "$name.csr"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [ -z "$san" ] || echo "subjectAltName=$san"
  } > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA "$signer.crt" -CAkey "$signer.key" -CAcreateserial \
    -days 30 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}
kubeconfig() {  # name (cert/key pair and output), user
  local kc="$1.kubeconfig"
  rm -f "$kc"
  "$K8S_BIN/kubectl" --kubeconfig "$kc" config set-cluster tfstack --server "https://$NODE_IP:6443" \
    --certificate-authority ca.crt --embed-certs >/dev/null
  "$K8S_BIN/kubectl" --kubeconfig "$kc" config set-credentials "$2" --client-certificate "$1.crt" \
    --client-key "$1.key" --embed-certs >/dev/null
  "$K8S_BIN/kubectl" --kubeconfig "$kc" config set-context tfstack --cluster tfstack --user "$2" >/dev/null
  "$K8S_BIN/kubectl" --kubeconfig "$kc" config use-context tfstack >/dev/null
}

ca ca kubernetes-ca
ca front-proxy-ca front-proxy-ca
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
openssl pkey -in sa.key -pubout -out sa.pub

cert apiserver ca /CN=kube-apiserver serverAuth \
  "IP:$NODE_IP,IP:127.0.0.1,IP:$KUBERNETES_SVC_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert apiserver-kubelet-client ca "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
cert front-proxy-client front-proxy-ca /CN=front-proxy-client clientAuth
cert kubelet-serving ca "/O=system:nodes/CN=system:node:$NODE_NAME" serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"

cert admin ca "/O=system:masters/CN=kubernetes-admin" clientAuth
cert controller-manager ca /CN=system:kube-controller-manager clientAuth
cert scheduler ca /CN=system:kube-scheduler clientAuth
cert kube-proxy ca /CN=system:kube-proxy clientAuth
cert kubelet ca "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
for pair in admin:kubernetes-admin controller-manager:system:kube-controller-manager \
    scheduler:system:kube-scheduler kube-proxy:system:kube-proxy kubelet:system:node:$NODE_NAME; do
  kubeconfig "${pair%%:*}" "${pair#*:}"
done
chmod 0644 ./*.crt
log "pki: certificates and kubeconfigs in $pki"
