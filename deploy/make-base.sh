#!/usr/bin/env bash
# Builds a minimal local base image for Shoal without pulling anything: a root filesystem
# holding only the shared libraries the given binaries link against (found with ldd),
# imported with `docker import`. Usage: deploy/make-base.sh BIN_DIR [TAG]
set -euo pipefail
bin_dir=${1:?usage: make-base.sh BIN_DIR [TAG]}
tag=${2:-shoal-base:local}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
for bin in "$bin_dir/shoal" "$bin_dir/shoal-origin"; do
  ldd "$bin" | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
mkdir -p "$root/tmp" "$root/data" "$root/etc"
chmod 1777 "$root/tmp"
echo 'root:x:0:0:root:/root:/sbin/nologin' > "$root/etc/passwd"
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
tar -C "$root" -c . | docker import - "$tag" >/dev/null
echo "$tag"
