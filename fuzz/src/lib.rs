//! Bodies of the cargo-fuzz targets of pmxcfs-ng (one `pub fn` per target).
//!
//! Each function feeds arbitrary bytes to the real public decoders and checks the
//! properties that must hold for *every* input: no panic, no allocation sized by an
//! unchecked length field (libFuzzer's `-malloc_limit_mb` catches those), and exact
//! re-encoding where the wire format is canonical.
//!
//! The same file is compiled into the root package's `tests/fuzz_corpora.rs` (through
//! `#[path]`), which replays every committed corpus file under plain `cargo test`.
//! It must therefore only use crates that the root package also has: pmxcfs-dfsm,
//! pmxcfs-status, pmxcfs-ipc, pmxcfs-backend and tempfile. See docs/fuzzing.md.

use std::path::{Path, PathBuf};

use pmxcfs_dfsm::wire::dcdb::DcdbMessage;
use pmxcfs_dfsm::wire::frame::{self, split_state};
use pmxcfs_dfsm::wire::index::MemdbIndex;
use pmxcfs_dfsm::wire::kvstore::{ClogEntry, ClogState, KvUpdate};
use pmxcfs_dfsm::wire::update::InodeRecord;
use pmxcfs_dfsm::wire::{BaseHeader, Frame, MessageType};

// ------------------------------------------------------------------------------------
// DFSM frames (both CPG groups)
// ------------------------------------------------------------------------------------

/// `dfsm_frame`: a whole CPG message as delivered.
pub fn dfsm_frame(data: &[u8]) {
    let _ = BaseHeader::decode(data);
    if let Ok((_h, _epoch, rest)) = split_state(data) {
        assert!(rest.len() + frame::STATE_HEADER_LEN == data.len());
    }
    let Ok(f) = Frame::decode(data) else { return };
    // The frame layout is canonical: re-encoding gives back the input.
    assert_eq!(f.encode(), data, "Frame::encode(Frame::decode(x)) != x");
    let payload = f.payload();
    match f {
        Frame::Normal { header, .. } => {
            // Normal payloads of either group, by subtype.
            dcdb_message(header.subtype, payload);
            let _ = KvUpdate::decode(payload);
            let _ = ClogEntry::decode(payload);
            let _ = pmxcfs_status::kvstore::decode_update(payload);
            let _ = pmxcfs_status::clusterlog::LogEntry::decode(payload);
        }
        Frame::State { kind, .. } => match kind {
            MessageType::State => {
                memdb_index(payload);
                let _ = ClogState::decode(payload);
            }
            MessageType::Update => inode_record(payload),
            MessageType::VerifyRequest => {
                if let Ok(id) = frame::decode_verify_request(payload) {
                    assert_eq!(frame::encode_verify_request(id), payload);
                }
            }
            MessageType::Verify => {
                if let Ok((id, csum)) = frame::decode_verify(payload) {
                    assert_eq!(frame::encode_verify(id, &csum), payload);
                }
            }
            _ => {}
        },
    }
}

// ------------------------------------------------------------------------------------
// dcdb payloads
// ------------------------------------------------------------------------------------

fn dcdb_message(subtype: u16, payload: &[u8]) {
    if let Ok(m) = DcdbMessage::decode(subtype, payload) {
        assert_eq!(m.subtype() as u16, subtype);
        // path/to are NUL-stripped on decode and NUL-appended on encode: canonical.
        let enc = m.encode().expect("a decoded dcdb message must re-encode");
        assert_eq!(enc, payload, "dcdb re-encode differs");
    }
}

fn inode_record(payload: &[u8]) {
    if let Ok(r) = InodeRecord::decode(payload) {
        let enc = r.encode().expect("a decoded inode record must re-encode");
        assert_eq!(enc, payload, "inode record re-encode differs");
        let _ = r.index_digest();
        let _ = r.entry_csum();
    }
}

/// `dcdb_payload`: first byte = dcdb subtype (taken modulo 10, so 0..=9 including the
/// invalid 0 and 9), the rest = the normal-message payload; the rest is also tried as a
/// DFSM UPDATE inode record.
pub fn dcdb_payload(data: &[u8]) {
    let Some((&sel, payload)) = data.split_first() else {
        return;
    };
    dcdb_message(u16::from(sel % 10), payload);
    inode_record(payload);
}

// ------------------------------------------------------------------------------------
// memdb index (dcdb STATE payload)
// ------------------------------------------------------------------------------------

/// `memdb_index`: a dcdb STATE payload.
pub fn memdb_index(data: &[u8]) {
    let Ok(idx) = MemdbIndex::decode(data) else {
        return;
    };
    let enc = idx.encode().expect("a decoded index must re-encode");
    assert_eq!(enc, data, "memdb index re-encode differs");
    let sorted = idx.is_sorted();
    if sorted {
        for e in &idx.entries {
            assert_eq!(idx.digest_of(e.inode), Some(&e.digest));
        }
    } else if let Some(e) = idx.entries.first() {
        let _ = idx.digest_of(e.inode);
    }
}

// ------------------------------------------------------------------------------------
// cluster log ring / state
// ------------------------------------------------------------------------------------

/// `clog_state`: a kvstore STATE payload (the cluster-log ring) or a LOG entry.
pub fn clog_state(data: &[u8]) {
    use pmxcfs_status::clusterlog::{ClogRing, ClusterLog, LogEntry};

    if let Ok(e) = LogEntry::decode(data) {
        let enc = e.encode();
        let again = LogEntry::decode(&enc).expect("an encoded entry must decode");
        assert_eq!(again.encode(), enc);
    }
    if let Ok(e) = ClogEntry::decode(data) {
        let _ = e.expected_digests();
        let _ = e.encode();
    }
    let _ = ClogState::decode(data);

    if let Ok(ring) = ClogRing::from_state(data) {
        let entries = ring.entries();
        let _ = ring.dump_json(None, 50);
        let _ = ring.dump_json(Some(b"root@pam"), u32::MAX);
        if let Some(e) = entries.first() {
            let _ = ring.dump_json(Some(e.ident()), 1);
        }
        if let Some(s) = ring.sorted() {
            // a sorted ring is a valid state again
            ClogRing::from_state(s.as_bytes()).expect("sorted ring must be a valid state");
        }
    }

    // Merge with the input as one remote member's state (local ring non-empty).
    let mut log = ClusterLog::new();
    let _ = log.add(
        b"node1",
        b"root@pam",
        b"fuzz",
        1,
        1_700_000_000,
        6,
        b"local entry",
    );
    let _ = log.merge_states(&[None, Some(data)], 0);
    let _ = log.merge_states(&[Some(data), None, Some(data)], 1);
    let _ = log.dump_json(None, 100);
    let state = log.get_state();
    ClogRing::from_state(&state).expect("merged state must be a valid state");
}

// ------------------------------------------------------------------------------------
// kvstore UPDATE
// ------------------------------------------------------------------------------------

/// `kvstore_update`: a kvstore UPDATE payload (key[256] + value), decoded by both the
/// wire layer and the status layer and applied to a status store.
pub fn kvstore_update(data: &[u8]) {
    use pmxcfs_status::kvstore::{decode_update, encode_update};

    let wire = KvUpdate::decode(data);
    let status = decode_update(data);
    if let Ok(u) = wire {
        let enc = u.encode().expect("decoded key must re-encode");
        assert_eq!(KvUpdate::decode(&enc).unwrap(), u);
    }
    if let Ok((key, value)) = status {
        let enc = encode_update(key, value).expect("decoded key must re-encode");
        assert_eq!(decode_update(&enc).unwrap(), (key, value));
        let mut st = pmxcfs_status::StatusStore::new("node1", Path::new("/nonexistent/rrd"));
        let _ = st.set_remote("node2", key, value, 1_700_000_000);
        let _ = st.set_local(key, value, 1_700_000_000);
        let _ = st.get("node2", key);
        let _ = st.get("node1", key);
    }
}

// ------------------------------------------------------------------------------------
// IPC requests
// ------------------------------------------------------------------------------------

/// `ipc_request`: one IPC request as received on the socket (header included).
pub fn ipc_request(data: &[u8]) {
    use pmxcfs_ipc::protocol::{self, Request};

    let vm_exists = |vmid: u32| !vmid.is_multiple_of(3);
    let req = protocol::parse_request(data, &vm_exists);
    let Ok(req) = req else { return };
    assert!(protocol::is_known_id(req.id()));
    let _ = protocol::needs_write_access(req.id());
    match req {
        Request::GetConfig { path } => {
            let _ = protocol::path_is_private(path);
        }
        Request::VerifyToken { token } => {
            let _ = protocol::token_cfg_contains(b"user@pam!tok\nroot@pam!x\n", token);
        }
        Request::GetGuestConfigProperty { vmid, property } => {
            let cfg = b"name: vm\nmemory: 512\n[snap]\nmemory: 1\n";
            let _ = pmxcfs_ipc::guest_props::single_guest_json(vmid, Some(cfg), &[property]);
        }
        Request::GetGuestConfigProperties {
            vmid,
            ref properties,
        } => {
            let cfg = b"name: vm\nmemory: 512\nlock: backup\n";
            let _ = pmxcfs_ipc::guest_props::single_guest_json(vmid, Some(cfg), properties);
            let _ = pmxcfs_ipc::guest_props::find_property_values(cfg, properties);
        }
        _ => {}
    }
    let _ = protocol::encode_response(req.id(), Ok(b"x"));
}

// ------------------------------------------------------------------------------------
// config.db loading
// ------------------------------------------------------------------------------------

/// The config.db written by the original C pmxcfs (tests' golden data), base of the
/// mutation mode of [`configdb_load`]. Compiled in so the replay works without
/// /work/shared (copy of /work/shared/golden/c-config.db).
pub static GOLDEN_CONFIG_DB: &[u8] = include_bytes!("../golden/c-config.db");

fn scratch_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Build the database file image from a fuzz input.
///
/// * `data[0]` even: the rest of the input *is* the database file.
/// * `data[0]` odd: the golden config.db with byte patches; the rest of the input is a list
///   of 5-byte records `offset: u32 LE, value: u8` (offset taken modulo the file length,
///   the byte is XORed with `value`, or set to it when `data[0] & 2`); when `data[0] & 4`
///   the file is additionally truncated at the offset of the first record.
pub fn configdb_image(data: &[u8]) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    if mode & 1 == 0 {
        return Some(rest.to_vec());
    }
    let mut img = GOLDEN_CONFIG_DB.to_vec();
    let len = img.len();
    let mut first = None;
    for rec in rest.chunks_exact(5) {
        let off = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]) as usize % len;
        first.get_or_insert(off);
        if mode & 2 != 0 {
            img[off] = rec[4];
        } else {
            img[off] ^= rec[4];
        }
    }
    if mode & 4 != 0 {
        if let Some(off) = first {
            img.truncate(off);
        }
    }
    Some(img)
}

/// `configdb_load`: a (mutated) config.db file opened read-only and read-write.
pub fn configdb_load(data: &[u8]) {
    let Some(img) = configdb_image(data) else {
        return;
    };
    let dir = scratch_dir();
    let path = dir.join("config.db");
    remove_db(&path);
    std::fs::write(&path, &img).expect("write scratch db");

    // Read-only path (offline tools).
    if let Ok(store) = pmxcfs_backend::Store::open_readonly(&path) {
        if let Ok(rows) = store.load_rows() {
            if let Ok(tree) = pmxcfs_backend::Tree::from_entries(rows.entries) {
                let _ = tree.encode_index();
                let _ = tree.checksum();
                let _ = tree.sorted_entries().len();
            }
        }
    }

    // Read-write path (daemon start) on a fresh copy.
    let copy = dir.join("copy.db");
    remove_db(&copy);
    std::fs::write(&copy, &img).expect("write scratch db copy");
    if let Ok(db) = pmxcfs_backend::Database::open(&copy, Default::default()) {
        {
            let t = db.tree();
            let _ = t.encode_index();
            let _ = t.lookup("nodes/pve1/qemu-server/100.conf");
        }
        let _ = db.close();
    }
    remove_db(&path);
    remove_db(&copy);
}
