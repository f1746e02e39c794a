//! The in-RAM tree behaves like the original's memdb (spec pmxcfs-local §2.4, §3).

use pmxcfs_backend::index::hex;
use pmxcfs_backend::{FsError, Stamp, Tree};
use sha2::{Digest, Sha256};

const S: Stamp = Stamp { writer: 0, mtime: 1234 };

fn fresh() -> Tree {
    let mut t = Tree::new();
    t.init_version(1);
    t
}

#[test]
fn index_of_100_files_matches_the_originals_test_vector() {
    let mut t = fresh();
    let zeros = vec![0u8; 32 * 1024];
    for i in 0..100 {
        let p = format!("testfile{i}");
        t.create(&p, S).unwrap();
        t.write(&p, 0, &zeros, false, S).unwrap();
    }
    assert_eq!(t.version(), 201);
    let idx = t.encode_index();
    assert_eq!(idx.len(), 101 * 40 + 32);
    assert_eq!(u64::from_le_bytes(idx[8..16].try_into().unwrap()), 200, "last_inode");
    assert_eq!(hex(&Sha256::digest(&idx)), "913fd95015af9d93f10dd51ba2a7bb11351bcfe040be21e95fcba834adc3ec10");
}

#[test]
fn new_inode_number_is_the_new_version() {
    let mut t = fresh();
    let d = t.mkdir("dir", S).unwrap();
    assert_eq!(d, 2);
    let f = t.create("dir/f", S).unwrap();
    assert_eq!(f, 3);
    assert_eq!(t.version(), 3);
    t.rename("dir/f", "g", S).unwrap();
    assert_eq!(t.lookup("g").unwrap().inode, 3, "rename keeps the inode");
    assert_eq!(t.lookup("g").unwrap().version, 4);
}

#[test]
fn write_and_truncate_arithmetic() {
    let mut t = fresh();
    t.create("f", S).unwrap();
    t.write("f", 0, b"abc", false, S).unwrap();
    t.write("f", 6, b"", true, S).unwrap();
    assert_eq!(t.read("f").unwrap()[..], b"abc\0\0\0"[..]);
    t.write("f", 0, b"0123456789", true, S).unwrap();
    t.write("f", 3, b"X", false, S).unwrap();
    t.write("f", 6, b"X", false, S).unwrap();
    assert_eq!(t.read("f").unwrap()[..], b"012X45X789"[..]);
    t.write("f", 0, b"ab", true, S).unwrap();
    assert_eq!(t.read("f").unwrap()[..], b"ab"[..]);
    // extending an empty file zero-fills (the original keeps a NULL buffer)
    t.create("e", S).unwrap();
    t.write("e", 10, b"", true, S).unwrap();
    assert_eq!(t.read("e").unwrap()[..], [0u8; 10]);
}

#[test]
fn errno_rules_follow_the_original_order() {
    let mut t = fresh();
    assert_eq!(t.write("f", 1024 * 1024, b"x", false, S), Err(FsError::FileTooBig));
    t.create("f", S).unwrap();
    assert_eq!(t.write("f", 0, &vec![1u8; 1024 * 1024], false, S), Ok(1024 * 1024), "exactly 1 MiB is allowed");
    assert_eq!(t.mkdir("nope/x", S), Err(FsError::NotFound));
    assert_eq!(t.mkdir("f/x", S), Err(FsError::NotADirectory));
    assert_eq!(t.mkdir("..", S), Err(FsError::AccessDenied));
    assert_eq!(t.create(".", S), Err(FsError::AccessDenied));
    assert_eq!(t.mkdir("f", S), Err(FsError::Exists));
    assert_eq!(t.create("f", S), Err(FsError::Exists));
    assert_eq!(t.write("missing", 0, b"x", false, S), Err(FsError::NotFound));
    assert_eq!(t.delete("", S), Err(FsError::AccessDenied));
    t.mkdir("d", S).unwrap();
    t.create("d/x", S).unwrap();
    assert_eq!(t.delete("d", S), Err(FsError::NotEmpty));
    assert_eq!(t.rename("d", "e", S), Err(FsError::NotEmpty), "only empty directories move");
    let v = t.version();
    assert!(t.mkdir("d", S).is_err());
    assert_eq!(t.version(), v, "failed operations do not bump the version");
}

#[test]
fn rename_replaces_target_even_of_other_type() {
    let mut t = fresh();
    t.mkdir("emptydir", S).unwrap();
    t.create("f", S).unwrap();
    t.rename("f", "emptydir", S).unwrap();
    assert!(!t.lookup("emptydir").unwrap().is_dir());
    assert!(t.lookup("f").is_none());
}

#[test]
fn vmids_are_unique_across_nodes() {
    let mut t = fresh();
    for d in ["nodes", "nodes/a", "nodes/a/qemu-server", "nodes/b", "nodes/b/lxc", "nodes/b/qemu-server"] {
        t.mkdir(d, S).unwrap();
    }
    t.create("nodes/a/qemu-server/100.conf", S).unwrap();
    assert_eq!(t.create("nodes/b/lxc/100.conf", S), Err(FsError::Exists));
    assert_eq!(t.create("nodes/b/qemu-server/100.conf", S), Err(FsError::Exists));
    // migrating a guest between nodes (same VMID) is a rename
    t.rename("nodes/a/qemu-server/100.conf", "nodes/b/qemu-server/100.conf", S).unwrap();
    assert_eq!(t.vmlist.entries[&100].node, "b");
    t.delete("nodes/b/qemu-server/100.conf", S).unwrap();
    assert!(t.vmlist.entries.is_empty());
    // directories named like configs are not guests
    t.mkdir("nodes/a/qemu-server/300.conf", S).unwrap();
    assert!(t.vmlist.entries.is_empty());
}

#[test]
fn lock_directories_follow_the_mtime_rules_and_expire_after_120s() {
    let mut t = fresh();
    for d in ["priv", "priv/lock", "priv/lock/job"] {
        t.mkdir(d, Stamp { writer: 0, mtime: 1000 }).unwrap();
    }
    assert_eq!(t.set_mtime("priv/lock/job", Stamp { writer: 0, mtime: 999 }), Err(FsError::AccessDenied));
    assert_eq!(t.set_mtime("priv/lock/job", Stamp { writer: 7, mtime: 2000 }), Err(FsError::AccessDenied));
    t.set_mtime("priv/lock/job", Stamp { writer: 0, mtime: 2000 }).unwrap();
    let csum = t.lock_csum("priv/lock/job").unwrap();
    let now = pmxcfs_backend::now_secs();
    assert!(!t.lock_expired("priv/lock/job", &csum, now), "refresh restarts the timer");
    assert!(!t.lock_expired("priv/lock/job", &csum, now + 120));
    assert!(t.lock_expired("priv/lock/job", &csum, now + 121));
    assert!(!t.lock_expired("priv/lock/job", &[1u8; 32], now + 500), "a changed lock restarts the timer");
    assert!(t.rename("priv/lock/job", "priv/lock/other", S).is_err(), "locks cannot be renamed");
}

#[test]
fn observed_counters_count_exact_paths() {
    let mut t = fresh();
    t.create("storage.cfg", S).unwrap();
    t.write("storage.cfg", 0, b"x", true, S).unwrap();
    t.create("storage.cfg.tmp", S).unwrap();
    t.rename("storage.cfg.tmp", "storage.cfg", S).unwrap();
    let c: Vec<_> = t.observed.iter().filter(|(p, _)| *p == "storage.cfg").collect();
    assert_eq!(c[0].1, 3, "create, write, rename onto it");
}
