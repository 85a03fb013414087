#!/usr/bin/env bash
# One command for a 3-node Shoal region plus origin under docker-compose:
#   deploy/region-up.sh [BIN_DIR]    (BIN_DIR defaults to target/release; build it first)
# Creates (once) a cluster CA with certificates for nodes 1-3 and a shared secret under
# deploy/region/, builds the image without pulling anything, and starts the region.
# The admin password is SHOAL_ADMIN_PASSWORD, else generated once into deploy/region/admin-password.
# `docker-compose -f deploy/docker-compose.yml port node1 5000` tells where node 1 listens.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin_dir=${1:-$here/../target/release}
state=${SHOAL_REGION_DIR:-$here/region}
mkdir -p "$state"
if [ ! -f "$state/ca/ca.pem" ]; then
  "$bin_dir/shoal" cluster init --dir "$state/ca"
  for i in 1 2 3; do "$bin_dir/shoal" cluster cert --dir "$state/ca" --node-id "$i" --host "p$i" --host "node$i"; done
fi
[ -f "$state/secret" ] || head -c 24 /dev/urandom | base64 > "$state/secret"
export SHOAL_IMAGE=${SHOAL_IMAGE:-$("$here/build-image.sh" "$bin_dir" shoal:local)}
export SHOAL_CA_DIR="$state/ca"
[ -n "${SHOAL_ADMIN_PASSWORD:-}" ] || [ -f "$state/admin-password" ] || (umask 077; head -c 18 /dev/urandom | base64 > "$state/admin-password")
SHOAL_ADMIN_PASSWORD=${SHOAL_ADMIN_PASSWORD:-$(cat "$state/admin-password")}
export SHOAL_ADMIN_PASSWORD
SHOAL_ORIGIN_SECRET=$(cat "$state/secret")
export SHOAL_ORIGIN_SECRET
docker-compose -f "$here/docker-compose.yml" ${SHOAL_PROJECT:+-p "$SHOAL_PROJECT"} up -d
