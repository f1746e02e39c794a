//! The point of the project: writes are coalesced per open file; one acknowledgement (the
//! stats' "commits", a crash-record append) per close or rename, never one per write block;
//! SQLite sees one store transaction per sync interval. Clean stop and upgrade keep config.db whole.

mod common;

use std::fs::{File, OpenOptions};
use std::io::Write;

use common::*;

fn write_in_blocks(f: &mut File, total: usize, block: usize) {
    let chunk = vec![b'a'; block];
    let mut left = total;
    while left > 0 {
        let n = left.min(block);
        f.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
}

#[test]
fn dd_bs512_1mib_over_an_existing_file_is_exactly_one_transaction() {
    let d = Daemon::start(&[]);
    std::fs::write(d.p("big.cfg"), b"old").unwrap();
    let base = d.commits();
    let mut f = OpenOptions::new().write(true).truncate(true).open(d.p("big.cfg")).unwrap();
    write_in_blocks(&mut f, 1024 * 1024, 512);
    drop(f);
    assert_eq!(d.commits() - base, 1);
    assert_eq!(std::fs::metadata(d.p("big.cfg")).unwrap().len(), 1024 * 1024);
}

#[test]
fn dd_bs512_1mib_into_a_new_file_is_at_most_two_transactions() {
    let d = Daemon::start(&["-d"]);
    let base = d.commits();
    let mut f = File::create(d.p("new.cfg")).unwrap();
    write_in_blocks(&mut f, 1024 * 1024, 512);
    drop(f);
    let n = d.commits() - base;
    assert!((1..=2).contains(&n), "{n} transactions");
    assert_eq!(n, 1, "create is folded into the first close\n{}", d.log_text().lines().filter(|l| !l.contains("apply write")).collect::<Vec<_>>().join("\n"));
}

#[test]
fn guest_config_write_is_one_transaction_and_rename_is_one_more() {
    let d = Daemon::start(&[]);
    std::fs::create_dir_all(d.p("nodes/testnode/qemu-server")).unwrap();
    let base = d.commits();
    std::fs::write(d.p("nodes/testnode/qemu-server/100.conf.tmp"), vec![b'x'; 500]).unwrap();
    assert_eq!(d.commits() - base, 1);
    std::fs::rename(d.p("nodes/testnode/qemu-server/100.conf.tmp"), d.p("nodes/testnode/qemu-server/100.conf")).unwrap();
    assert_eq!(d.commits() - base, 2);
}

#[test]
fn kill9_loses_no_acknowledged_change() {
    let mut d = Daemon::start(&[]);
    std::fs::create_dir(d.p("dir")).unwrap();
    std::fs::write(d.p("dir/a.tmp"), b"acknowledged").unwrap();
    std::fs::rename(d.p("dir/a.tmp"), d.p("dir/a")).unwrap();
    let mut open_new = File::create(d.p("dir/unclosed")).unwrap();
    open_new.write_all(b"never closed").unwrap();
    let before = d.stats();
    d.kill9();
    drop(open_new);
    d.spawn().unwrap();
    assert_eq!(std::fs::read(d.p("dir/a")).unwrap(), b"acknowledged");
    assert!(!d.p("dir/a.tmp").exists());
    assert_eq!(std::fs::read(d.p("dir/unclosed")).unwrap(), b"never closed", "writes to a file still open survive (crash copy)");
    assert!(d.stats()["version"].as_u64().unwrap() >= before["version"].as_u64().unwrap());
    let conn = rusqlite::Connection::open(d.db_path()).unwrap();
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
}

#[test]
fn a_1mib_write_reaches_the_daemon_in_big_chunks() {
    let d = Daemon::start(&[]);
    let before = d.stats()["fuse_write_requests"].as_u64().unwrap();
    std::fs::write(d.p("big"), vec![3u8; 1024 * 1024]).unwrap();
    let s = d.stats();
    let requests = s["fuse_write_requests"].as_u64().unwrap() - before;
    assert!(requests <= 8, "1 MiB arrived in {requests} write requests");
    assert!(s["fuse_max_write_bytes"].as_u64().unwrap() >= 128 * 1024);
}

#[test]
fn names_the_kernel_refuses_get_the_usual_errors() {
    let d = Daemon::start(&[]);
    let long = "x".repeat(1025);
    assert_eq!(errno(&std::fs::write(d.p(&long), b"").unwrap_err()), libc::ENAMETOOLONG);
    std::fs::write(d.p(&"y".repeat(1024)), b"ok").unwrap();
    assert_eq!(errno(&std::fs::create_dir(d.p(".")).unwrap_err()), libc::EEXIST);
    assert_eq!(errno(&std::fs::write(d.p(".version/x"), b"").unwrap_err()), libc::ENOTDIR);
    assert_eq!(errno(&std::fs::create_dir(d.p("local/x")).unwrap_err()), libc::ENOENT, "the symlink's target does not exist yet");
}

#[test]
fn a_forked_child_closing_an_inherited_descriptor_does_not_add_a_transaction() {
    let d = Daemon::start(&[]);
    std::fs::write(d.p("f.cfg"), b"old").unwrap();
    let base = d.commits();
    let mut f = OpenOptions::new().write(true).truncate(true).open(d.p("f.cfg")).unwrap();
    f.write_all(b"first half, ").unwrap();
    // fork + exec: the child's copy of the descriptor is closed at exec (a FUSE flush)
    assert!(std::process::Command::new("true").status().unwrap().success());
    f.write_all(b"second half").unwrap();
    drop(f);
    assert_eq!(d.commits() - base, 1);
    assert_eq!(std::fs::read(d.p("f.cfg")).unwrap(), b"first half, second half");
}

#[test]
fn closing_in_another_thread_still_commits_before_close_returns() {
    let d = Daemon::start(&[]);
    let base = d.commits();
    let mut f = File::create(d.p("threaded.cfg")).unwrap();
    f.write_all(b"written by thread A").unwrap();
    std::thread::spawn(move || drop(f)).join().unwrap();
    assert_eq!(d.commits() - base, 1);
}

fn sidecars_left(db: &std::path::Path) -> Vec<String> {
    ["-wal", "-shm"].iter().filter(|s| std::path::Path::new(&format!("{}{s}", db.display())).exists()).map(|s| s.to_string()).collect()
}

#[test]
fn after_a_clean_stop_config_db_alone_holds_the_whole_tree() {
    let mut d = Daemon::start(&[]);
    std::fs::create_dir_all(d.p("nodes/testnode/qemu-server")).unwrap();
    for i in 0..30 {
        std::fs::write(d.p(&format!("nodes/testnode/qemu-server/{}.conf", 100 + i)), vec![b'x'; 500]).unwrap();
    }
    let before = snapshot(&d.mnt());
    assert_eq!(d.stop(), 0);
    assert_eq!(sidecars_left(&d.db_path()), Vec::<String>::new(), "checkpointed and closed");
    // the usual backup: stop the service, copy config.db
    let backup = tempfile::tempdir().unwrap();
    let dir = backup.path().join("var/lib/pve-cluster");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(d.db_path(), dir.join("config.db")).unwrap();
    let mut restored = Daemon::start_in_root(backup, &[]);
    assert_eq!(snapshot(&restored.mnt()), before);
    assert_eq!(restored.stop(), 0);
}

#[test]
fn a_database_of_the_previous_release_keeps_its_page_size_its_wal_and_every_file() {
    // 0.1 wrote 1 KiB pages and left a -wal file behind
    let old = tempfile::tempdir().unwrap();
    let db = old.path().join("config.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA page_size=1024; PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;").unwrap();
    conn.execute_batch(pmxcfs_backend::store::SCHEMA).unwrap();
    conn.execute("INSERT INTO tree VALUES (0, 0, 3, 0, 1, 8, '__version__', NULL)", []).unwrap();
    conn.execute("INSERT INTO tree VALUES (2, 0, 2, 0, 1, 8, 'in-the-wal.cfg', x'6f6c640a')", []).unwrap();
    let root = tempfile::Builder::new().prefix("pmxcfs-test.").tempdir().unwrap();
    let dir = root.path().join("var/lib/pve-cluster");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&db, dir.join("config.db")).unwrap();
    std::fs::copy(old.path().join("config.db-wal"), dir.join("config.db-wal")).unwrap();
    // and the -shm a crash of that release leaves (an exclusive store ignores and removes it)
    std::fs::copy(old.path().join("config.db-shm"), dir.join("config.db-shm")).unwrap();
    drop(conn);
    let mut d = Daemon::start_in_root(root, &[]);
    assert_eq!(std::fs::read(d.p("in-the-wal.cfg")).unwrap(), b"old\n");
    std::fs::write(d.p("new.cfg"), b"new\n").unwrap();
    assert_eq!(d.stop(), 0);
    for leftover in ["config.db-wal", "config.db-shm"] {
        assert!(!d.db_path().with_file_name(leftover).exists(), "{leftover} left after a clean stop");
    }
    let conn = rusqlite::Connection::open(d.db_path()).unwrap();
    let ps: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    assert_eq!(ps, 1024, "never VACUUMed as a side effect of starting");
    let names: Vec<String> = conn.prepare("SELECT name FROM tree ORDER BY inode").unwrap().query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(names, ["__version__", "in-the-wal.cfg", "new.cfg"], "the original finds every file in config.db");
}
