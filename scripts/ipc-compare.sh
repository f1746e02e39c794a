#!/usr/bin/env bash
# ipc-compare.sh: sends the same ~50 IPC requests (every request id of PVE::IPCC, with good and
# bad payloads) through a real libqb client to pmxcfs-ng and to the original, each in a fresh
# local-mode mount holding the same tree, and diffs the decoded replies (error, body; times and
# uids masked). Root; not part of CI. Original: ../shared/original/c-local.sh with $C_PMXCFS;
# the libqb client is the test client the ipc tests build (target/tmp/qbclient/qbclient).
# Known differences: the vmlist's version numbers (one version bump per commit, not per write)
# and its order (sorted), the cluster log's pids.
set -uo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
. "$HERE/scripts/lib/side-by-side.sh"
Q=${QBCLIENT:-$HERE/target/tmp/qbclient/qbclient}
OUT=${OUT:-$(mktemp -d /tmp/ipc-compare.XXXXXX)}
[ -x "$Q" ] || { echo "no libqb test client at $Q: run cargo test -p pmxcfs-ipc first" >&2; exit 1; }
FRAMES=$(mktemp); DECODE=$(mktemp)
trap 'rm -f "$FRAMES" "$DECODE"' EXIT
cat > "$FRAMES" <<'PY'
import struct, sys
def req(i, p=b''): return struct.pack('=i4xi4x', i, 16+len(p)) + p
def n256(s): return s[:255].ljust(256, b'\0')
def lcm(pri, ident, tag, msg): return req(7, bytes([pri, len(ident)+1, len(tag)+1]) + ident+b'\0'+tag+b'\0'+msg+b'\0')
def gcl(mx, user): return req(8, struct.pack('=I', mx) + b'\0'*12 + user + b'\0')
def gp(vmid, prop): return req(11, struct.pack('=I', vmid) + prop + b'\0')
def gps(vmid, props): return req(13, struct.pack('=IB', vmid, len(props)) + b''.join(p+b'\0' for p in props))
R = [
 req(2), req(3), req(10),
 req(6, b'storage.cfg\0'), req(6, b'/storage.cfg\0'), req(6, b'nodes/pve1/qemu-server/100.conf\0'), req(6, b'missing.cfg\0'),
 req(6, b'nodes\0'), req(6, b'priv/token.cfg\0'), req(6, b'../etc/passwd\0'), req(6, b'storage.cfg'), req(6, b'\0'),
 req(4, n256(b'testkey') + b'value1'), req(5, n256(b'testkey') + n256(b'')), req(5, n256(b'testkey') + n256(b'pve1')),
 req(5, n256(b'testkey') + n256(b'other')), req(5, n256(b'nokey') + n256(b'')), req(4, n256(b'testkey')), req(5, n256(b'testkey') + n256(b'')),
 req(4, n256(b'big') + b'x'*40000), req(4, n256(b'')+b'v'), req(5, n256(b'x')),
 lcm(5, b'root@pam', b'tag', b'hello world'), lcm(9, b'root@pam', b'tag', b'dropped'), lcm(5, b'root', b'tag', b'a\nb"c\\d'),
 gcl(0, b''), gcl(1, b''), gcl(10, b'root@pam'), gcl(10, b'nobody@pve'),
 gp(100, b'name'), gp(100, b'lock'), gp(0, b'lock'), gp(101, b'name'), gp(999, b'name'), gp(100, b'tags'), gp(200, b'description'),
 gps(0, [b'lock', b'name']), gps(100, [b'name', b'memory', b'missing']), gps(100, []), gps(999, [b'name']), gps(200, [b'boot', b'name', b'description']),
 req(12, b'root@pam!t1 11111111-2222-3333-4444-555555555555\0'), req(12, b'root@pam!t1 wrong\0'), req(12, b'\0'), req(12, b'user@pve!t2 abc\0'),
 req(0), req(9), req(14), req(1, b'extra'), req(2, b'x'),
]
out = b''.join(struct.pack('=I', len(r)) + r for r in R)
sys.stdout.buffer.write(out)
PY
cat > "$DECODE" <<'PY'
import sys, struct, re
d = sys.stdin.buffer.read(); o = 0; k = 0
while o + 4 <= len(d):
    rc = struct.unpack('=i', d[o:o+4])[0]; o += 4
    if rc > 0:
        i, sz, err = struct.unpack('=i4xi4xi4x', d[o:o+24]); body = d[o+24:o+rc]; o += rc
        b = body.decode('utf-8', 'replace')
        b = re.sub(r'"(time|starttime|uid)": ?\d+', r'"\1": T', b)
        b = re.sub(r'"(node|pid|msg)": ?"?[^",]*"?', lambda m: m.group(0), b)
        print(f"#{k} id {i} err {err} body {b!r}")
    else:
        print(f"#{k} rc {rc}")
    k += 1
PY
replies() { # $1 = ng|orig
    sbs_start "$1" "$OUT/$1.log" || return 1
    local M=$SBS_MNT
    mkdir -p "$M/priv" "$M/nodes/pve1/qemu-server" "$M/nodes/pve1/lxc" "$M/nodes/pve2/qemu-server"
    printf 'dir: local\n\tpath /var/lib/vz\n' > "$M/storage.cfg"
    printf 'name: vm100\nmemory: 512\nlock: backup\ntags: a;b\n\n[snap]\nlock: snapshot\nname: old\n' > "$M/nodes/pve1/qemu-server/100.conf"
    printf 'boot: order=scsi0\nname: vm200\ndescription: say "hi" \\o/\n' > "$M/nodes/pve2/qemu-server/200.conf"
    printf 'arch: amd64\nhostname: ct101\n' > "$M/nodes/pve1/lxc/101.conf"
    printf 'root@pam!t1 11111111-2222-3333-4444-555555555555\nuser@pve!t2 abc\n' > "$M/priv/token.cfg"
    sleep 1
    python3 "$FRAMES" | "${SBS_NS[@]}" "$Q" "$SBS_SVC" requests | python3 "$DECODE" | sed -E 's/"pid": [0-9]+/"pid": P/g'
    sbs_stop
}
replies ng > "$OUT/ng.txt" 2>&1
replies orig > "$OUT/orig.txt" 2>&1
if diff "$OUT/ng.txt" "$OUT/orig.txt"; then echo "ipc-compare: replies identical"; else echo "ipc-compare: replies differ (above; $OUT)"; fi
