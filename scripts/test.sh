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
# FUSE over io_uring (fuse/src/ring): the tests of file semantics, crash safety and the IPC
# against a mount again, with every request served through the kernel's per-CPU io_uring
# queues (PMXCFS_TEST_IO_URING=1 makes each test daemon prove it serves over the ring). The
# kernel knob is global: it is restored afterwards, also when a test fails.
URING_KNOB=/sys/module/fuse/parameters/enable_uring
if [ -w "$URING_KNOB" ] && [ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" = 0 ]; then
    old_uring=$(cat "$URING_KNOB")
    trap 'echo "$old_uring" > "$URING_KNOB"' EXIT
    echo Y > "$URING_KNOB"
    PMXCFS_TEST_IO_URING=1 cargo test --no-fail-fast --test local_fs --test shared_open_files \
        --test tmpfs_differential --test names_and_calls --test names_as_bytes --test transactions \
        --test crash_kill9 --test golden_compat --test security --test status_plane --test ipc_daemon \
        --test startup --test cluster_open_files
    echo "$old_uring" > "$URING_KNOB"
    trap - EXIT
else
    echo "FUSE over io_uring: $URING_KNOB is absent or read-only, or io_uring is disabled here; its second pass is skipped"
fi
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
