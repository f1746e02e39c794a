#!/usr/bin/env bash
# Runs the whole test suite: unit tests, golden wire/DB tests, real FUSE mounts (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
if [ ! -d ../shared/golden ]; then
    echo "../shared/golden is missing: the golden data must sit beside the checkout" >&2
    exit 1
fi
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast
if [ -x tests/debian_package.sh ] && [ "${SKIP_DEB_TEST:-0}" != 1 ]; then
    bash tests/debian_package.sh
fi
