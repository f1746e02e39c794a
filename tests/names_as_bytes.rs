//! Names are bytes, as in the original: a name that is not UTF-8 loads from an original's
//! config.db, lists and reads back byte-exact through FUSE, can be created through FUSE,
//! survives a restart with the same raw bytes in SQLite, and passes `pmxcfs check`.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use common::*;
use pmxcfs_backend::store::SCHEMA;

const RAW: &[u8] = b"caf\xe9-\xff.conf";

fn raw_names(db: &std::path::Path) -> Vec<Vec<u8>> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare("SELECT name, typeof(name) FROM tree ORDER BY inode").unwrap();
    st.query_map([], |r| {
        let t: String = r.get(1)?;
        assert_eq!(t, "text", "names stay TEXT");
        Ok(r.get_ref(0)?.as_bytes()?.to_vec())
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

#[test]
fn a_database_with_a_non_utf8_name_loads_lists_reads_and_checks_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("config.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(SCHEMA).unwrap();
    // bound as TEXT with raw bytes, the way the original's sqlite3_bind_text stores them
    c.execute(
        "INSERT INTO tree VALUES (1, 0, 1, 0, 1700000000, 8, CAST(?1 AS TEXT), ?2)",
        rusqlite::params![RAW, b"bytes\n".as_slice()],
    )
    .unwrap();
    c.execute("INSERT INTO tree VALUES (0, 0, 1, 0, 1700000000, 8, '__version__', NULL)", []).unwrap();
    drop(c);
    let out = Command::new(BIN).args(["check", "--db"]).arg(&db).output().unwrap();
    assert!(out.status.success(), "check:\n{}", String::from_utf8_lossy(&out.stdout));

    let mut d = Daemon::start_with_db(&db, &[]);
    let p = d.mnt().join(OsStr::from_bytes(RAW));
    assert_eq!(fs::read(&p).unwrap(), b"bytes\n");
    let listed: Vec<Vec<u8>> = fs::read_dir(d.mnt()).unwrap().map(|e| e.unwrap().file_name().as_bytes().to_vec()).collect();
    assert!(listed.iter().any(|n| n == RAW), "readdir gives the raw bytes back");

    // created through FUSE, including bytes of the escape range's own UTF-8 form
    let fresh: &[u8] = b"new-\x80\xfe-\xef\x9e\x80.cfg";
    fs::write(d.mnt().join(OsStr::from_bytes(fresh)), b"made here\n").unwrap();
    fs::rename(d.mnt().join(OsStr::from_bytes(fresh)), d.mnt().join(OsStr::from_bytes(b"moved-\xfe"))).unwrap();
    assert_eq!(d.stop(), 0);
    let names = raw_names(&d.db_path());
    assert!(names.iter().any(|n| n == RAW), "the loaded name is written back unchanged");
    assert!(names.iter().any(|n| n == b"moved-\xfe"), "{names:?}");
    let out = Command::new(BIN).args(["check", "--db"]).arg(d.db_path()).output().unwrap();
    assert!(out.status.success(), "check after use:\n{}", String::from_utf8_lossy(&out.stdout));
    d.spawn().unwrap();
    assert_eq!(fs::read(d.mnt().join(OsStr::from_bytes(b"moved-\xfe"))).unwrap(), b"made here\n");
}
