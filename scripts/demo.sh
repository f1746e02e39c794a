#!/usr/bin/env bash
# Builds pmxcfs-ng and mounts a demo in local mode under a temporary root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --bin pmxcfs
ROOT=$(mktemp -d /tmp/pmxcfs-demo.XXXXXX)
./target/release/pmxcfs -l --root "$ROOT" --nodename demo
mkdir -p "$ROOT/etc/pve/nodes/demo/qemu-server"
printf 'memory: 512\ncores: 1\n' > "$ROOT/etc/pve/nodes/demo/qemu-server/100.conf"
echo
echo "pmxcfs-ng is mounted at $ROOT/etc/pve (database $ROOT/var/lib/pve-cluster/config.db)"
ls -la "$ROOT/etc/pve"
cat "$ROOT/etc/pve/.vmlist"
echo
echo "stop it with: kill \$(cat $ROOT/run/pve-cluster.pid)"
