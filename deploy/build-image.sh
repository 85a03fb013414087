#!/usr/bin/env bash
# Builds the Shoal image from already-built binaries, with no registry access:
#   deploy/build-image.sh [BIN_DIR] [TAG] [BASE]
# BIN_DIR defaults to target/release; BASE defaults to a local base made by make-base.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin_dir=${1:-$here/../target/release}
tag=${2:-shoal:local}
base=${3:-}
if [ -z "$base" ]; then
  base=$("$here/make-base.sh" "$bin_dir" shoal-base:local)
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$bin_dir/shoal" "$bin_dir/shoal-origin" "$here/Dockerfile" "$ctx/"
DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$base" -t "$tag" "$ctx" >/dev/null
echo "$tag"
