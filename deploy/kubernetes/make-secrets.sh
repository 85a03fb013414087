#!/usr/bin/env bash
# Creates the Secrets the region needs, in namespace `shoal`, with kubectl:
#   deploy/kubernetes/make-secrets.sh [SHOAL_BIN]     (default: shoal on the PATH)
# - shoal-cluster-tls: the cluster CA and a certificate for nodes 1-5 (pods 0-4), named for
#   their plane addresses (shoal-K.shoal-plane.shoal.svc);
# - shoal-origin-secret: the secret nodes present to the origin;
# - shoal-admin: the first admin's password (SHOAL_ADMIN_PASSWORD, else generated and printed).
# The CA stays in ./shoal-ca (keep it: new nodes need certificates from it).
set -euo pipefail
shoal=${1:-shoal}
dir=${SHOAL_CA_DIR:-./shoal-ca}
[ -f "$dir/ca.pem" ] || "$shoal" cluster init --dir "$dir"
files=(--from-file=ca.pem="$dir/ca.pem")
for id in 1 2 3 4 5; do
  pod="shoal-$((id - 1))"
  [ -f "$dir/node-$id/node.pem" ] || "$shoal" cluster cert --dir "$dir" --node-id "$id" \
    --host "$pod.shoal-plane.shoal.svc" --host "$pod.shoal-plane.shoal.svc.cluster.local" --host "$pod.shoal-plane"
  files+=(--from-file=node-$id.pem="$dir/node-$id/node.pem" --from-file=node-$id-key.pem="$dir/node-$id/node-key.pem")
done
kubectl -n shoal create secret generic shoal-cluster-tls "${files[@]}"
kubectl -n shoal create secret generic shoal-origin-secret --from-literal=secret="$(head -c 24 /dev/urandom | base64)"
password=${SHOAL_ADMIN_PASSWORD:-$(head -c 18 /dev/urandom | base64)}
kubectl -n shoal create secret generic shoal-admin --from-literal=password="$password"
[ -n "${SHOAL_ADMIN_PASSWORD:-}" ] || echo "admin password: $password"
