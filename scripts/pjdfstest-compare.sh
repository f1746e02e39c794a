#!/usr/bin/env bash
# pjdfstest-compare.sh PJDFSTEST_DIR: runs the pjdfstest suite (github.com/pjd/pjdfstest, built
# in PJDFSTEST_DIR with autoreconf -ifs && ./configure && make pjdfstest) in a fresh local-mode
# mount of pmxcfs-ng and of the original, and lists every assertion whose result differs
# (ok / not ok, and the value a failing one got, inode numbers aside). Root; not part of CI
# (pjdfstest is not packaged). Original: ../shared/original/c-local.sh with $C_PMXCFS.
set -euo pipefail
PJD=$(cd "${1:?usage: pjdfstest-compare.sh PJDFSTEST_DIR}" && pwd)
HERE=$(cd "$(dirname "$0")/.." && pwd)
. "$HERE/scripts/lib/side-by-side.sh"
OUT=${OUT:-$(mktemp -d /tmp/pjdfstest-compare.XXXXXX)}
run() { # $1 = ng|orig
    sbs_start "$1" "$OUT/$1.log"
    mkdir -p "$SBS_MNT/pjd"
    (cd "$SBS_MNT/pjd" && timeout 1800 prove -r -v "$PJD/tests" > "$OUT/$1.tap" 2>&1) || true
    sbs_stop
}
run ng
run orig
python3 - "$OUT/ng.tap" "$OUT/orig.tap" "$PJD/tests/" <<'PY'
import re, sys
def parse(path, prefix):
    res, cur = {}, None
    for line in open(path, errors="replace"):
        m = re.match(r"^(\S+\.t) \.\.", line)
        if m:
            cur = m.group(1).replace(prefix, ""); res[cur] = {}; continue
        m = re.match(r"^(not ok|ok) (\d+)(.*)", line)
        if m and cur:
            got = re.search(r"expected (.*)", m.group(3))
            got = re.sub(r"\b[1-9][0-9]{2,}\b", "N", got.group(1)) if got else ""
            res[cur][int(m.group(2))] = (m.group(1), got)
    return res
ng, orig = parse(sys.argv[1], sys.argv[3]), parse(sys.argv[2], sys.argv[3])
differ = 0
for f, tests in ng.items():
    for n, r in tests.items():
        o = orig.get(f, {}).get(n)
        if o != r:
            differ += 1
            print(f"{f} {n}: pmxcfs-ng {r[0]} {r[1]} | original {o[0] if o else 'missing'} {o[1] if o else ''}")
count = lambda res: sum(len(t) for t in res.values())
ok = lambda res: sum(1 for t in res.values() for r in t.values() if r[0] == "ok")
print(f"pjdfstest: {len(ng)} files, {count(ng)} / {count(orig)} assertions, ok {ok(ng)} / {ok(orig)} (pmxcfs-ng / original), {differ} differ")
PY
echo "TAP output in $OUT"
