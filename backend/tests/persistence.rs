//! The persistence policy (backend/src/database.rs): acknowledgements go to the crash record,
//! the store gets one transaction per interval, a crash replays the record (a torn tail is
//! ignored, replaying twice equals replaying once), a clean close leaves config.db alone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pmxcfs_backend::{Database, DatabaseOptions, Durability, Op, Stamp};

const S: Stamp = Stamp { writer: 0, mtime: 100 };

struct Dirs {
    _tmp: tempfile::TempDir,
    db: PathBuf,
    run: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    Dirs { db: tmp.path().join("config.db"), run, _tmp: tmp }
}

fn opts(d: &Dirs, w: Duration) -> DatabaseOptions {
    DatabaseOptions { sync_interval: w, record_dir: Some(d.run.clone()), exclusive_when_alone: None }
}

fn write(db: &Database, path: &str, data: &[u8]) {
    db.apply(&Op::Create { path: path.into() }, S, Durability::Deferred).ok();
    db.apply(&Op::Write { path: path.into(), offset: 0, data: data.to_vec(), truncate: true }, S, Durability::Now).unwrap();
}

fn read(db: &Database, path: &str) -> Option<Vec<u8>> {
    let t = db.tree();
    t.lookup(path).map(|e| e.data().to_vec())
}

fn record_files(run: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(run).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// Rows of `tree` in the file itself, read the way an offline copy would be.
fn rows_on_disk(db: &Path) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("SELECT count(*) FROM tree", [], |r| r.get(0)).unwrap()
}

/// Simulates a daemon crash: everything in RAM is gone, files stay as they are.
fn crash(db: Database) {
    std::mem::forget(db);
}

#[test]
fn acknowledged_changes_wait_in_the_record_not_in_the_store() {
    let d = dirs();
    let db = Database::open(&d.db, opts(&d, Duration::from_secs(3600))).unwrap();
    let base = db.stats();
    for i in 0..50 {
        write(&db, &format!("f{i}"), format!("content {i}").as_bytes());
    }
    let s = db.stats();
    assert_eq!(s.commits - base.commits, 50, "every change acknowledged");
    assert_eq!(s.store_transactions, base.store_transactions, "none reached SQLite yet");
    assert!(s.record_bytes > 0 && s.dirty);
    db.make_durable().unwrap();
    let s = db.stats();
    assert_eq!(s.store_transactions, base.store_transactions + 1, "one coalesced store transaction");
    assert_eq!(s.wal_syncs, base.wal_syncs + 1);
    assert!(!s.dirty && s.pending_rows == 0);
    assert_eq!(record_files(&d.run).len(), 1, "only the (empty) current generation is left");
    db.make_durable().unwrap();
    assert_eq!(db.stats().wal_syncs, base.wal_syncs + 1, "nothing new: fsync costs nothing");
}

#[test]
fn the_interval_writes_one_transaction_when_w_has_passed() {
    let d = dirs();
    let db = Database::open(&d.db, opts(&d, Duration::from_millis(100))).unwrap();
    let base = db.stats().store_transactions;
    write(&db, "a", b"1");
    write(&db, "b", b"2");
    db.maintenance();
    std::thread::sleep(Duration::from_millis(150));
    db.maintenance();
    let s = db.stats();
    assert_eq!(s.store_transactions, base + 1);
    assert!(!s.dirty);
}

#[test]
fn w_zero_makes_every_acknowledgement_durable() {
    let d = dirs();
    let db = Database::open(&d.db, opts(&d, Duration::ZERO)).unwrap();
    let base = db.stats();
    write(&db, "a", b"1");
    write(&db, "b", b"2");
    let s = db.stats();
    assert_eq!(s.store_transactions - base.store_transactions, 2);
    assert_eq!(s.wal_syncs - base.wal_syncs, 2);
    assert!(!s.dirty);
}

#[test]
fn a_crash_replays_the_record_and_a_torn_tail_is_ignored() {
    let d = dirs();
    let db = Database::open(&d.db, opts(&d, Duration::from_secs(3600))).unwrap();
    db.apply(&Op::Mkdir { path: "dir".into() }, S, Durability::Now).unwrap();
    write(&db, "dir/a", b"acknowledged");
    write(&db, "gone", b"x");
    db.apply(&Op::Delete { path: "gone".into() }, S, Durability::Now).unwrap();
    write(&db, "big", &vec![9u8; 1 << 20]);
    let version = db.stats().version;
    crash(db);
    // the crash also cut a later append short
    let rec = record_files(&d.run).pop().unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&rec).unwrap();
    std::io::Write::write_all(&mut f, &[200, 0, 0, 0, 1, 2, 3, 4, 5, 6]).unwrap();
    drop(f);

    let db = Database::open(&d.db, opts(&d, Duration::from_secs(3600))).unwrap();
    assert_eq!(read(&db, "dir/a").unwrap(), b"acknowledged");
    assert!(read(&db, "gone").is_none());
    assert_eq!(read(&db, "big").unwrap().len(), 1 << 20);
    assert_eq!(db.stats().version, version);
    assert!(!db.stats().dirty, "the replayed changes are in the store");
    assert_eq!(db.integrity_check().unwrap(), "ok");
}

#[test]
fn replaying_twice_is_replaying_once() {
    let d = dirs();
    let db = Database::open(&d.db, opts(&d, Duration::from_secs(3600))).unwrap();
    write(&db, "a", b"first");
    db.make_durable().unwrap();
    write(&db, "a", b"second");
    write(&db, "b", b"new");
    db.apply(&Op::Rename { from: "b".into(), to: "c".into() }, S, Durability::Now).unwrap();
    crash(db);
    let saved: Vec<(PathBuf, Vec<u8>)> = record_files(&d.run).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();

    let db = Database::open(&d.db, opts(&d, Duration::from_secs(3600))).unwrap();
    let once = (read(&db, "a"), read(&db, "b"), read(&db, "c"), db.stats().version, db.tree().encode_index());
    crash(db);
    // a second crash came after the replay's store transaction, before the record was removed
    for p in record_files(&d.run) {
        std::fs::remove_file(p).unwrap();
    }
    for (p, bytes) in &saved {
        std::fs::write(p, bytes).unwrap();
    }
    let db = Database::open(&d.db, opts(&d, Duration::from_secs(3600))).unwrap();
    let twice = (read(&db, "a"), read(&db, "b"), read(&db, "c"), db.stats().version, db.tree().encode_index());
    assert_eq!(once, twice);
    assert_eq!(once.0.as_deref(), Some(&b"second"[..]));
    assert_eq!((once.1, once.2.as_deref()), (None, Some(&b"new"[..])));
}

#[test]
fn a_record_of_another_database_is_set_aside_not_replayed() {
    let d = dirs();
    let db = Database::open(&d.db, opts(&d, Duration::from_secs(3600))).unwrap();
    write(&db, "a", b"1");
    crash(db);
    // the administrator restores another database before the restart
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", d.db.display()));
    }
    let db = Database::open(&d.db, opts(&d, Duration::from_secs(3600))).unwrap();
    assert!(read(&db, "a").is_none());
    assert!(record_files(&d.run).iter().any(|p| p.to_string_lossy().ends_with(".stale")));
}

#[test]
fn clean_close_leaves_config_db_alone_complete() {
    let d = dirs();
    let db = Database::open(&d.db, opts(&d, Duration::from_secs(3600))).unwrap();
    for i in 0..20 {
        write(&db, &format!("f{i}"), b"data");
    }
    db.close().unwrap();
    assert!(db.apply(&Op::Mkdir { path: "late".into() }, S, Durability::Now).is_err(), "closed");
    drop(db);
    assert!(!Path::new(&format!("{}-wal", d.db.display())).exists());
    assert!(!Path::new(&format!("{}-shm", d.db.display())).exists());
    assert!(record_files(&d.run).is_empty(), "the record is removed");
    // the usual backup: copy config.db alone
    let copy = d.run.join("backup.db");
    std::fs::copy(&d.db, &copy).unwrap();
    assert_eq!(rows_on_disk(&copy), 21, "20 files and the __version__ row");
}

#[test]
fn starting_keeps_the_page_size_of_the_database() {
    let d = dirs();
    {
        let c = rusqlite::Connection::open(&d.db).unwrap();
        c.execute_batch("PRAGMA page_size=1024; PRAGMA journal_mode=WAL;").unwrap();
        c.execute_batch(pmxcfs_backend::store::SCHEMA).unwrap();
    }
    let db = Database::open(&d.db, opts(&d, Duration::ZERO)).unwrap();
    write(&db, "a", b"1");
    db.close().unwrap();
    let c = rusqlite::Connection::open(&d.db).unwrap();
    let ps: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    assert_eq!(ps, 1024, "an existing database is never VACUUMed into another page size");

    let fresh = dirs();
    let db = Database::open(&fresh.db, opts(&fresh, Duration::ZERO)).unwrap();
    db.close().unwrap();
    let c = rusqlite::Connection::open(&fresh.db).unwrap();
    let ps: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    assert_eq!(ps, 4096, "a new database gets the original's page size");
}

/// A tmpfs of `kib` KiB mounted on a temporary directory, unmounted on drop.
struct SmallTmpfs {
    dir: tempfile::TempDir,
}

impl SmallTmpfs {
    fn mount(kib: u32) -> SmallTmpfs {
        let dir = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"]).arg(dir.path()).status().unwrap();
        assert!(st.success(), "mount tmpfs (the tests run as root)");
        SmallTmpfs { dir }
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_record_reaches_the_writer_as_enospc_and_nothing_is_lost() {
    let small = SmallTmpfs::mount(64);
    let tmp = tempfile::tempdir().unwrap();
    let db_path = tmp.path().join("config.db");
    let db = Database::open(&db_path, DatabaseOptions { sync_interval: Duration::from_secs(3600), record_dir: Some(small.dir.path().to_path_buf()), exclusive_when_alone: None }).unwrap();
    write(&db, "small", b"fits");
    db.apply(&Op::Create { path: "big".into() }, S, Durability::Deferred).unwrap();
    let e = db.apply(&Op::Write { path: "big".into(), offset: 0, data: vec![1; 512 * 1024], truncate: true }, S, Durability::Now).unwrap_err();
    assert_eq!(e.errno(), libc::ENOSPC, "{e}");
    // the refused change stays in RAM, dirty, for the next acknowledgement; what was
    // acknowledged before is written as usual
    db.make_durable().unwrap();
    assert_eq!(record_files(small.dir.path()).len(), 1);
    drop(db);
    let db = Database::open(&db_path, DatabaseOptions::default()).unwrap();
    assert_eq!(read(&db, "small").unwrap(), b"fits", "acknowledged before the failure: kept");
}
