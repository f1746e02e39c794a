#!/usr/bin/env bash
# cat-placement.sh: daemon CPU per file read (open, read, read at EOF, close) of N files of
# 500 B, with the daemon's threads and the reading process pinned to the same CPU, to
# different CPUs, or left to the scheduler. Shows how much of a FUSE daemon's per-request
# CPU is the cost of waking a thread on another CPU.
#
#   benches/scripts/cat-placement.sh ng|orig [N]      (root; N default 20000)
#
# ng:   $PMXCFS_BIN (default target/release/pmxcfs), extra environment in $NGENV
# orig: the original through ../shared/original/c-local.sh, binary $C_PMXCFS
# RUNS: placements to run, e.g. "run 0-1 0-1; run 0 0; run 1 0" (daemon CPUs, reader CPUs;
#       daemon CPUs "-" leaves the daemon's threads as they are, e.g. io_uring queue threads
#       pinned to their CPUs)
set -euo pipefail
WHICH=${1:-ng}; N=${2:-20000}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
. "$HERE/scripts/lib/side-by-side.sh"
DIRS=$(( N / 100 > 0 ? N / 100 : 1 ))
trap 'sbs_stop 2>/dev/null' EXIT
sbs_start "$WHICH" /dev/null
R=$SBS_ROOT; P=$SBS_PID
M="$R/etc/pve" python3 - "$N" "$DIRS" <<'PY'
import os, sys
m, n, dirs = os.environ["M"], int(sys.argv[1]), int(sys.argv[2])
for d in range(dirs): os.mkdir(f"{m}/d{d}")
for i in range(n):
    with open(f"{m}/d{i % dirs}/f{i}", "wb") as f: f.write(b"x" * 500)
PY
sleep 3
cpu() { awk '{print $14+$15}' "/proc/$P/stat"; }
ctx() { cat /proc/"$P"/task/*/status | awk '/ctxt_switches/{s+=$2} END{print s}'; }
run() { # $1 = daemon CPUs, $2 = reader CPUs
    if [ "$1" != "-" ]; then # "-": leave the daemon's threads where they placed themselves
        for t in /proc/"$P"/task/*; do taskset -pc "$1" "$(basename "$t")" >/dev/null; done
    fi
    local c0 x0 t0 c1 x1 t1
    c0=$(cpu); x0=$(ctx); t0=$(date +%s%N)
    M="$R/etc/pve" taskset -c "$2" python3 - "$N" "$DIRS" <<'PY'
import os, sys
m, n, dirs = os.environ["M"], int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    fd = os.open(f"{m}/d{i % dirs}/f{i}", os.O_RDONLY); os.read(fd, 65536); os.read(fd, 65536); os.close(fd)
PY
    t1=$(date +%s%N); c1=$(cpu); x1=$(ctx)
    local hz; hz=$(getconf CLK_TCK)
    echo "$WHICH N=$N daemon CPUs $1, reader CPUs $2: $(( (c1 - c0) * 1000000 / hz / N )) us/file daemon CPU," \
         "$(( (t1 - t0) / 1000 / N )) us/file wall, $(awk "BEGIN{printf \"%.2f\", ($x1-$x0)/$N}") context switches/file"
}
eval "${RUNS:-run 0-1 0-1; run 0 0; run 1 0; run 0-1 0-1}"
