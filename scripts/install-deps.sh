#!/usr/bin/env bash
# Installs the Debian 12 packages pmxcfs-ng needs to build and test (idempotent).
set -euo pipefail
# valgrind: the IPC tests run libqb's disconnect paths under memcheck.
# libsqlite3-dev: the workspace links the system's SQLite (rusqlite without "bundled").
PKGS=(build-essential pkg-config sqlite3 libsqlite3-dev fuse3 rrdtool rrdcached iproute2 util-linux
      corosync libcpg-dev libcfg-dev libquorum-dev libcmap-dev libvotequorum-dev libqb-dev
      valgrind)
# Without a cargo in PATH (rustup's, say): Debian's own toolchain (bookworm-security ships
# rustc-web/cargo-web >= 1.87, the rust-version of Cargo.toml).
command -v cargo >/dev/null || PKGS+=(cargo-web rustc-web)
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
    echo "cargo not found: apt-get install cargo-web rustc-web (needs bookworm-security)" >&2
    exit 1
fi
getent group www-data >/dev/null || groupadd --system www-data
