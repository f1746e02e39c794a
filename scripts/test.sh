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
# scale benchmark smoke test: a small tree, every local row measured and sane
cargo test --bench scale -- --bench --quick --json target/scale-smoke.json
python3 - <<'PY'
import json, math
d = json.load(open("target/scale-smoke.json"))
need = ["create_cpu_s", "cat_cpu_s", "overwrite_cpu_s", "create_per_s", "cat_per_s", "overwrite_per_s",
        "config_db_mb", "exec_to_serving_empty_s", "exec_to_serving_loaded_s", "rss_after_load_mb",
        "storm_read_p99_ms", "storm_writes_per_s"]
bad = list(d["errors"])
for dm in d["daemons"]:
    m = dm["median"]
    for k in need:
        v = m.get(k)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            bad.append(f"{dm['name']}: {k} = {v}")
    for k in ["storm_write_errors", "storm_read_errors"]:
        if m.get(k, 1) != 0:
            bad.append(f"{dm['name']}: {k} = {m.get(k)}")
for b in bad:
    print("insane scale result:", b)
print(f"scale-smoke: {len(d['daemons'])} daemon(s), {len(bad)} problem(s)")
raise SystemExit(1 if bad else 0)
PY
if [ -x tests/debian_package.sh ] && [ "${SKIP_DEB_TEST:-0}" != 1 ]; then
    bash tests/debian_package.sh
fi
