//! Every message kind of the two CPG groups checked against byte arrays written out by hand
//! from the wire spec, not produced by our encoders.
//!
//! Every message kind of the two CPG groups checked against byte arrays written out BY HAND
//! from the tables of `../shared/spec/pmxcfs-wire.md` (§0, §2, §4, §5, §6) — not produced by
//! our encoders. Each test decodes the literal bytes and checks every field, then encodes the
//! fields and compares with the literal bytes. The quirks are covered: lengths that count the
//! NUL, a length of 0 meaning "no string", the 256-byte kvstore key field whose tail the C
//! sender leaves uninitialized, and the 4 trailing padding bytes of a `clog_entry_t`.
//!
//! Conventions in the arrays: all integers little-endian; `/*name*/` comments name the field;
//! strings are spelled as byte-string literals so the NUL is visible.

use pmxcfs_dfsm::transport::GroupName;
use pmxcfs_dfsm::wire::dcdb::{DcdbMessage, DcdbSubtype, FuseOp, Unlock};
use pmxcfs_dfsm::wire::frame::{
    decode_verify, decode_verify_request, encode_normal, encode_state, encode_verify,
    encode_verify_request, split_state,
};
use pmxcfs_dfsm::wire::index::{IndexEntry, MemdbIndex};
use pmxcfs_dfsm::wire::kvstore::{fnv1a64, ClogEntry, ClogMeta, ClogState, KvUpdate};
use pmxcfs_dfsm::wire::update::{DbChecksum, InodeRecord, DT_DIR, DT_REG};
use pmxcfs_dfsm::wire::{BaseHeader, Epoch, Frame, MessageType};
use sha2::{Digest, Sha256};

/// Concatenates hand-written pieces into one buffer.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

/// 1_700_000_000 = 0x6553_F100, little-endian.
const T: [u8; 4] = [0x00, 0xf1, 0x53, 0x65];
const TIME: u32 = 1_700_000_000;

// ------------------------------------------------------------------------------------------
// §2.1 base header (16 B), §2.2 normal header (24 B)

#[test]
fn base_header_16_bytes() {
    #[rustfmt::skip]
    let bytes: [u8; 16] = [
        0x00, 0x00,             /*type = 0 NORMAL*/
        0x05, 0x00,             /*subtype = 5 CFS_CREATE*/
        0x01, 0x00, 0x00, 0x00, /*protocol_version = 1*/
        0x00, 0xf1, 0x53, 0x65, /*time = 1700000000*/
        0x00, 0x00, 0x00, 0x00, /*reserved*/
    ];
    let h = BaseHeader::decode(&bytes).unwrap();
    assert_eq!(
        h,
        BaseHeader {
            msg_type: 0,
            subtype: 5,
            protocol_version: 1,
            time: TIME,
            reserved: 0
        }
    );
    assert!(
        BaseHeader::decode(&bytes[..15]).is_err(),
        "15 bytes are not a header"
    );
}

#[test]
fn normal_header_24_bytes_with_u64_count() {
    // a count above 2^32 shows the counter is a full u64
    #[rustfmt::skip]
    let bytes: [u8; 24 + 3] = [
        0x00, 0x00,                                     /*type NORMAL*/
        0x01, 0x00,                                     /*subtype 1 CFS_WRITE*/
        0x01, 0x00, 0x00, 0x00,                         /*protocol_version 1*/
        0x00, 0xf1, 0x53, 0x65,                         /*time*/
        0x00, 0x00, 0x00, 0x00,                         /*reserved*/
        0x07, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, /*count = 0x1_0000_0007*/
        b'a', b'b', b'c',                               /*payload*/
    ];
    let f = Frame::decode(&bytes).unwrap();
    let Frame::Normal {
        header,
        count,
        payload,
    } = f
    else {
        panic!("not normal: {f:?}")
    };
    assert_eq!(header.msg_type, MessageType::Normal as u16);
    assert_eq!(
        (
            header.subtype,
            header.protocol_version,
            header.time,
            header.reserved
        ),
        (1, 1, TIME, 0)
    );
    assert_eq!(count, 0x1_0000_0007);
    assert_eq!(payload, b"abc");
    assert_eq!(f.encode(), bytes);
    assert_eq!(encode_normal(1, 1, TIME, 0x1_0000_0007, b"abc"), bytes);
}

// ------------------------------------------------------------------------------------------
// §2.3 state header (32 B) with the epoch, §2.4 state message kinds

#[rustfmt::skip]
fn state_header(kind: u8) -> [u8; 32] {
    [
        kind, 0x00,             /*type*/
        0x00, 0x00,             /*subtype = 0*/
        0x01, 0x00, 0x00, 0x00, /*protocol_version 1*/
        0x00, 0xf1, 0x53, 0x65, /*time 1700000000*/
        0x00, 0x00, 0x00, 0x00, /*reserved*/
        0x03, 0x00, 0x00, 0x00, /*epoch.epoch = 3*/
        0xfe, 0xf0, 0x53, 0x65, /*epoch.time = 1699999998 = 0x6553F0FE*/
        0x02, 0x00, 0x00, 0x00, /*epoch.nodeid = 2*/
        0x39, 0x30, 0x00, 0x00, /*epoch.pid = 12345 = 0x3039*/
    ]
}

const EPOCH: Epoch = Epoch {
    epoch: 3,
    time: 1_699_999_998,
    nodeid: 2,
    pid: 12345,
};

fn check_state(bytes: &[u8], kind: MessageType, payload: &[u8]) {
    let f = Frame::decode(bytes).unwrap();
    let Frame::State {
        header,
        kind: k,
        epoch,
        payload: p,
    } = f
    else {
        panic!("not a state frame: {f:?}")
    };
    assert_eq!(k, kind);
    assert_eq!(
        header,
        BaseHeader {
            msg_type: kind as u16,
            subtype: 0,
            protocol_version: 1,
            time: TIME,
            reserved: 0
        }
    );
    assert_eq!(epoch, EPOCH);
    assert_eq!(p, payload);
    assert_eq!(split_state(bytes).unwrap(), (header, EPOCH, payload));
    assert_eq!(f.encode(), bytes, "{kind:?} re-encodes");
    assert_eq!(
        encode_state(1, kind, TIME, EPOCH, payload),
        bytes,
        "{kind:?} encodes"
    );
}

#[test]
fn sync_start_and_update_complete_are_bare_32_byte_state_headers() {
    check_state(&state_header(1), MessageType::SyncStart, &[]);
    check_state(&state_header(4), MessageType::UpdateComplete, &[]);
    assert_eq!(MessageType::from_u16(7), None, "types stop at 6");
}

#[test]
fn verify_request_40_bytes() {
    #[rustfmt::skip]
    let payload: [u8; 8] = [0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01 /*csum_id = 0x0100_0000_0000_002a*/];
    let bytes = cat(&[&state_header(5), &payload]);
    assert_eq!(bytes.len(), 40, "spec §7: VERIFY_REQUEST is 40 bytes");
    check_state(&bytes, MessageType::VerifyRequest, &payload);
    assert_eq!(
        decode_verify_request(&payload).unwrap(),
        0x0100_0000_0000_002a
    );
    assert_eq!(encode_verify_request(0x0100_0000_0000_002a), payload);
    assert!(
        decode_verify_request(&payload[..7]).is_err(),
        "must be exactly 8 bytes"
    );
    assert!(
        decode_verify_request(&cat(&[&payload, &[0]])).is_err(),
        "must be exactly 8 bytes"
    );
}

#[test]
fn verify_72_bytes() {
    let csum: [u8; 32] = std::array::from_fn(|i| 0xa0 + i as u8);
    #[rustfmt::skip]
    let payload = cat(&[
        &[0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01], /*csum_id*/
        &[0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,  /*SHA-256 (32 B)*/
          0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
          0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,
          0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf],
    ]);
    let bytes = cat(&[&state_header(6), &payload]);
    assert_eq!(bytes.len(), 72, "spec §7: VERIFY is 72 bytes");
    check_state(&bytes, MessageType::Verify, &payload);
    assert_eq!(
        decode_verify(&payload).unwrap(),
        (0x0100_0000_0000_002a, csum)
    );
    assert_eq!(encode_verify(0x0100_0000_0000_002a, &csum), payload);
    assert!(
        decode_verify(&payload[..39]).is_err(),
        "must be exactly 40 bytes"
    );
}

// ------------------------------------------------------------------------------------------
// §4.2 fuse-op payloads, one per dcdb subtype, inside complete NORMAL messages

/// A complete dcdb NORMAL message: header (count 9) + payload.
#[rustfmt::skip]
fn dcdb_normal(subtype: u8, payload: &[u8]) -> Vec<u8> {
    cat(&[
        &[0x00, 0x00, subtype, 0x00, 0x01, 0x00, 0x00, 0x00], /*type NORMAL, subtype, protocol 1*/
        &T, &[0x00; 4],                                       /*time, reserved*/
        &[0x09, 0, 0, 0, 0, 0, 0, 0],                         /*count = 9*/
        payload,
    ])
}

/// Decodes a complete hand-written dcdb message, checks it and re-encodes both levels.
fn check_fuse(subtype: DcdbSubtype, message: &[u8], want: FuseOp<'_>) {
    let f = Frame::decode(message).unwrap();
    let Frame::Normal {
        header,
        count,
        payload,
    } = f
    else {
        panic!("not normal")
    };
    assert_eq!(
        (header.subtype, header.protocol_version, header.time, count),
        (subtype as u16, 1, TIME, 9)
    );
    let m = DcdbMessage::decode(header.subtype, payload).unwrap();
    assert_eq!(m, DcdbMessage::Fuse(subtype, want), "{subtype:?} decodes");
    assert_eq!(m.subtype(), subtype);
    assert_eq!(
        want.encode().unwrap(),
        payload,
        "{subtype:?} payload encodes"
    );
    assert_eq!(m.encode().unwrap(), payload);
    assert_eq!(
        encode_normal(1, subtype as u16, TIME, 9, payload),
        message,
        "{subtype:?} message encodes"
    );
}

#[test]
fn cfs_write_fuse_op() {
    #[rustfmt::skip]
    let payload: &[u8] = &cat(&[
        &[0x03, 0x00, 0x00, 0x00], /*size = 3*/
        &[0x00, 0x10, 0x00, 0x00], /*offset = 4096*/
        &[0x09, 0x00, 0x00, 0x00], /*pathlen = 9 = strlen("a/b.conf") + NUL*/
        &[0x00, 0x00, 0x00, 0x00], /*tolen = 0: no "to"*/
        &[0x00, 0x00, 0x00, 0x00], /*flags = 0*/
        b"a/b.conf\0",
        b"xyz",                    /*data*/
    ]);
    assert_eq!(payload.len(), 20 + 9 + 3);
    let msg = dcdb_normal(1, payload);
    assert_eq!(
        msg.len(),
        24 + 20 + 8 + 1 + 3,
        "spec §7: WRITE = 24 + 20 + pathlen + size"
    );
    check_fuse(
        DcdbSubtype::Write,
        &msg,
        FuseOp {
            offset: 4096,
            flags: 0,
            path: Some(b"a/b.conf"),
            to: None,
            data: b"xyz",
        },
    );
    assert_eq!(
        FuseOp::write("a/b.conf", 4096, b"xyz").encode().unwrap(),
        payload
    );
}

#[test]
fn cfs_write_truncate_fuse_op() {
    #[rustfmt::skip]
    let payload: &[u8] = &cat(&[
        &[0x00, 0x00, 0x00, 0x00], /*size = 0*/
        &[0x0a, 0x00, 0x00, 0x00], /*offset = new length 10*/
        &[0x02, 0x00, 0x00, 0x00], /*pathlen = 2*/
        &[0x00, 0x00, 0x00, 0x00], /*tolen*/
        &[0x01, 0x00, 0x00, 0x00], /*flags = 1 truncate*/
        b"f\0",
    ]);
    check_fuse(
        DcdbSubtype::Write,
        &dcdb_normal(1, payload),
        FuseOp {
            offset: 10,
            flags: 1,
            path: Some(b"f"),
            to: None,
            data: b"",
        },
    );
    assert_eq!(FuseOp::truncate("f", 10).encode().unwrap(), payload);
}

/// A fuse-op payload with only a path (MKDIR, DELETE, CREATE, MTIME): size 0, tolen 0, flags 0.
#[rustfmt::skip]
fn path_only(offset: [u8; 4], pathlen: u8, path_with_nul: &[u8]) -> Vec<u8> {
    cat(&[
        &[0x00, 0x00, 0x00, 0x00], /*size*/
        &offset,                   /*offset*/
        &[pathlen, 0x00, 0x00, 0x00],
        &[0x00, 0x00, 0x00, 0x00], /*tolen*/
        &[0x00, 0x00, 0x00, 0x00], /*flags*/
        path_with_nul,
    ])
}

#[test]
fn cfs_mkdir_delete_create_fuse_ops() {
    let mkdir = path_only([0; 4], 6, b"nodes\0");
    check_fuse(
        DcdbSubtype::Mkdir,
        &dcdb_normal(2, &mkdir),
        FuseOp::path_only("nodes"),
    );
    let delete = path_only([0; 4], 14, b"nodes/x/y.cfg\0");
    check_fuse(
        DcdbSubtype::Delete,
        &dcdb_normal(3, &delete),
        FuseOp::path_only("nodes/x/y.cfg"),
    );
    let create = path_only([0; 4], 14, b"corosync.conf\0");
    check_fuse(
        DcdbSubtype::Create,
        &dcdb_normal(5, &create),
        FuseOp::path_only("corosync.conf"),
    );
}

#[test]
fn cfs_mtime_fuse_op_carries_the_mtime_in_offset() {
    let mtime = path_only(T, 12, b"priv/lock/x\0");
    check_fuse(
        DcdbSubtype::Mtime,
        &dcdb_normal(6, &mtime),
        FuseOp {
            offset: TIME,
            flags: 0,
            path: Some(b"priv/lock/x"),
            to: None,
            data: b"",
        },
    );
    assert_eq!(FuseOp::mtime("priv/lock/x", TIME).encode().unwrap(), mtime);
}

#[test]
fn cfs_rename_fuse_op_has_path_then_to() {
    #[rustfmt::skip]
    let payload: &[u8] = &cat(&[
        &[0x00, 0x00, 0x00, 0x00], /*size*/
        &[0x00, 0x00, 0x00, 0x00], /*offset*/
        &[0x0a, 0x00, 0x00, 0x00], /*pathlen = 10 ("d/a.tmp.1" + NUL)*/
        &[0x06, 0x00, 0x00, 0x00], /*tolen = 6 ("d/a.x" + NUL)*/
        &[0x00, 0x00, 0x00, 0x00], /*flags*/
        b"d/a.tmp.1\0",
        b"d/a.x\0",
    ]);
    let msg = dcdb_normal(4, payload);
    check_fuse(
        DcdbSubtype::Rename,
        &msg,
        FuseOp {
            offset: 0,
            flags: 0,
            path: Some(b"d/a.tmp.1"),
            to: Some(b"d/a.x"),
            data: b"",
        },
    );
    assert_eq!(
        FuseOp::rename("d/a.tmp.1", "d/a.x").encode().unwrap(),
        payload
    );
}

#[test]
fn fuse_op_quirks_zero_length_means_no_string_and_lengths_are_exact() {
    // pathlen 0 and tolen 0: no path at all (not an empty string)
    let none = path_only([0; 4], 0, b"");
    assert_eq!(none.len(), 20, "the minimum payload is the 20-byte header");
    assert_eq!(
        FuseOp::decode(&none).unwrap(),
        FuseOp {
            offset: 0,
            flags: 0,
            path: None,
            to: None,
            data: b""
        }
    );
    assert_eq!(
        FuseOp {
            offset: 0,
            flags: 0,
            path: None,
            to: None,
            data: b""
        }
        .encode()
        .unwrap(),
        none
    );
    // pathlen 1: the empty string (just the NUL)
    let empty = path_only([0; 4], 1, b"\0");
    assert_eq!(FuseOp::decode(&empty).unwrap().path, Some(&b""[..]));
    // the path's last byte must be the NUL
    assert!(
        FuseOp::decode(&path_only([0; 4], 2, b"ab")).is_err(),
        "path without NUL"
    );
    // payload_len - 20 must equal size + pathlen + tolen exactly (one byte too many / too few)
    assert!(
        FuseOp::decode(&cat(&[&path_only([0; 4], 2, b"a\0"), b"!"])).is_err(),
        "trailing byte"
    );
    assert!(
        FuseOp::decode(&path_only([0; 4], 3, b"a\0")).is_err(),
        "short by one"
    );
    assert!(
        FuseOp::decode(&none[..19]).is_err(),
        "shorter than the header"
    );
    // an unknown subtype is rejected (the receiver leaves)
    assert!(DcdbMessage::decode(0, &none).is_err());
    assert!(DcdbMessage::decode(9, &none).is_err());
}

// ------------------------------------------------------------------------------------------
// §4.4 unlock payload (UNLOCK_REQUEST 7, UNLOCK 8)

#[test]
fn cfs_unlock_request_and_unlock() {
    let csum: [u8; 32] = std::array::from_fn(|i| i as u8);
    #[rustfmt::skip]
    let payload: &[u8] = &cat(&[
        &[0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, /*csum (32 B)*/
          0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
          0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
          0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f],
        b"priv/lock/ha\0",                                 /*path, NUL-terminated, no length field*/
    ]);
    for (sub, st) in [(7u8, DcdbSubtype::UnlockRequest), (8, DcdbSubtype::Unlock)] {
        let msg = dcdb_normal(sub, payload);
        assert_eq!(msg.len(), 24 + 32 + 13, "spec §7: 24 + 32 + pathlen");
        let f = Frame::decode(&msg).unwrap();
        let m = DcdbMessage::decode(f.header().subtype, f.payload()).unwrap();
        assert_eq!(
            m,
            DcdbMessage::Unlock(
                st,
                Unlock {
                    csum,
                    path: b"priv/lock/ha"
                }
            )
        );
        assert_eq!(m.encode().unwrap(), payload);
        assert_eq!(encode_normal(1, sub as u16, TIME, 9, payload), msg);
    }
    assert_eq!(
        Unlock {
            csum,
            path: b"priv/lock/ha"
        }
        .encode(),
        payload
    );
    assert!(
        Unlock::decode(&payload[..32]).is_err(),
        "minimum payload is 33 bytes"
    );
    assert!(
        Unlock::decode(&payload[..payload.len() - 1]).is_err(),
        "last byte must be NUL"
    );
    assert!(
        Unlock::decode(&payload[..33]).is_err(),
        "33 bytes ending in 'p': no NUL"
    );
    assert_eq!(
        Unlock::decode(&cat(&[&csum, b"\0"])).unwrap().path,
        b"",
        "33 bytes: csum + NUL = the empty path"
    );
}

// ------------------------------------------------------------------------------------------
// §4.6 UPDATE inode record, §5.1 memdb index, §5.2–5.4 digests

#[test]
fn update_inode_record_of_a_file() {
    #[rustfmt::skip]
    let payload: &[u8] = &cat(&[
        &[0x02, 0, 0, 0, 0, 0, 0, 0], /*parent = 2*/
        &[0x05, 0, 0, 0, 0, 0, 0, 0], /*inode = 5*/
        &[0x07, 0, 0, 0, 0, 0, 0, 0], /*version = 7*/
        &[0x03, 0x00, 0x00, 0x00],    /*writer = nodeid 3*/
        &T,                           /*mtime*/
        &[0x03, 0x00, 0x00, 0x00],    /*size = 3*/
        &[0x07, 0x00, 0x00, 0x00],    /*namelen = 7 ("b.conf" + NUL)*/
        &[0x08],                      /*type = DT_REG*/
        b"b.conf\0",
        b"xyz",
    ]);
    assert_eq!(payload.len(), 41 + 7 + 3);
    let want = InodeRecord {
        parent: 2,
        inode: 5,
        version: 7,
        writer: 3,
        mtime: TIME,
        entry_type: DT_REG,
        name: b"b.conf",
        data: b"xyz",
    };
    assert_eq!(InodeRecord::decode(payload).unwrap(), want);
    assert_eq!(want.encode().unwrap(), payload);
    let msg = cat(&[&state_header(3), payload]);
    check_state(&msg, MessageType::Update, payload);

    // §5.2 index digest: version ‖ writer ‖ mtime ‖ size ‖ type ‖ parent ‖ name (no NUL) ‖ data
    #[rustfmt::skip]
    let digest_input = cat(&[
        &[0x07, 0, 0, 0, 0, 0, 0, 0], &[0x03, 0, 0, 0], &T, &[0x03, 0, 0, 0], &[0x08],
        &[0x02, 0, 0, 0, 0, 0, 0, 0], b"b.conf", b"xyz",
    ]);
    assert_eq!(
        want.index_digest(),
        <[u8; 32]>::from(Sha256::digest(&digest_input))
    );
    // §5.4 entry checksum = the same stream with the inode in front
    let csum_input = cat(&[&[0x05, 0, 0, 0, 0, 0, 0, 0], &digest_input]);
    assert_eq!(
        want.entry_csum(),
        <[u8; 32]>::from(Sha256::digest(&csum_input))
    );
}

#[test]
fn update_inode_records_of_a_dir_and_the_root() {
    #[rustfmt::skip]
    let dir: &[u8] = &cat(&[
        &[0x00, 0, 0, 0, 0, 0, 0, 0], /*parent = 0 (root)*/
        &[0x02, 0, 0, 0, 0, 0, 0, 0], /*inode = 2*/
        &[0x02, 0, 0, 0, 0, 0, 0, 0], /*version = 2*/
        &[0x01, 0x00, 0x00, 0x00],    /*writer*/
        &T,
        &[0x00, 0x00, 0x00, 0x00],    /*size = 0 for dirs*/
        &[0x02, 0x00, 0x00, 0x00],    /*namelen*/
        &[0x04],                      /*type = DT_DIR*/
        b"d\0",
    ]);
    let want = InodeRecord {
        parent: 0,
        inode: 2,
        version: 2,
        writer: 1,
        mtime: TIME,
        entry_type: DT_DIR,
        name: b"d",
        data: b"",
    };
    assert_eq!(InodeRecord::decode(dir).unwrap(), want);
    assert_eq!(want.encode().unwrap(), dir);

    // root: inode 0, name "" → namelen 1 (just the NUL)
    #[rustfmt::skip]
    let root: &[u8] = &cat(&[
        &[0; 8], &[0; 8],             /*parent 0, inode 0*/
        &[0x09, 0, 0, 0, 0, 0, 0, 0], /*version = 9 (the global version)*/
        &[0x02, 0x00, 0x00, 0x00], &T, &[0; 4],
        &[0x01, 0x00, 0x00, 0x00],    /*namelen = 1*/
        &[0x04], b"\0",
    ]);
    let want = InodeRecord {
        parent: 0,
        inode: 0,
        version: 9,
        writer: 2,
        mtime: TIME,
        entry_type: DT_DIR,
        name: b"",
        data: b"",
    };
    assert_eq!(InodeRecord::decode(root).unwrap(), want);
    assert_eq!(want.encode().unwrap(), root);

    // receiver checks: type ∈ {4, 8}; len - 41 == size + namelen; name NUL-terminated
    let mut bad_type = dir.to_vec();
    bad_type[40] = 0x0a;
    assert!(InodeRecord::decode(&bad_type).is_err());
    assert!(
        InodeRecord::decode(&cat(&[dir, b"!"])).is_err(),
        "trailing byte"
    );
    let mut no_nul = dir.to_vec();
    *no_nul.last_mut().unwrap() = b'x';
    assert!(InodeRecord::decode(&no_nul).is_err());
}

#[test]
fn memdb_index_and_state_message() {
    let d0 = [0x11u8; 32];
    let d5 = [0x55u8; 32];
    #[rustfmt::skip]
    let index: &[u8] = &cat(&[
        &[0x09, 0, 0, 0, 0, 0, 0, 0], /*version = 9*/
        &[0x05, 0, 0, 0, 0, 0, 0, 0], /*last_inode = 5*/
        &[0x02, 0x00, 0x00, 0x00],    /*writer = 2*/
        &T,                           /*mtime*/
        &[0x02, 0x00, 0x00, 0x00],    /*size = 2 entries*/
        &[0x70, 0x00, 0x00, 0x00],    /*bytes = 32 + 2*40 = 112*/
        &[0x00, 0, 0, 0, 0, 0, 0, 0], &d0, /*entry: inode 0 + digest*/
        &[0x05, 0, 0, 0, 0, 0, 0, 0], &d5, /*entry: inode 5 + digest*/
    ]);
    assert_eq!(index.len(), 112);
    let want = MemdbIndex {
        version: 9,
        last_inode: 5,
        writer: 2,
        mtime: TIME,
        entries: vec![
            IndexEntry {
                inode: 0,
                digest: d0,
            },
            IndexEntry {
                inode: 5,
                digest: d5,
            },
        ],
    };
    assert_eq!(MemdbIndex::decode(index).unwrap(), want);
    assert_eq!(want.encode().unwrap(), index);
    assert!(want.is_sorted());
    assert_eq!(want.digest_of(5), Some(&d5));
    // STATE message: 32 + 32 + 40·N (§7)
    let msg = cat(&[&state_header(2), index]);
    assert_eq!(msg.len(), 32 + 32 + 40 * 2);
    check_state(&msg, MessageType::State, index);
    // `bytes` must equal the length, `size` must match it
    let mut bad = index.to_vec();
    bad[28] = 0x71;
    assert!(MemdbIndex::decode(&bad).is_err(), "bytes field != length");
    let mut bad = index.to_vec();
    bad[24] = 0x03;
    assert!(MemdbIndex::decode(&bad).is_err(), "size field disagrees");
    assert!(MemdbIndex::decode(&index[..31]).is_err());
}

#[test]
fn whole_db_checksum_is_sha256_over_all_entries_in_inode_order() {
    // §5.3: for each entry: inode ‖ version ‖ writer ‖ mtime ‖ size ‖ type ‖ parent ‖ name ‖ data
    let root = InodeRecord {
        parent: 0,
        inode: 0,
        version: 3,
        writer: 0,
        mtime: TIME,
        entry_type: DT_DIR,
        name: b"",
        data: b"",
    };
    let file = InodeRecord {
        parent: 0,
        inode: 3,
        version: 3,
        writer: 1,
        mtime: TIME,
        entry_type: DT_REG,
        name: b"f",
        data: b"hi",
    };
    #[rustfmt::skip]
    let stream = cat(&[
        &[0; 8], &[0x03, 0, 0, 0, 0, 0, 0, 0], &[0; 4], &T, &[0; 4], &[0x04], &[0; 8],
        &[0x03, 0, 0, 0, 0, 0, 0, 0], &[0x03, 0, 0, 0, 0, 0, 0, 0], &[0x01, 0, 0, 0], &T, &[0x02, 0, 0, 0], &[0x08], &[0; 8], b"f", b"hi",
    ]);
    let mut c = DbChecksum::new();
    c.add(&root);
    c.add(&file);
    assert_eq!(c.finish(), <[u8; 32]>::from(Sha256::digest(&stream)));
}

// ------------------------------------------------------------------------------------------
// §6.2 kvstore UPDATE (256-byte key field), §6.3 LOG (clog entry + 4 padding bytes)

/// A complete kvstore NORMAL message (protocol version 0!), count 2.
#[rustfmt::skip]
fn kv_normal(subtype: u8, payload: &[u8]) -> Vec<u8> {
    cat(&[
        &[0x00, 0x00, subtype, 0x00, 0x00, 0x00, 0x00, 0x00], /*NORMAL, subtype, protocol_version 0*/
        &T, &[0; 4],
        &[0x02, 0, 0, 0, 0, 0, 0, 0],
        payload,
    ])
}

#[test]
fn kvstore_update_has_a_fixed_256_byte_key_field() {
    let mut key_field = [0u8; 256];
    key_field[..9].copy_from_slice(b"kv/golden"); // then NUL and zero fill up to 256
    let payload = cat(&[&key_field, b"hello\0"]);
    assert_eq!(payload.len(), 256 + 6);
    let u = KvUpdate::decode(&payload).unwrap();
    assert_eq!(
        u,
        KvUpdate {
            key: b"kv/golden",
            value: b"hello\0"
        }
    );
    assert_eq!(u.encode().unwrap(), payload, "senders zero the key tail");
    let msg = kv_normal(1, &payload);
    assert_eq!(msg.len(), 24 + 256 + 6);
    let f = Frame::decode(&msg).unwrap();
    assert_eq!((f.header().protocol_version, f.header().subtype), (0, 1));
    assert_eq!(f.payload(), &payload[..]);
    assert_eq!(encode_normal(0, 1, TIME, 2, &payload), msg);

    // quirk: the C sender leaves stack garbage after the key's NUL; receivers ignore it
    let mut garbage = payload.clone();
    for (i, b) in garbage[10..256].iter_mut().enumerate() {
        *b = 0xc0 | (i as u8 & 0x3f);
    }
    assert_eq!(
        KvUpdate::decode(&garbage).unwrap(),
        KvUpdate {
            key: b"kv/golden",
            value: b"hello\0"
        }
    );
    // n == 0 (a delete) is exactly 256 bytes
    assert_eq!(KvUpdate::decode(&key_field).unwrap().value, b"");
    // shorter than the key field, or no NUL inside it: rejected
    assert!(KvUpdate::decode(&key_field[..255]).is_err());
    assert!(KvUpdate::decode(&[b'k'; 256]).is_err());
    assert!(
        KvUpdate {
            key: &[b'k'; 256],
            value: b""
        }
        .encode()
        .is_err(),
        "key needs room for its NUL"
    );
}

#[test]
fn kvstore_log_is_a_clog_entry_with_4_padding_bytes() {
    // FNV-1a-64 over the strings INCLUDING their NUL (§6.3), computed independently:
    // fnv1a64("node1\0") = 0xe6f5e3c220c8fefc, fnv1a64("root\0") = 0x4dd1e2461dbc53bf
    #[rustfmt::skip]
    let entry: &[u8] = &cat(&[
        &[0x00, 0x00, 0x00, 0x00],                         /*prev = 0*/
        &[0x00, 0x00, 0x00, 0x00],                         /*next = 0*/
        &[0x07, 0x00, 0x00, 0x00],                         /*uid = 7*/
        &T,                                                /*time*/
        &[0xfc, 0xfe, 0xc8, 0x20, 0xc2, 0xe3, 0xf5, 0xe6], /*node_digest*/
        &[0xbf, 0x53, 0xbc, 0x1d, 0x46, 0xe2, 0xd1, 0x4d], /*ident_digest*/
        &[0xd2, 0x04, 0x00, 0x00],                         /*pid = 1234*/
        &[0x06],                                           /*priority = 6 (info)*/
        &[0x06],                                           /*node_len = 6*/
        &[0x05],                                           /*ident_len = 5*/
        &[0x04],                                           /*tag_len = 4*/
        &[0x06, 0x00, 0x00, 0x00],                         /*msg_len = 6*/
        b"node1\0", b"root\0", b"tag\0", b"hello\0",       /*strings at offset 44*/
        &[0x00, 0x00, 0x00, 0x00],                         /*4 padding bytes: sizeof(clog_entry_t) = 48*/
    ]);
    assert_eq!(
        entry.len(),
        48 + 6 + 5 + 4 + 6,
        "length = 48 + Σlens (not 44 + Σlens)"
    );
    assert_eq!(fnv1a64(b"node1\0"), 0xe6f5_e3c2_20c8_fefc);
    assert_eq!(fnv1a64(b"root\0"), 0x4dd1_e246_1dbc_53bf);
    let want = ClogEntry {
        prev: 0,
        next: 0,
        meta: ClogMeta {
            uid: 7,
            time: TIME,
            node_digest: 0xe6f5_e3c2_20c8_fefc,
            ident_digest: 0x4dd1_e246_1dbc_53bf,
            pid: 1234,
            priority: 6,
        },
        node: b"node1",
        ident: b"root",
        tag: b"tag",
        msg: b"hello",
    };
    assert_eq!(ClogEntry::decode(entry).unwrap(), want);
    assert_eq!(
        want.expected_digests(),
        (want.meta.node_digest, want.meta.ident_digest)
    );
    assert_eq!(want.encoded_len(), entry.len());
    assert_eq!(
        want.encode().unwrap(),
        entry,
        "the padding is sent as zeros"
    );
    let msg = kv_normal(3, entry);
    assert_eq!(
        msg.len(),
        24 + 48 + 21,
        "spec §7: kvstore LOG = 24 + 48 + Σlens"
    );
    assert_eq!(encode_normal(0, 3, TIME, 2, entry), msg);

    // quirk: the C sender leaves the padding uninitialized; receivers must accept any bytes
    let mut garbage = entry.to_vec();
    let n = garbage.len();
    garbage[n - 4..].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(ClogEntry::decode(&garbage).unwrap(), want);
    // without the padding (44 + Σlens) the length check fails; so does a missing NUL
    assert!(ClogEntry::decode(&entry[..n - 4]).is_err(), "no padding");
    assert!(
        ClogEntry::decode(&cat(&[entry, &[0]])).is_err(),
        "one byte too many"
    );
    let mut no_nul = entry.to_vec();
    no_nul[44 + 5] = b'!'; // the NUL of "node1"
    assert!(ClogEntry::decode(&no_nul).is_err());
    assert!(ClogEntry::decode(&entry[..47]).is_err(), "shorter than 48");
}

#[test]
fn kvstore_state_is_the_clog_ring_with_size_and_cpos() {
    // §6.4: u32 size (== length), u32 cpos, then entries at 8-byte-aligned offsets
    let mut ring = vec![0u8; 64];
    ring[..4].copy_from_slice(&[0x40, 0x00, 0x00, 0x00]); /*size = 64*/
    ring[4..8].copy_from_slice(&[0x08, 0x00, 0x00, 0x00]); /*cpos = 8*/
    let s = ClogState::decode(&ring).unwrap();
    assert_eq!((s.size(), s.cpos()), (64, 8));
    assert!(
        ClogState::decode(&ring[..63]).is_err(),
        "size must equal the length"
    );
    assert!(
        ClogState::decode(&[0x08, 0, 0, 0, 0, 0, 0, 0]).is_err(),
        "must be longer than 8 bytes"
    );
}

// ------------------------------------------------------------------------------------------
// §0 group names: cpg_name.length counts the NUL

#[test]
fn group_names_count_their_nul() {
    let d = GroupName::new("pve_dcdb_v1").unwrap();
    assert_eq!(d.wire_len(), 12);
    assert_eq!(d.wire_bytes(), b"pve_dcdb_v1\0");
    let k = GroupName::new("pve_kvstore_v1").unwrap();
    assert_eq!(k.wire_len(), 15);
    assert_eq!(k.wire_bytes(), b"pve_kvstore_v1\0");
}
