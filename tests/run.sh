#!/usr/bin/env bash
# Runs Shoal's whole test suite on a fresh Debian machine of the project's kind, installing
# what it needs when missing: cmake (for pingora's zlib-ng), skopeo, Debian's docker-registry
# (CNCF Distribution) and nginx (the benchmark's peers), the Python `oras` client,
# moto's S3 server (the S3-compatible server the S3 origin backend is tested against), and
# schemathesis (which fuzzes the management API against its OpenAPI document), and Debian's
# chromium with chromium-driver (the real browser the console tests drive through WebDriver).
# The Docker engine must be running for the docker tests; with CI=true a missing tool or a
# stopped engine fails the run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v cmake >/dev/null || missing+=(cmake)
# iptables cuts a node off the plane in the partition test.
command -v iptables >/dev/null || missing+=(iptables)
command -v skopeo >/dev/null || missing+=(skopeo)
# CNCF Distribution and nginx: the peers `shoal-bench compare` measures Shoal against.
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
# Headless Chromium and its WebDriver: the console tests click through it.
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if ((${#missing[@]})); then
  echo "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi
if ! python3 -c 'import oras' 2>/dev/null; then
  echo "installing the Python oras client with pip"
  python3 -m pip install -q oras
fi
if ! command -v moto_server >/dev/null; then
  echo "installing moto's S3 server with pip"
  python3 -m pip install -q 'moto[server]'
fi
if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "installing PyYAML with pip (the alert rules are checked as YAML)"
  python3 -m pip install -q pyyaml
fi
if ! command -v kubernetes-validate >/dev/null; then
  echo "installing kubernetes-validate with pip (the Kubernetes manifests are checked offline)"
  python3 -m pip install -q kubernetes-validate
fi
if ! command -v schemathesis >/dev/null; then
  echo "installing schemathesis with pip"
  python3 -m pip install -q 'schemathesis>=4.32,<5'
fi
# pyenv installs console scripts behind shims that exist only after a rehash.
if command -v pyenv >/dev/null; then pyenv rehash || true; fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The integration tests start the real `shoal` binary, so build it first.
cargo build --workspace --bins
cargo test --workspace
