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
# benchmark smoke test: every workload once at small size, figures must be sane
cargo test --bench write_amplification -- --bench --quick --json target/bench-smoke.json
python3 - <<'PY'
import json, math
d = json.load(open("target/bench-smoke.json"))
ok = bad = 0
for r in d["results"]:
    ratio = (r.get("median") or {}).get("ratio")
    if not r.get("errors") and isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio > 0:
        ok += 1
    else:
        bad += 1
        print("insane benchmark result:", r.get("workload"), r.get("daemon"), r.get("errors"), ratio)
print(f"benchmark-smoke: {ok} passed, {bad} failed")
raise SystemExit(1 if bad or not ok else 0)
PY
if [ -x tests/debian_package.sh ] && [ "${SKIP_DEB_TEST:-0}" != 1 ]; then
    bash tests/debian_package.sh
fi
