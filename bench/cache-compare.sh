#!/usr/bin/env bash
# Side-by-side figures for the edge cache on this machine, with curl as the client:
#  - warm 1 GiB blob GET from a node's cache versus nginx (sendfile on) serving the same file;
#  - cold pull-through of that blob (origin -> node cache -> client);
#  - one cold pull of a 256 MiB blob versus 50 concurrent cold pulls of another, with the
#    origin's reads of each blob counted from its log;
#  - the node's peak RSS while serving 64 concurrent warm 1 GiB pulls.
# Usage: bench/cache-compare.sh [target-dir]   (default: target/release; build it first with
# `cargo build --release --bins`). Installs nginx with apt when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release}
command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; }
WORK=$(mktemp -d /tmp/shoal-cache-bench.XXXX)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; nginx -c "$WORK/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$WORK"' EXIT
export SHOAL_ORIGIN_SECRET=bench-secret-0123456789
# The node's first admin; the CLI and curl sign in with it.
export SHOAL_ADMIN_PASSWORD=bench-admin-password-0123 SHOAL_USERNAME=admin
export SHOAL_PASSWORD=$SHOAL_ADMIN_PASSWORD
AUTH=(-u "admin:$SHOAL_ADMIN_PASSWORD")

"$BIN/shoal-origin" serve --listen 127.0.0.1:7300 --root "$WORK/origin" 2>"$WORK/origin.log" >"$WORK/origin.out" &
PIDS+=($!)
sleep 0.5
"$BIN/shoal" serve --listen 127.0.0.1:7301 --data "$WORK/node" --origin http://127.0.0.1:7300 \
  --cache-max-bytes 8GiB 2>"$WORK/node.log" >"$WORK/node.out" &
NODE=$!
PIDS+=($NODE)
until grep -q listening "$WORK/node.out" 2>/dev/null; do sleep 0.2; done
"$BIN/shoal" namespace create bench --server http://127.0.0.1:7301 >/dev/null
REG=http://127.0.0.1:7301/v2/bench/blob

push() { # file -> digest
  local d="sha256:$(sha256sum "$1" | cut -d' ' -f1)"
  curl -sf "${AUTH[@]}" -o /dev/null -X POST -H 'Content-Type: application/octet-stream' -T - "$REG/blobs/uploads/?digest=$d" <"$1"
  echo "$d"
}
rate() { # url -> MB/s of one GET
  curl -s "${AUTH[@]}" -o /dev/null -w '%{speed_download}' "$1" | awk '{printf "%.0f", $1/1e6}'
}
origin_reads() { grep -c "blob read.*$1" "$WORK/origin.log" || true; }

head -c 1G /dev/urandom >"$WORK/big"
BIG=$(push "$WORK/big")
echo "cold 1 GiB pull-through: $(rate "$REG/blobs/$BIG") MB/s"
for i in 1 2 3; do echo "warm 1 GiB GET (shoal cache) #$i: $(rate "$REG/blobs/$BIG") MB/s"; done

mkdir -p "$WORK/www"
cp "$WORK/node/cache/blobs/sha256/${BIG#sha256:}" "$WORK/www/big"
cat >"$WORK/nginx.conf" <<EOF
user root;
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  server { listen 127.0.0.1:7302; root $WORK/www; }
}
EOF
nginx -c "$WORK/nginx.conf"
sleep 0.3
for i in 1 2 3; do echo "warm 1 GiB GET (nginx sendfile) #$i: $(rate http://127.0.0.1:7302/big) MB/s"; done

head -c 256M /dev/urandom >"$WORK/a"
head -c 256M /dev/urandom >"$WORK/b"
A=$(push "$WORK/a")
B=$(push "$WORK/b")
t0=$(date +%s.%N)
curl -sf "${AUTH[@]}" -o /dev/null "$REG/blobs/$A"
t1=$(date +%s.%N)
C=()
for i in $(seq 50); do curl -sf "${AUTH[@]}" -o /dev/null "$REG/blobs/$B" & C+=($!); done
wait "${C[@]}"
t2=$(date +%s.%N)
awk -v one="$(echo "$t1 - $t0" | bc)" -v fifty="$(echo "$t2 - $t1" | bc)" \
  'BEGIN { printf "256 MiB cold: one pull %.2f s; 50 concurrent pulls %.2f s (%.2fx)\n", one, fifty, fifty/one }'
echo "origin reads: blob A $(origin_reads "$A"), blob B $(origin_reads "$B") (50 clients)"

hwm() { awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' /proc/$NODE/status; }
echo "node peak RSS so far (through the 50-client cold storm): $(hwm)"
echo 5 >/proc/$NODE/clear_refs # resets VmHWM, so the next figure is the warm storm's alone
C=()
for i in $(seq 64); do curl -sf "${AUTH[@]}" -o /dev/null "$REG/blobs/$BIG" & C+=($!); done
wait "${C[@]}"
echo "node peak RSS during 64 concurrent warm 1 GiB pulls: $(hwm)"
