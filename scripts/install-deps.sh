#!/usr/bin/env bash
# Installs the Debian 12 packages Joule needs to build and test; only those not
# yet installed. Idempotent. Runs as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config ninja-build
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev librocksdb-dev libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev python3 libssl-dev openssl libcpp-httplib-dev prometheus
  etcd-server etcd-client
  libjs-chart.js chromium libsystemd-dev dpkg-dev systemd
  python3-grpcio python3-grpc-tools nodejs
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# npm (Debian's, unless a nodejs that bundles it is installed already).
if ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi

# The Node example client's modules (@grpc/grpc-js, @grpc/proto-loader)
# from the npm registry, into the git-ignored examples/clients/node/node_modules.
node_client_deps() {
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/examples/clients/node"
  if [ ! -d "$dir/node_modules/@grpc/grpc-js" ]; then
    echo "install-deps: npm install in examples/clients/node"
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  node_client_deps
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
node_client_deps
