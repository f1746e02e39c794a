#!/usr/bin/env bash
# Installs the Debian 12 packages pmxcfs-ng needs to build and test (idempotent).
set -euo pipefail
PKGS=(build-essential pkg-config sqlite3 fuse3 rrdtool rrdcached iproute2 util-linux
      corosync libcpg-dev libcfg-dev libquorum-dev libcmap-dev libvotequorum-dev libqb-dev)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
    echo "cargo not found: install a Rust toolchain (rustup) first" >&2
    exit 1
fi
getent group www-data >/dev/null || groupadd --system www-data
