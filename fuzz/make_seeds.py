#!/usr/bin/env python3
"""Write the seed corpora of the pmxcfs-ng fuzz targets (see docs/fuzzing.md).

Sources: the golden CPG traffic of the original C pmxcfs (shared/golden/wire/node*.tsv,
hex in the last column, `{N}` = N zero bytes), hand-made IPC requests and config.db
patch records. The result was then minimised with `cargo fuzz cmin`.

usage: make_seeds.py GOLDEN_WIRE_DIR OUT_CORPUS_DIR
"""
import hashlib
import os
import re
import struct
import sys

wire_dir, out = sys.argv[1], sys.argv[2]


def put(target, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


seen = set()
big_seen = set()
for fn in sorted(os.listdir(wire_dir)):
    if not fn.endswith(".tsv") or not fn.startswith("node"):
        continue
    for line in open(os.path.join(wire_dir, fn)):
        cols = line.rstrip("\n").split("\t")
        if len(cols) < 6 or cols[1] not in ("send", "deliver"):
            continue
        group, hx = cols[2], cols[5]
        msg = bytes.fromhex(re.sub(r"\{(\d+)\}", lambda m: "00" * int(m[1]), hx))
        assert len(msg) == int(cols[4]), (fn, cols[:5])
        if msg in seen:
            continue
        seen.add(msg)
        mtype, subtype = struct.unpack_from("<HH", msg, 0)
        # whole frames (the 131 KB kvstore STATE rings only once: they differ little)
        if len(msg) < 65536 or (group, mtype) not in big_seen:
            put("dfsm_frame", msg)
            if len(msg) >= 65536:
                big_seen.add((group, mtype))
        if mtype == 0:
            payload = msg[24:]
            if group == "pve_dcdb_v1":
                put("dcdb_payload", bytes([subtype]) + payload)
            elif subtype == 1:
                put("kvstore_update", payload)
            elif subtype == 3:
                put("clog_state", payload)
        else:
            payload = msg[32:]
            if group == "pve_dcdb_v1" and mtype == 2:
                put("memdb_index", payload)
            elif group == "pve_dcdb_v1" and mtype == 3:
                put("dcdb_payload", bytes([10]) + payload)
            elif group == "pve_kvstore_v1" and mtype == 2:
                put("clog_state", payload)

# ---- IPC requests (layout of ipc/src/protocol.rs `build`, little-endian host) ----


def req(rid, payload):
    return struct.pack("<iiii", rid, 0, 16 + len(payload), 0) + payload


def name256(s):
    return s[:255].ljust(256, b"\0")


ipc = [
    req(1, b""), req(2, b""), req(3, b""), req(10, b""),
    req(4, name256(b"kv/golden") + b"value\0"),
    req(4, name256(b"rrd/pve2-node/node1") + b"1700000000:1:2:3\0"),
    req(4, name256(b"nodeip") + b"10.0.0.1\0"),
    req(5, name256(b"kv/golden") + name256(b"node2")),
    req(6, b"corosync.conf\0"),
    req(6, b"/priv/authkey.key\0"),
    req(7, bytes([6, 9, 5]) + b"root@pam\0" + b"test\0" + b"hello world\0"),
    req(7, bytes([6, 0, 0]) + b"x\0"),
    req(8, struct.pack("<IIII", 50, 0, 0, 0) + b"root@pam\0"),
    req(8, struct.pack("<IIII", 0, 0, 0, 0) + b"\0"),
    req(11, struct.pack("<I", 100) + b"memory\0"),
    req(11, struct.pack("<I", 0) + b"lock\0"),
    req(12, b"user@pam!tok\0"),
    req(13, struct.pack("<I", 100) + bytes([2]) + b"name\0memory\0"),
    req(13, struct.pack("<I", 0) + bytes([1]) + b"lock\0"),
    req(99, b""),
]
for r in ipc:
    put("ipc_request", r)

# ---- config.db: mode byte + 5-byte patch records (see configdb_image in src/lib.rs) ----
cfg = [
    bytes([1]),  # golden, unchanged
    bytes([1]) + struct.pack("<IB", 16, 0x10),  # page size field
    bytes([1]) + struct.pack("<IB", 18, 0x01) + struct.pack("<IB", 19, 0x01),  # legacy journal
    bytes([1]) + struct.pack("<IB", 28, 0xff),  # database size in pages
    bytes([3]) + struct.pack("<IB", 4096, 0x0d),  # first btree page type
    bytes([3]) + struct.pack("<IB", 4096 * 2 + 3, 0xff),  # cell count of page 3
    bytes([5]) + struct.pack("<IB", 4096 * 20, 0),  # truncated after 20 pages
    bytes([5]) + struct.pack("<IB", 100, 0),  # truncated in page 1
    bytes([0]),  # empty file
    bytes([0]) + b"SQLite format 3\0",
]
for c in cfg:
    put("configdb_load", c)
