//! The wire codecs against the golden 3-node traces of the original: decode, re-encode,
//! recompute digests.
//!
//! Every send/deliver record of the golden 3-node traces decodes with the
//! wire codecs and re-encodes to the same bytes; index digests recomputed
//! from UPDATE records match the leader's STATE index.

mod common;

use std::collections::HashMap;

use common::{load_all, Record};
use pmxcfs_dfsm::wire::dcdb::{DcdbMessage, DCDB_GROUP_NAME, DCDB_PROTOCOL_VERSION};
use pmxcfs_dfsm::wire::frame::{
    decode_verify, decode_verify_request, encode_normal, encode_state, encode_verify,
    encode_verify_request,
};
use pmxcfs_dfsm::wire::index::MemdbIndex;
use pmxcfs_dfsm::wire::kvstore::{
    ClogEntry, ClogState, KvUpdate, CLOG_DEFAULT_SIZE, KVSTORE_GROUP_NAME, KVSTORE_MESSAGE_LOG,
    KVSTORE_MESSAGE_UPDATE, KVSTORE_PROTOCOL_VERSION, KV_KEY_FIELD_LEN,
};
use pmxcfs_dfsm::wire::update::{InodeRecord, DT_DIR};
use pmxcfs_dfsm::wire::{Epoch, Frame, MessageType};

fn messages() -> Vec<Record> {
    let recs: Vec<Record> = load_all()
        .into_iter()
        .filter(|r| r.bytes.is_some())
        .collect();
    assert!(recs.len() > 400, "golden traces look incomplete");
    recs
}

fn at(r: &Record) -> String {
    format!("{}:{}", r.file, r.line)
}

/// Decode the record fully and rebuild it from typed values; returns the
/// rebuilt bytes (kvstore UPDATE key tails are zero in the rebuild).
fn rebuild(r: &Record) -> Vec<u8> {
    let bytes = r.bytes.as_deref().unwrap();
    let frame = Frame::decode(bytes).unwrap_or_else(|e| panic!("{}: {e}", at(r)));
    assert_eq!(frame.encode(), bytes, "{}: frame round trip", at(r));
    let h = *frame.header();
    assert_eq!(h.reserved, 0, "{}", at(r));
    let dcdb = r.group == DCDB_GROUP_NAME;
    let pv = if dcdb {
        DCDB_PROTOCOL_VERSION
    } else {
        assert_eq!(r.group, KVSTORE_GROUP_NAME);
        KVSTORE_PROTOCOL_VERSION
    };
    assert_eq!(h.protocol_version, pv, "{}", at(r));
    match frame {
        Frame::Normal { count, payload, .. } => {
            let p = if dcdb {
                let m = DcdbMessage::decode(h.subtype, payload)
                    .unwrap_or_else(|e| panic!("{}: {e}", at(r)));
                assert_eq!(m.subtype() as u16, h.subtype);
                m.encode().unwrap()
            } else if h.subtype == KVSTORE_MESSAGE_UPDATE {
                let u = KvUpdate::decode(payload).unwrap_or_else(|e| panic!("{}: {e}", at(r)));
                u.encode().unwrap()
            } else {
                assert_eq!(h.subtype, KVSTORE_MESSAGE_LOG, "{}", at(r));
                let e = ClogEntry::decode(payload).unwrap_or_else(|e| panic!("{}: {e}", at(r)));
                assert_eq!(
                    e.expected_digests(),
                    (e.meta.node_digest, e.meta.ident_digest),
                    "{}",
                    at(r)
                );
                assert_eq!((e.prev, e.next), (0, 0));
                e.encode().unwrap()
            };
            encode_normal(pv, h.subtype, h.time, count, &p)
        }
        Frame::State {
            kind,
            epoch,
            payload,
            ..
        } => {
            assert_eq!(h.subtype, 0, "{}", at(r));
            let p = match kind {
                MessageType::SyncStart | MessageType::UpdateComplete => {
                    assert!(payload.is_empty(), "{}", at(r));
                    Vec::new()
                }
                MessageType::State if dcdb => {
                    let idx =
                        MemdbIndex::decode(payload).unwrap_or_else(|e| panic!("{}: {e}", at(r)));
                    assert!(idx.is_sorted(), "{}", at(r));
                    assert_eq!(idx.entries[0].inode, 0, "{}", at(r));
                    assert_eq!(
                        idx.last_inode,
                        idx.entries.iter().map(|e| e.inode).max().unwrap()
                    );
                    idx.encode().unwrap()
                }
                MessageType::State => {
                    let s = ClogState::decode(payload).unwrap_or_else(|e| panic!("{}: {e}", at(r)));
                    assert_eq!(s.size() as usize, CLOG_DEFAULT_SIZE);
                    s.bytes.to_vec()
                }
                MessageType::Update => {
                    assert!(dcdb, "{}: UPDATE only in dcdb", at(r));
                    InodeRecord::decode(payload)
                        .unwrap_or_else(|e| panic!("{}: {e}", at(r)))
                        .encode()
                        .unwrap()
                }
                MessageType::VerifyRequest => {
                    encode_verify_request(decode_verify_request(payload).unwrap())
                }
                MessageType::Verify => {
                    let (id, c) = decode_verify(payload).unwrap();
                    encode_verify(id, &c)
                }
                MessageType::Normal => unreachable!("normal is not a state kind"),
            };
            encode_state(pv, kind, h.time, epoch, &p)
        }
    }
}

#[test]
fn every_golden_message_round_trips_byte_exact() {
    let mut n = 0;
    let mut kv_tails = 0;
    for r in messages() {
        let bytes = r.bytes.as_deref().unwrap();
        let rebuilt = rebuild(&r);
        assert_eq!(rebuilt.len(), bytes.len(), "{}", at(&r));
        let h = Frame::decode(bytes).unwrap();
        let is_kv_update = r.group == KVSTORE_GROUP_NAME
            && matches!(h, Frame::Normal { header, .. } if header.subtype == KVSTORE_MESSAGE_UPDATE);
        if is_kv_update {
            // The original leaves stack garbage after the key's NUL; we write zeros.
            let key_end = 24 + KvUpdate::decode(&bytes[24..]).unwrap().key.len() + 1;
            let tail_end = 24 + KV_KEY_FIELD_LEN;
            assert_eq!(rebuilt[..key_end], bytes[..key_end], "{}", at(&r));
            assert_eq!(rebuilt[tail_end..], bytes[tail_end..], "{}", at(&r));
            assert!(rebuilt[key_end..tail_end].iter().all(|&b| b == 0));
            if bytes[key_end..tail_end].iter().any(|&b| b != 0) {
                kv_tails += 1;
            }
        } else {
            assert_eq!(rebuilt, bytes, "{}: typed re-encode", at(&r));
        }
        n += 1;
    }
    assert!(n > 400);
    assert!(kv_tails > 0, "expected garbage key tails in the captures");
}

#[test]
fn update_record_digests_match_leader_state_index() {
    let recs = messages();
    // (file, sender, epoch) -> index sent by that sender in that sync round
    let mut states: HashMap<(String, u32, u32, Epoch), MemdbIndex> = HashMap::new();
    let mut checked = 0;
    for r in recs.iter().filter(|r| r.group == DCDB_GROUP_NAME) {
        let Ok(Frame::State {
            kind,
            epoch,
            payload,
            ..
        }) = Frame::decode(r.bytes.as_deref().unwrap())
        else {
            continue;
        };
        let key = (r.file.clone(), r.nodeid, r.pid, epoch);
        match kind {
            MessageType::State => {
                states.insert(key, MemdbIndex::decode(payload).unwrap());
            }
            MessageType::Update => {
                let rec = InodeRecord::decode(payload).unwrap();
                let idx = states
                    .get(&key)
                    .unwrap_or_else(|| panic!("{}: UPDATE before leader STATE", at(r)));
                assert_eq!(
                    idx.digest_of(rec.inode),
                    Some(&rec.index_digest()),
                    "{}: digest of inode {}",
                    at(r),
                    rec.inode
                );
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked >= 78, "only {checked} UPDATE records checked");
}

#[test]
fn unlock_csum_is_single_entry_checksum_of_lock_dir() {
    // README: lock dir inode 49, version 50, parent 48, writer 1, mtime of
    // the refresh, name golden-lock.
    let lock = InodeRecord {
        parent: 48,
        inode: 49,
        version: 50,
        writer: 1,
        mtime: 1795350151,
        entry_type: DT_DIR,
        name: b"golden-lock",
        data: &[],
    };
    let mut seen = 0;
    for r in messages().iter().filter(|r| r.group == DCDB_GROUP_NAME) {
        if let Ok(Frame::Normal {
            header, payload, ..
        }) = Frame::decode(r.bytes.as_deref().unwrap())
        {
            if let Ok(DcdbMessage::Unlock(_, u)) = DcdbMessage::decode(header.subtype, payload) {
                assert_eq!(u.path, b"priv/lock/golden-lock");
                assert_eq!(u.csum, lock.entry_csum(), "{}", at(r));
                seen += 1;
            }
        }
    }
    assert!(seen >= 2);
}

#[test]
fn normal_counts_run_one_two_three_per_process_and_group() {
    let mut last: HashMap<(String, String, u32), u64> = HashMap::new();
    for r in messages().iter().filter(|r| r.dir == "send") {
        if let Ok(Frame::Normal { count, .. }) = Frame::decode(r.bytes.as_deref().unwrap()) {
            let prev = last
                .insert((r.file.clone(), r.group.clone(), r.pid), count)
                .unwrap_or(0);
            assert_eq!(count, prev + 1, "{}", at(r));
        }
    }
}

#[test]
fn decoders_never_panic_on_truncated_or_mutated_golden_messages() {
    // Cheap fuzz: every prefix of a sample of messages, and byte flips.
    let recs = messages();
    for r in recs.iter().filter(|r| r.len < 2000).step_by(3) {
        let b = r.bytes.as_deref().unwrap();
        for cut in 0..b.len() {
            decode_everything(&b[..cut]);
        }
        let mut m = b.to_vec();
        for i in 0..m.len() {
            m[i] ^= 0xff;
            decode_everything(&m);
            m[i] ^= 0xff;
        }
    }
}

fn decode_everything(b: &[u8]) {
    if let Ok(f) = Frame::decode(b) {
        let p = f.payload();
        let st = f.header().subtype;
        let _ = DcdbMessage::decode(st, p);
        let _ = KvUpdate::decode(p);
        let _ = ClogEntry::decode(p);
        let _ = ClogState::decode(p);
        let _ = MemdbIndex::decode(p);
        let _ = InodeRecord::decode(p);
        let _ = decode_verify(p);
        let _ = decode_verify_request(p);
    }
}
