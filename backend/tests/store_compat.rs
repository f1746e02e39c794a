//! config.db files written by the original load unchanged; ours are shaped like theirs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pmxcfs_backend::index::hex;
use pmxcfs_backend::{Database, DatabaseOptions, Durability, Op, Stamp, Tree};
use sha2::{Digest, Sha256};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/golden")
}

fn walk(t: &Tree, ino: u64, prefix: &str, out: &mut BTreeMap<String, String>) {
    let e = t.get(ino).unwrap();
    for (name, child) in e.children().unwrap() {
        let p = if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
        let c = t.get(*child).unwrap();
        if c.is_dir() {
            out.insert(p.clone(), "-".into());
            walk(t, *child, &p, out);
        } else {
            out.insert(p, hex(&Sha256::digest(c.data())));
        }
    }
}

fn copy_golden_db(dir: &Path) -> PathBuf {
    let dst = dir.join("config.db");
    std::fs::copy(golden_dir().join("c-config.db"), &dst).unwrap();
    dst
}

#[test]
fn golden_config_db_shows_exactly_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::open(&copy_golden_db(tmp.path()), DatabaseOptions::default()).unwrap();
    let manifest = std::fs::read_to_string(golden_dir().join("c-config.manifest")).unwrap();
    let mut want = BTreeMap::new();
    for line in manifest.lines() {
        let mut parts = line.splitn(3, ' ');
        let (kind, hash, path) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        want.insert(path.to_string(), if kind == "d" { "-".to_string() } else { hash.to_string() });
    }
    let mut got = BTreeMap::new();
    walk(&db.tree(), 0, "", &mut got);
    assert_eq!(got, want);
    assert_eq!(db.tree().vmlist.entries.len(), 100);
    assert_eq!(db.stats().commits, 0, "loading writes nothing");
}

#[test]
fn our_rows_look_like_the_originals() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.db");
    let db = Database::open(&path, DatabaseOptions::default()).unwrap();
    let s = Stamp { writer: 0, mtime: 100 };
    db.apply(&Op::Mkdir { path: "d".into() }, s, Durability::Now).unwrap();
    db.apply(&Op::Create { path: "d/empty".into() }, s, Durability::Now).unwrap();
    db.apply(&Op::Create { path: "d/full".into() }, s, Durability::Deferred).unwrap();
    db.apply(&Op::Write { path: "d/full".into(), offset: 0, data: b"hello".to_vec(), truncate: true }, s, Durability::Now).unwrap();
    drop(db);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let schema: String = conn.query_row("SELECT sql FROM sqlite_master WHERE name='tree'", [], |r| r.get(0)).unwrap();
    assert!(schema.starts_with("CREATE TABLE tree (\n  inode INTEGER PRIMARY KEY NOT NULL,"), "{schema}");
    type Row = (i64, i64, i64, i64, String, Option<Vec<u8>>);
    let rows: Vec<Row> = conn
        .prepare("SELECT inode, parent, version, type, name, data FROM tree ORDER BY inode")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows[0], (0, 0, 5, 8, "__version__".into(), None));
    assert_eq!(rows[1], (2, 0, 2, 4, "d".into(), None));
    assert_eq!(rows[2], (3, 2, 3, 8, "empty".into(), None), "empty files are NULL");
    assert_eq!(rows[3], (4, 2, 5, 8, "full".into(), Some(b"hello".to_vec())));
    let mode = std::fs::metadata(&path).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);
}

#[test]
fn database_made_by_sql_like_the_originals_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(pmxcfs_backend::store::SCHEMA).unwrap();
    // rows in an order where a child comes before its (renamed) parent
    conn.execute_batch(
        "REPLACE INTO tree VALUES (0,0,9,0,1700000000,8,'__version__',NULL);
         REPLACE INTO tree VALUES (5,7,5,0,1700000000,8,'child.cfg',X'6869');
         REPLACE INTO tree VALUES (7,0,9,0,1700000000,4,'dir',NULL);
         REPLACE INTO tree VALUES (3,0,3,0,1700000000,4,'emptyblobdir',X'');
         REPLACE INTO tree VALUES (4,0,4,0,1700000000,8,'empty.cfg',NULL);",
    )
    .unwrap();
    drop(conn);
    let db = Database::open(&path, DatabaseOptions::default()).unwrap();
    let t = db.tree();
    assert_eq!(t.version(), 9);
    assert_eq!(t.read("dir/child.cfg").unwrap()[..], b"hi"[..]);
    assert!(t.lookup("emptyblobdir").unwrap().is_dir());
    assert_eq!(t.read("empty.cfg").unwrap().len(), 0);
}

fn load_error(sql: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(pmxcfs_backend::store::SCHEMA).unwrap();
    conn.execute_batch(sql).unwrap();
    drop(conn);
    Database::open(&path, DatabaseOptions::default()).err().expect("load must fail").to_string()
}

#[test]
fn bad_rows_are_refused_with_a_message_naming_them() {
    let dup = load_error("INSERT INTO tree VALUES (2,0,2,0,0,8,'a',NULL); INSERT INTO tree VALUES (3,0,3,0,0,8,'a',NULL);");
    assert!(dup.contains("duplicate name 'a'"), "{dup}");
    let orphan = load_error("INSERT INTO tree VALUES (2,99,2,0,0,8,'a',NULL);");
    assert!(orphan.contains("missing directory inode 99"), "{orphan}");
    let kind = load_error("INSERT INTO tree VALUES (2,0,2,0,0,5,'a',NULL);");
    assert!(kind.contains("row inode 2") && kind.contains("unknown type 5"), "{kind}");
    let noname = load_error("INSERT INTO tree VALUES (2,0,2,0,0,8,'',NULL);");
    assert!(noname.contains("has no name"), "{noname}");
    let dirdata = load_error("INSERT INTO tree VALUES (2,0,2,0,0,4,'d',X'00');");
    assert!(dirdata.contains("has data"), "{dirdata}");
    let notdir = load_error("INSERT INTO tree VALUES (2,0,2,0,0,8,'f',NULL); INSERT INTO tree VALUES (3,2,3,0,0,8,'g',NULL);");
    assert!(notdir.contains("not a directory"), "{notdir}");
    let root = load_error("INSERT INTO tree VALUES (0,0,2,0,0,8,'oops',NULL);");
    assert!(root.contains("unexpected name"), "{root}");
}

#[test]
fn foreign_or_corrupt_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.db");
    std::fs::write(&junk, vec![0x42u8; 8192]).unwrap();
    let e = Database::open(&junk, DatabaseOptions::default()).err().unwrap().to_string();
    assert!(e.contains("junk.db"), "{e}");
    let foreign = tmp.path().join("foreign.db");
    let c = rusqlite::Connection::open(&foreign).unwrap();
    c.execute_batch("CREATE TABLE other (x);").unwrap();
    drop(c);
    let e = Database::open(&foreign, DatabaseOptions::default()).err().unwrap().to_string();
    assert!(e.contains("no 'tree' table"), "{e}");
}

#[test]
fn one_transaction_per_commit_and_deferred_creates_ride_along() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::open(&tmp.path().join("config.db"), DatabaseOptions::default()).unwrap();
    let base = db.stats().commits;
    let s = Stamp { writer: 0, mtime: 1 };
    db.apply(&Op::Create { path: "new".into() }, s, Durability::Deferred).unwrap();
    assert_eq!(db.stats().commits, base, "create alone does not commit");
    db.apply(&Op::Write { path: "new".into(), offset: 0, data: vec![7; 1 << 20], truncate: true }, s, Durability::Now).unwrap();
    assert_eq!(db.stats().commits, base + 1);
    assert!(!db.stats().dirty);
}
