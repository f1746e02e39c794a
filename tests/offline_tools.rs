//! Offline tools: `pmxcfs check` reports every rule violation with its row and exits 1;
//! `pmxcfs repair` writes a new database without them that loads and passes `check`;
//! `check`/`dump`/`repair` work on the original's database (golden c-config.db).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use pmxcfs_backend::store::SCHEMA;

/// A row: (inode, parent, version, type, name, data).
type Row<'a> = (i64, i64, i64, i64, &'a str, Option<&'a [u8]>);

const D: i64 = 4;
const F: i64 = 8;

/// A database in the original's schema holding `rows` and, if given, `__version__` = version.
fn make_db(dir: &Path, rows: &[Row<'_>], version: Option<i64>) -> PathBuf {
    let db = dir.join("config.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(SCHEMA).unwrap();
    for (inode, parent, ver, kind, name, data) in rows {
        c.execute("INSERT INTO tree VALUES (?1, ?2, ?3, 0, 1700000000, ?4, ?5, ?6)", rusqlite::params![inode, parent, ver, kind, name, data])
            .unwrap();
    }
    if let Some(v) = version {
        c.execute("INSERT INTO tree VALUES (0, 0, ?1, 0, 1700000000, 8, '__version__', NULL)", [v]).unwrap();
    }
    db
}

fn run(args: &[&str], db: &Path, extra: &[&Path]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).arg("--db").arg(db).args(extra).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
}

fn check(db: &Path) -> (i32, String) {
    let (code, out, _) = run(&["check"], db, &[]);
    (code, out)
}

/// Runs repair into dir/repaired.db; asserts it worked and the result checks healthy.
fn repair(db: &Path) -> (PathBuf, String) {
    let out_db = db.parent().unwrap().join("repaired.db");
    let out = Command::new(BIN).args(["repair", "--db"]).arg(db).arg("--out").arg(&out_db).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "repair failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let (code, report) = check(&out_db);
    assert_eq!(code, 0, "the repaired database must check healthy:\n{report}");
    (out_db, text)
}

fn inodes(db: &Path) -> BTreeSet<i64> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut s = c.prepare("SELECT inode FROM tree").unwrap();
    let v = s.query_map([], |r| r.get::<_, i64>(0)).unwrap().map(|r| r.unwrap()).collect();
    v
}

fn version_row(db: &Path) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("SELECT version FROM tree WHERE inode = 0 AND name = '__version__'", [], |r| r.get(0)).unwrap()
}

/// A small valid tree: nodes/pve1/qemu-server/100.conf and storage.cfg.
fn base<'a>() -> Vec<Row<'a>> {
    vec![
        (1, 0, 1, D, "nodes", None),
        (2, 1, 2, D, "pve1", None),
        (3, 2, 3, D, "qemu-server", None),
        (4, 3, 4, F, "100.conf", Some(b"memory: 512\n")),
        (5, 0, 5, F, "storage.cfg", Some(b"dir: local\n")),
    ]
}

/// One rule: `check` names `expect` (every substring) and fails; repair drops exactly `dropped`.
fn rule(extra: &[Row<'_>], version: Option<i64>, expect: &[&str], dropped: &[i64]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = base();
    rows.extend_from_slice(extra);
    let db = make_db(dir.path(), &rows, version);
    let (code, report) = check(&db);
    assert_eq!(code, 1, "check must fail:\n{report}");
    assert!(report.contains("NOT healthy"), "{report}");
    for e in expect {
        assert!(report.contains(e), "check output lacks {e:?}:\n{report}");
    }
    let (out_db, text) = repair(&db);
    let all: BTreeSet<i64> = rows.iter().map(|r| r.0).collect();
    let want: BTreeSet<i64> = all.difference(&dropped.iter().copied().collect()).copied().chain([0]).collect();
    assert_eq!(inodes(&out_db), want, "repair output:\n{text}");
    for i in dropped {
        assert!(text.contains(&format!("dropped: inode {i} ")) || text.contains(&format!("dropped: inode {i}:")), "repair must list inode {i}:\n{text}");
    }
    text
}

#[test]
fn a_valid_handmade_database_is_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), &base(), Some(5));
    let (code, report) = check(&db);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("integrity_check: ok") && report.contains("entries: 6") && report.contains("guests: 1"), "{report}");
    assert!(!report.contains("problem:"), "{report}");
}

#[test]
fn row_without_a_name() {
    rule(&[(6, 0, 6, F, "", Some(b"x"))], Some(6), &["problem: inode 6: row has no name"], &[6]);
}

#[test]
fn unknown_type() {
    rule(&[(6, 0, 6, 1, "fifo", None)], Some(6), &["problem: inode 6 'fifo': unknown type 1"], &[6]);
}

#[test]
fn data_on_a_directory_drops_it_and_its_subtree() {
    rule(
        &[(6, 0, 6, D, "dir", Some(b"junk")), (7, 6, 7, F, "child", Some(b"c"))],
        Some(7),
        &["problem: inode 6 'dir': directory has data", "problem: inode 7 'child': unreachable, below invalid or dropped inode 6"],
        &[6, 7],
    );
}

#[test]
fn duplicate_names_keep_the_lowest_inode() {
    let text = rule(
        &[(6, 0, 6, F, "storage.cfg", Some(b"second")), (7, 1, 7, D, "pve1", None), (8, 7, 8, F, "under-dup", None)],
        Some(8),
        &[
            "problem: inode 6 'storage.cfg': duplicate name in directory inode 0 (inode 5 is kept)",
            "problem: inode 7 'pve1': duplicate name in directory inode 1 (inode 2 is kept)",
            "problem: inode 8 'under-dup': unreachable, below invalid or dropped inode 7",
        ],
        &[6, 7, 8],
    );
    assert!(text.contains("kept 5 entries, dropped 3"), "{text}");
}

#[test]
fn orphans_are_dropped_with_their_subtrees() {
    rule(
        &[(6, 99, 6, D, "lost", None), (7, 6, 7, D, "lost-child", None), (8, 7, 8, F, "lost-grandchild", Some(b"g")), (9, 5, 9, F, "under-a-file", None)],
        Some(9),
        &[
            "problem: inode 6 'lost': orphan, parent inode 99 does not exist",
            "problem: inode 7 'lost-child': unreachable, below invalid or dropped inode 6",
            "problem: inode 8 'lost-grandchild': unreachable, below invalid or dropped inode 6",
            "problem: inode 9 'under-a-file': parent inode 5 is not a directory",
        ],
        &[6, 7, 8, 9],
    );
}

#[test]
fn parent_cycles_are_dropped() {
    rule(
        &[(6, 7, 6, D, "a", None), (7, 6, 7, D, "b", None), (8, 8, 8, D, "self", None), (9, 6, 9, F, "in-cycle", None)],
        Some(9),
        &[
            "problem: inode 6 'a': parent cycle",
            "problem: inode 7 'b': parent cycle",
            "problem: inode 8 'self': parent cycle",
            "problem: inode 9 'in-cycle': unreachable, below invalid or dropped inode 6",
        ],
        &[6, 7, 8, 9],
    );
}

#[test]
fn duplicate_vmids_keep_the_first_in_inode_order() {
    rule(
        &[(6, 1, 6, D, "pve2", None), (7, 6, 7, D, "lxc", None), (8, 7, 8, F, "100.conf", Some(b"arch: amd64\n"))],
        Some(8),
        &["problem: inode 8 'nodes/pve2/lxc/100.conf': duplicate VMID 100 ('nodes/pve1/qemu-server/100.conf' is kept)"],
        &[8],
    );
}

#[test]
fn invalid_names_are_dropped() {
    rule(
        &[(6, 0, 6, F, "..", None), (7, 0, 7, F, "a/b", None), (8, 0, 8, F, ".", None)],
        Some(8),
        &["problem: inode 6 \"..\": invalid name", "problem: inode 7 \"a/b\": invalid name", "problem: inode 8 \".\": invalid name"],
        &[6, 7, 8],
    );
}

#[test]
fn missing_version_row_is_recreated_with_the_highest_entry_version() {
    let text = rule(&[], None, &["problem: inode 0: no '__version__' row"], &[]);
    assert!(text.contains("'__version__' row written with version 5"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), &base(), None);
    let (out, _) = repair(&db);
    assert_eq!(version_row(&out), 5);
}

#[test]
fn version_row_behind_the_entries_is_raised() {
    let text = rule(&[], Some(3), &["problem: inode 0: '__version__' version 3 is lower than entry version 5"], &[]);
    assert!(text.contains("'__version__' row written with version 5"), "{text}");
    // a version ahead of every entry (deletes bump it) is fine and kept
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), &base(), Some(42));
    assert_eq!(check(&db).0, 0);
    let (out, _) = repair(&db);
    assert_eq!(version_row(&out), 42);
}

#[test]
fn bad_version_row_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), &base(), None);
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute("INSERT INTO tree VALUES (0, 0, 9, 0, 0, 8, 'root', NULL)", []).unwrap();
    drop(c);
    let (code, report) = check(&db);
    assert_eq!(code, 1);
    assert!(report.contains("problem: inode 0: bad '__version__' row: name is not '__version__'"), "{report}");
    let (out, _) = repair(&db);
    assert_eq!(version_row(&out), 5);
}

#[test]
fn integrity_check_failure_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), &base(), Some(5));
    // an index whose recorded definition no longer matches its contents
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE INDEX byname ON tree(name); PRAGMA writable_schema=ON; UPDATE sqlite_master SET sql='CREATE INDEX byname ON tree(parent)' WHERE name='byname';")
        .unwrap();
    drop(c);
    let (code, report) = check(&db);
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("problem: integrity_check:"), "{report}");
    assert!(!report.contains("integrity_check: ok"), "{report}");
    // the rows themselves are fine: repair keeps them all
    let (out, _) = repair(&db);
    assert_eq!(inodes(&out), (0..=5).collect());
}

#[test]
fn check_lists_every_problem_not_just_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = base();
    rows.extend_from_slice(&[
        (6, 0, 6, F, "", None),
        (7, 0, 7, 3, "t", None),
        (8, 0, 8, D, "d", Some(b"x")),
        (9, 0, 9, F, "storage.cfg", None),
        (10, 77, 10, F, "orphan", None),
        (11, 12, 11, D, "c1", None),
        (12, 11, 12, D, "c2", None),
        (13, 1, 13, D, "pve2", None),
        (14, 13, 14, D, "qemu-server", None),
        (15, 14, 15, F, "100.conf", None),
    ]);
    let db = make_db(dir.path(), &rows, Some(3));
    let (code, report) = check(&db);
    assert_eq!(code, 1);
    let problems = report.lines().filter(|l| l.starts_with("problem: ")).count();
    assert_eq!(problems, 9, "{report}");
    assert!(report.contains("NOT healthy: 9 problem(s)"), "{report}");
    // the daemon's loader stops at the first; we start a daemon on the repaired copy
    let (out, text) = repair(&db);
    assert_eq!(inodes(&out), [0, 1, 2, 3, 4, 5, 13, 14].into_iter().collect(), "{text}");
    let mut d = Daemon::start_with_db(&out, &[]);
    assert_eq!(std::fs::read(d.p("nodes/pve1/qemu-server/100.conf")).unwrap(), b"memory: 512\n");
    assert!(d.p("nodes/pve2/qemu-server").is_dir());
    assert_eq!(errno(&std::fs::metadata(d.p("orphan")).unwrap_err()), libc::ENOENT);
    assert_eq!(d.stop(), 0);
}

#[test]
fn repair_never_overwrites_and_reports_missing_input() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), &base(), Some(5));
    let out = dir.path().join("exists.db");
    std::fs::write(&out, b"keep me").unwrap();
    let (code, _, err) = run(&["repair"], &db, &[Path::new("--out"), &out]);
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    let (code, _, err) = run(&["repair"], &db, &[Path::new("--out"), &db]);
    assert_eq!(code, 1, "{err}");
    let missing = dir.path().join("missing.db");
    let (code, out_text) = check(&missing);
    assert_eq!(code, 1);
    assert!(out_text.contains("does not exist"), "{out_text}");
    let (code, _, err) = run(&["repair"], &missing, &[Path::new("--out"), &dir.path().join("new.db")]);
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");
}

/// A private copy of the golden database (with its WAL): opening it may touch the -shm.
fn golden_copy(dir: &Path) -> PathBuf {
    for suffix in ["", "-wal", "-shm"] {
        let src = golden(&format!("c-config.db{suffix}"));
        if src.exists() {
            std::fs::copy(&src, dir.join(format!("c-config.db{suffix}"))).unwrap();
        }
    }
    dir.join("c-config.db")
}

#[test]
fn check_dump_and_repair_work_on_the_originals_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = golden_copy(dir.path());
    let (code, report) = check(&db);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("integrity_check: ok") && report.contains("guests: 100") && report.contains("\nhealthy"), "{report}");
    let checksum = report.lines().find(|l| l.starts_with("checksum:")).unwrap().to_string();
    let version = report.lines().find(|l| l.starts_with("version:")).unwrap().to_string();

    let (code, list, _) = run(&["dump"], &db, &[]);
    assert_eq!(code, 0);
    assert!(list.lines().count() >= 100, "{list}");
    assert!(list.lines().any(|l| l.starts_with('f') && l.ends_with(" datacenter.cfg")), "{list}");
    let (code, cfg, _) = run(&["dump"], &db, &[Path::new("datacenter.cfg")]);
    assert_eq!(code, 0);
    assert!(!cfg.is_empty());

    let (out, text) = repair(&db);
    assert!(!text.contains("dropped:"), "{text}");
    let (_, again) = check(&out);
    assert!(again.contains(&checksum) && again.contains(&version), "repair of a healthy database is the same tree:\n{again}");
    let (code, list2, _) = run(&["dump"], &out, &[]);
    assert_eq!(code, 0);
    assert_eq!(list, list2);
}
