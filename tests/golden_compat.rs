//! A config.db made by the original mounts unchanged and shows exactly its files, modes and
//! virtual files.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use common::*;

fn manifest() -> BTreeMap<String, String> {
    std::fs::read_to_string(golden("c-config.manifest"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut p = l.splitn(3, ' ');
            let (kind, hash, path) = (p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
            (path.to_string(), if kind == "d" { "-".to_string() } else { hash.to_string() })
        })
        .collect()
}

#[test]
fn golden_config_db_mounts_with_exactly_the_manifest() {
    let d = Daemon::start_with_db(&golden("c-config.db"), &["--nodename", "pve1"]);
    assert_eq!(snapshot(&d.mnt()), manifest());
}

#[test]
fn golden_modes_match_the_originals_mount() {
    let d = Daemon::start_with_db(&golden("c-config.db"), &["--nodename", "pve1"]);
    for line in std::fs::read_to_string(golden("c-modes.txt")).unwrap().lines() {
        let mut p = line.split_whitespace();
        let (mode, _user, _group, path) = (p.next().unwrap(), p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
        let rel = path.trim_start_matches("/etc/pve/");
        let m = std::fs::metadata(d.p(rel)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(format!("{m:o}"), mode, "{rel}");
    }
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn golden_virtual_files_have_the_same_shape() {
    let d = Daemon::start_with_db(&golden("c-config.db"), &["--nodename", "pve1"]);
    let ours: serde_json::Value = serde_json::from_slice(&std::fs::read(d.p(".version")).unwrap()).unwrap();
    let theirs: serde_json::Value = serde_json::from_slice(&std::fs::read(golden("c-local.version")).unwrap()).unwrap();
    assert_eq!(keys(&ours), keys(&theirs));
    assert_eq!(keys(&ours["kvstore"]), keys(&theirs["kvstore"]));
    // line order of the observed files is the original's table order
    let order = |t: &str| t.lines().map(|l| l.split(':').next().unwrap().to_string()).skip(4).collect::<Vec<_>>();
    assert_eq!(
        order(&String::from_utf8(std::fs::read(d.p(".version")).unwrap()).unwrap()),
        order(&std::fs::read_to_string(golden("c-local.version")).unwrap())
    );
    assert_eq!(std::fs::read(d.p(".members")).unwrap(), std::fs::read(golden("c-local.members")).unwrap());
    let ours: serde_json::Value = serde_json::from_slice(&std::fs::read(d.p(".vmlist")).unwrap()).unwrap();
    let theirs: serde_json::Value = serde_json::from_slice(&std::fs::read(golden("c-local.vmlist")).unwrap()).unwrap();
    assert_eq!(keys(&ours["ids"]), keys(&theirs["ids"]));
    for (id, e) in theirs["ids"].as_object().unwrap() {
        assert_eq!(ours["ids"][id]["node"], e["node"], "{id}");
        assert_eq!(ours["ids"][id]["type"], e["type"], "{id}");
    }
    let log: serde_json::Value = serde_json::from_slice(&std::fs::read(d.p(".clusterlog")).unwrap()).unwrap();
    let first = &log["data"][0];
    assert_eq!((first["node"].as_str(), first["tag"].as_str(), first["msg"].as_str()), (Some("pve1"), Some("cluster"), Some("starting cluster log")));
    assert_eq!(std::fs::read(d.p(".rrd")).unwrap(), b"", "no RRD data posted yet");
}

#[test]
fn golden_database_is_untouched_until_something_changes() {
    let mut d = Daemon::start_with_db(&golden("c-config.db"), &["--nodename", "pve1"]);
    assert_eq!(d.commits(), 0);
    assert_eq!(d.stop(), 0);
    let conn = rusqlite::Connection::open(d.db_path()).unwrap();
    let a: Vec<(i64, i64, Option<Vec<u8>>)> = conn
        .prepare("SELECT inode, version, data FROM tree ORDER BY inode").unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    let g = rusqlite::Connection::open_with_flags(golden("c-config.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let b: Vec<(i64, i64, Option<Vec<u8>>)> = g
        .prepare("SELECT inode, version, data FROM tree ORDER BY inode").unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(a, b);
}

#[test]
fn database_written_by_us_keeps_the_originals_schema_and_rows() {
    let mut d = Daemon::start_with_db(&golden("c-config.db"), &["--nodename", "pve1"]);
    std::fs::write(d.p("nodes/pve1/qemu-server/999.conf"), b"memory: 1024\n").unwrap();
    std::fs::remove_file(d.p("nodes/pve1/qemu-server/100.conf")).unwrap();
    assert_eq!(d.stop(), 0);
    let conn = rusqlite::Connection::open(d.db_path()).unwrap();
    let (v, vname): (i64, String) = conn.query_row("SELECT version, name FROM tree WHERE inode = 0", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    let max: i64 = conn.query_row("SELECT max(version) FROM tree WHERE inode != 0", [], |r| r.get(0)).unwrap();
    assert_eq!(vname, "__version__");
    assert!(v >= max, "__version__ ({v}) is the newest version ({max})");
    let gone: i64 = conn.query_row("SELECT count(*) FROM tree WHERE name = '100.conf'", [], |r| r.get(0)).unwrap();
    assert_eq!(gone, 0);
    let (ty, data): (i64, Vec<u8>) = conn.query_row("SELECT type, data FROM tree WHERE name = '999.conf'", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((ty, data.as_slice()), (8, &b"memory: 1024\n"[..]));
}
