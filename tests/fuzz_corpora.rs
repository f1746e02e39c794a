//! CI replay of the committed fuzz corpora (fuzz/corpus/<target>/*), see docs/fuzzing.md.
//!
//! Every corpus file is fed to the same target body the cargo-fuzz target runs
//! (fuzz/src/lib.rs, compiled in here); none may panic. This needs neither nightly nor
//! libFuzzer: it is a plain `cargo test --test fuzz_corpora`.

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod fuzz_targets;

use std::path::{Path, PathBuf};

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} missing: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
}

fn replay(target: &str, body: fn(&[u8])) {
    let files = corpus_files(target);
    let mut failed = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        if std::panic::catch_unwind(|| body(&data)).is_err() {
            failed.push(f.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} corpus inputs panicked:\n{}\nreproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {target} <file>",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn corpus_dfsm_frame() {
    replay("dfsm_frame", fuzz_targets::dfsm_frame);
}

#[test]
fn corpus_dcdb_payload() {
    replay("dcdb_payload", fuzz_targets::dcdb_payload);
}

#[test]
fn corpus_memdb_index() {
    replay("memdb_index", fuzz_targets::memdb_index);
}

#[test]
fn corpus_clog_state() {
    replay("clog_state", fuzz_targets::clog_state);
}

#[test]
fn corpus_kvstore_update() {
    replay("kvstore_update", fuzz_targets::kvstore_update);
}

#[test]
fn corpus_ipc_request() {
    replay("ipc_request", fuzz_targets::ipc_request);
}

#[test]
fn corpus_configdb_load() {
    replay("configdb_load", fuzz_targets::configdb_load);
}

/// Length fields claiming up to 4 GiB must be rejected before anything is allocated
/// (the fuzzers check this with -malloc_limit_mb; this pins the obvious cases).
#[test]
fn huge_length_fields_are_rejected() {
    use pmxcfs_dfsm::wire::{dcdb::DcdbMessage, index::MemdbIndex, update::InodeRecord};
    let mut idx = vec![0u8; 32];
    idx[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    idx[28..32].copy_from_slice(&32u32.to_le_bytes());
    assert!(MemdbIndex::decode(&idx).is_err());
    let ff = [0xffu8; 64];
    assert!(DcdbMessage::decode(1, &ff).is_err());
    assert!(InodeRecord::decode(&ff).is_err());
    assert!(pmxcfs_status::clusterlog::ClogRing::from_state(&ff).is_err());
}
