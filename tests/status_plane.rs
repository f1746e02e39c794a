//! The status plane through a real mount and a real libqb client: `.version`, `.members`,
//! `.vmlist`, `.clusterlog` and `.rrd` compared byte for byte with fixtures written by hand
//! from the spec's examples (shared/spec/pmxcfs-local.md §5.2–5.7; tests/status_fixtures),
//! kv versions, VMID uniqueness, and (at the library level) the RRD key table and expiry.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::qb::QbClient;
use common::*;
use pmxcfs_ipc::protocol::build;

/// The daemon's IPC service (the harness returns once it is up).
fn ipc(d: &Daemon) -> QbClient {
    QbClient::connect(&d.ipc_name())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A fixture from tests/status_fixtures with its `@NAME@` placeholders filled in; panics on a
/// placeholder left over, so every variable part is named by the test.
fn fixture(name: &str, vars: &[(&str, String)]) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/status_fixtures").join(name);
    let mut s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    for (k, v) in vars {
        s = s.replace(&format!("@{k}@"), v);
    }
    let left = s.match_indices('@').find_map(|(i, _)| {
        let w: String = s[i + 1..].chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit()).collect();
        (!w.is_empty() && s[i + 1 + w.len()..].starts_with('@')).then_some(w)
    });
    assert!(left.is_none(), "unfilled placeholder @{}@ in {name}", left.unwrap_or_default());
    s
}

fn read_text(p: &Path) -> String {
    String::from_utf8(std::fs::read(p).unwrap()).unwrap()
}

fn json(p: &Path) -> serde_json::Value {
    let t = read_text(p);
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("{}: {e}\n{t}", p.display()))
}

fn trim_nul(mut b: Vec<u8>) -> Vec<u8> {
    while b.last() == Some(&0) {
        b.pop();
    }
    b
}

/// Asserts two texts are equal and shows both in full when not.
#[track_caller]
fn same(got: &str, want: &str, what: &str) {
    assert!(got == want, "{what} differs\n--- got ---\n{got}--- want ---\n{want}---");
}

#[test]
fn version_members_and_kv_versions_match_the_spec_text() {
    let t0 = now();
    let d = Daemon::start(&[]);
    let c = ipc(&d);
    let v = json(&d.p(".version"));
    let start = v["starttime"].as_u64().expect("starttime");
    assert!(start + 1 >= t0 && start <= now(), "starttime {start} not in [{t0}, now]");
    let st = start.to_string();

    // fresh: every observed path at 1, vmlist 1, an empty kv block for the local node
    let kv_empty = fixture("version_kv_empty.txt", &[]);
    let want = fixture("version.txt", &[("STARTTIME", st.clone()), ("CLINFO", "0".into()), ("KVBLOCK", kv_empty.clone())]);
    same(&read_text(&d.p(".version")), &want, ".version (fresh)");
    let (err, body) = c.call(&build::simple(1));
    assert_eq!(err, 0);
    same(&String::from_utf8(trim_nul(body)).unwrap(), &want, "GET_FS_VERSION (fresh)");
    same(&read_text(&d.p(".members")), &fixture("members_local.txt", &[("CLINFO", "0".into())]), ".members (fresh)");

    // kv versions: a new key starts at 0, each set of an existing key adds 1, an empty value
    // deletes the key
    for i in 0..3 {
        assert_eq!(c.call(&build::set_status(b"kv/alpha", format!("value {i}\0").as_bytes())).0, 0);
    }
    assert_eq!(c.call(&build::set_status(b"tasklist", b"[]\0")).0, 0);
    assert_eq!(c.call(&build::set_status(b"kv/gone", b"soon gone\0")).0, 0);
    assert_eq!(c.call(&build::get_status(b"kv/gone", b"")), (0, b"soon gone\0".to_vec()));
    assert_eq!(c.call(&build::set_status(b"kv/gone", b"")).0, 0, "empty value deletes");
    assert_eq!(c.call(&build::get_status(b"kv/gone", b"")).0, -libc::ENOENT);
    assert_eq!(c.call(&build::get_status(b"kv/alpha", b"testnode")), (0, b"value 2\0".to_vec()));
    // over 32 KiB: EFBIG, nothing stored
    assert_eq!(c.call(&build::set_status(b"kv/big", &vec![b'x'; 32769])).0, -libc::EFBIG);
    assert_eq!(c.call(&build::get_status(b"kv/big", b"")).0, -libc::ENOENT);
    // nodeip is not a kv entry; a changed IP bumps clinfo (shown by .members and .version)
    assert_eq!(c.call(&build::set_status(b"nodeip", b"192.0.2.10\0")).0, 0);
    assert_eq!(c.call(&build::set_status(b"nodeip", b"192.0.2.10\0")).0, 0, "same IP again: no bump");

    let kv_set = fixture("version_kv_set.txt", &[]);
    let want = fixture("version.txt", &[("STARTTIME", st.clone()), ("CLINFO", "1".into()), ("KVBLOCK", kv_set)]);
    same(&read_text(&d.p(".version")), &want, ".version (after SET_STATUS)");
    let (err, body) = c.call(&build::simple(1));
    assert_eq!(err, 0);
    same(&String::from_utf8(trim_nul(body)).unwrap(), &want, "GET_FS_VERSION (after SET_STATUS)");
    let members = fixture("members_local.txt", &[("CLINFO", "1".into())]);
    same(&read_text(&d.p(".members")), &members, ".members (after nodeip)");
    let (err, body) = c.call(&build::simple(2));
    assert_eq!(err, 0);
    same(&String::from_utf8(trim_nul(body)).unwrap(), &members, "GET_CLUSTER_INFO");
}

#[test]
fn vmlist_empty_non_empty_and_duplicate_vmids_refused() {
    let d = Daemon::start(&[]);
    let c = ipc(&d);
    same(&read_text(&d.p(".vmlist")), &fixture("vmlist_empty.txt", &[]), ".vmlist (empty)");

    std::fs::create_dir_all(d.p("nodes/testnode/qemu-server")).unwrap();
    std::fs::create_dir_all(d.p("nodes/testnode/lxc")).unwrap();
    std::fs::create_dir_all(d.p("nodes/other/qemu-server")).unwrap();
    let v_before = json(&d.p(".vmlist"))["version"].as_u64().unwrap();
    assert_eq!(v_before, 1, "mkdir does not touch the vmlist");
    std::fs::write(d.p("nodes/testnode/qemu-server/100.conf"), b"memory: 512\n").unwrap();
    let after100 = json(&d.p(".vmlist"));
    std::fs::write(d.p("nodes/testnode/lxc/101.conf"), b"memory: 256\n").unwrap();

    let v = json(&d.p(".vmlist"));
    let version = v["version"].as_u64().unwrap();
    let (v100, v101) = (v["ids"]["100"]["version"].as_u64().unwrap(), v["ids"]["101"]["version"].as_u64().unwrap());
    assert!(after100["version"].as_u64().unwrap() > 1 && version > after100["version"].as_u64().unwrap(), "every register bumps the list version");
    assert!(v101 > v100, "per-VM versions come from one counter bumped on every insert ({v100}, {v101})");
    assert_eq!(after100["ids"]["100"]["version"].as_u64().unwrap(), v100, "registering 101 left 100 alone");
    let want = fixture("vmlist_two.txt", &[("VERSION", version.to_string()), ("V100", v100.to_string()), ("V101", v101.to_string())]);
    same(&read_text(&d.p(".vmlist")), &want, ".vmlist (two guests)");
    let (err, body) = c.call(&build::simple(3));
    assert_eq!(err, 0);
    same(&String::from_utf8(trim_nul(body)).unwrap(), &want, "GET_GUEST_LIST");
    assert_eq!(json(&d.p(".version"))["vmlist"].as_u64(), Some(version), ".version's vmlist = .vmlist's version");

    // the same VMID with another type or on another node: EEXIST for create, write and
    // rename targets; nothing changes
    let e = std::fs::write(d.p("nodes/testnode/lxc/100.conf"), b"x\n").unwrap_err();
    assert_eq!(errno(&e), libc::EEXIST, "same VMID, other type");
    let e = std::fs::write(d.p("nodes/other/qemu-server/100.conf"), b"x\n").unwrap_err();
    assert_eq!(errno(&e), libc::EEXIST, "same VMID, other node");
    let e = std::fs::rename(d.p("nodes/testnode/lxc/101.conf"), d.p("nodes/testnode/lxc/100.conf")).unwrap_err();
    assert_eq!(errno(&e), libc::EEXIST, "rename onto a VMID of another type");
    std::fs::write(d.p("nodes/other/plain.txt"), b"x\n").unwrap();
    let e = std::fs::rename(d.p("nodes/other/plain.txt"), d.p("nodes/other/qemu-server/101.conf")).unwrap_err();
    assert_eq!(errno(&e), libc::EEXIST, "rename onto a VMID of another node");
    assert!(!d.p("nodes/testnode/lxc/100.conf").exists() && !d.p("nodes/other/qemu-server/100.conf").exists());
    assert!(d.p("nodes/testnode/lxc/101.conf").exists());
    same(&read_text(&d.p(".vmlist")), &want, ".vmlist after refused duplicates");
    // a directory named like a config is allowed and not counted
    std::fs::create_dir(d.p("nodes/other/qemu-server/100.conf")).unwrap();
    same(&read_text(&d.p(".vmlist")), &want, ".vmlist after mkdir 100.conf");
    std::fs::remove_dir(d.p("nodes/other/qemu-server/100.conf")).unwrap();

    // rewriting the same guest's config is fine and re-registers it
    std::fs::write(d.p("nodes/testnode/qemu-server/100.conf"), b"memory: 1024\n").unwrap();
    let v2 = json(&d.p(".vmlist"));
    assert!(v2["version"].as_u64().unwrap() > version);
    assert!(v2["ids"]["100"]["version"].as_u64().unwrap() > v101);
    // deleting the last guest config empties the list (back to the empty form)
    std::fs::remove_file(d.p("nodes/testnode/qemu-server/100.conf")).unwrap();
    std::fs::remove_file(d.p("nodes/testnode/lxc/101.conf")).unwrap();
    let v3 = json(&d.p(".vmlist"))["version"].as_u64().unwrap();
    same(&read_text(&d.p(".vmlist")), &format!("{{\n\"version\": {v3}\n\n}}\n"), ".vmlist emptied");
}

/// Builds an original-format config.db (the exact schema of backend/src/store.rs) holding
/// VMID 100 twice: as a qemu guest of n1 and as a container of n2.
fn duplicate_vmid_db(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(pmxcfs_backend::store::SCHEMA).unwrap();
    type Row<'a> = (i64, i64, &'a str, i64, Option<&'a [u8]>);
    let rows: &[Row] = &[
        (1, 0, "nodes", 4, None),
        (2, 1, "n1", 4, None),
        (3, 1, "n2", 4, None),
        (4, 2, "qemu-server", 4, None),
        (5, 3, "lxc", 4, None),
        (6, 4, "100.conf", 8, Some(b"memory: 512\n")),
        (7, 5, "100.conf", 8, Some(b"memory: 256\n")),
    ];
    let mtime = 1_795_000_000i64;
    conn.execute(
        "INSERT INTO tree (inode, parent, version, writer, mtime, type, name, data) VALUES (0, 0, 7, 0, ?1, 8, '__version__', NULL)",
        [mtime],
    )
    .unwrap();
    for (inode, parent, name, ty, data) in rows {
        conn.execute(
            "INSERT INTO tree (inode, parent, version, writer, mtime, type, name, data) VALUES (?1, ?2, ?1, 0, ?3, ?4, ?5, ?6)",
            rusqlite::params![inode, parent, mtime, ty, name, data],
        )
        .unwrap();
    }
}

#[test]
fn database_with_duplicate_vmid_starts_with_a_warning_naming_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("config.db");
    duplicate_vmid_db(&db);
    let d = Daemon::start_with_db(&db, &[]);
    let log = d.log_text();
    let line = log.lines().find(|l| l.contains("duplicate VMID 100")).unwrap_or_else(|| panic!("no duplicate warning:\n{log}"));
    assert!(line.contains("nodes/n1/qemu-server/100.conf") && line.contains("nodes/n2/lxc/100.conf"), "{line}");
    // the mount works and lists the guest once
    let v = json(&d.p(".vmlist"));
    let ids = v["ids"].as_object().unwrap();
    assert_eq!(ids.len(), 1, "{v}");
    let e = &ids["100"];
    assert!((e["node"] == "n1" && e["type"] == "qemu") || (e["node"] == "n2" && e["type"] == "lxc"), "{v}");
    assert_eq!(std::fs::read(d.p("nodes/n1/qemu-server/100.conf")).unwrap(), b"memory: 512\n");
    assert_eq!(std::fs::read(d.p("nodes/n2/lxc/100.conf")).unwrap(), b"memory: 256\n");
}

#[test]
fn clusterlog_start_entry_ipc_entries_escaping_and_filters() {
    let t0 = now();
    let d = Daemon::start(&[]);
    let start = json(&d.p(".version"))["starttime"].as_u64().unwrap().to_string();
    let daemon_pid = d.pid().to_string();
    same(
        &read_text(&d.p(".clusterlog")),
        &fixture("clusterlog_start.txt", &[("STARTTIME", start.clone()), ("DAEMONPID", daemon_pid.clone())]),
        ".clusterlog (fresh)",
    );

    let c = ipc(&d);
    let msg = "say \"hi\"\nnext\tline ü€😀 \x7f end";
    assert_eq!(c.call(&build::log_cluster_msg(6, b"root@pam", b"tag1", msg.as_bytes())).0, 0);
    assert_eq!(c.call(&build::log_cluster_msg(3, b"other@pve", b"tag2", b"bad \xff\xfe byte\n")).0, 0);
    assert_eq!(c.call(&build::log_cluster_msg(8, b"root@pam", b"tag3", b"priority 8 is dropped")).0, 0);

    let v = json(&d.p(".clusterlog"));
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "{v}");
    let (time3, time2) = (data[0]["time"].as_u64().unwrap(), data[1]["time"].as_u64().unwrap());
    assert!(time2 >= t0 && time3 >= time2 && time3 <= now());
    let vars = [
        ("STARTTIME", start),
        ("DAEMONPID", daemon_pid),
        // the pid libqb reports for the connection: this test process
        ("CLIENTPID", std::process::id().to_string()),
        ("TIME2", time2.to_string()),
        ("TIME3", time3.to_string()),
    ];
    let want = fixture("clusterlog_ipc.txt", &vars);
    same(&read_text(&d.p(".clusterlog")), &want, ".clusterlog (after LOG_CLUSTER_MSG)");
    let (err, body) = c.call(&build::get_cluster_log(0, b""));
    assert_eq!(err, 0);
    same(&String::from_utf8(trim_nul(body)).unwrap(), &want, "GET_CLUSTER_LOG (max 0 = 50, no user)");
    let (err, body) = c.call(&build::get_cluster_log(50, b"root@pam"));
    assert_eq!(err, 0);
    same(&String::from_utf8(trim_nul(body)).unwrap(), &fixture("clusterlog_root_pam.txt", &vars), "GET_CLUSTER_LOG user root@pam");
    let (err, body) = c.call(&build::get_cluster_log(50, b"nobody@pam"));
    assert_eq!(err, 0);
    same(&String::from_utf8(trim_nul(body)).unwrap(), &fixture("clusterlog_empty.txt", &[]), "GET_CLUSTER_LOG without matches");
    let (err, body) = c.call(&build::get_cluster_log(1, b""));
    assert_eq!(err, 0);
    let one: serde_json::Value = serde_json::from_slice(&trim_nul(body)).unwrap();
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    assert_eq!(one["data"][0]["uid"], 3, "newest first");
}

#[test]
fn rrd_dump_lists_posted_values_and_the_ipc_dump_has_the_nul_only_when_fresh() {
    let d = Daemon::start(&[]);
    let c = ipc(&d);
    let t = now();
    let node = format!("1234:0:{t}:0.5:4:0.1:0.01:1000:500:200:100:5000:2500:123:456\0");
    let vm = format!("100:vm100:running:0:{t}:2:0.5:2048:1024:10000:5000:1:2:3:4\0");
    let storage = format!("{t}:1000:500\0");
    assert_eq!(c.call(&build::set_status(b"rrd/pve2-node/testnode", node.as_bytes())).0, 0);
    assert_eq!(c.call(&build::set_status(b"rrd/pve2.3-vm/100", vm.as_bytes())).0, 0);
    assert_eq!(c.call(&build::set_status(b"rrd/pve2-storage/testnode/local", storage.as_bytes())).0, 0);
    // an unknown key is only logged by the file updater; the value is still dumped
    assert_eq!(c.call(&build::set_status(b"rrd/unknown-key/x", b"1:2:3\0")).0, 0);
    // invalid RRD data (no NUL, empty, 4096 bytes or more): ENOMEM, nothing stored
    assert_eq!(c.call(&build::set_status(b"rrd/pve2-node/nonul", b"1:2:3")).0, -libc::ENOMEM);
    assert_eq!(c.call(&build::set_status(b"rrd/pve2-node/empty", b"")).0, -libc::ENOMEM);
    let mut long = vec![b'1'; 4095];
    long.push(0);
    assert_eq!(c.call(&build::set_status(b"rrd/pve2-node/long", &long)).0, -libc::ENOMEM);

    let want = fixture("rrd_dump.txt", &[("NOW", t.to_string())]);
    // the first dump is fresh: the IPC body carries a trailing NUL
    let (err, body) = c.call(&build::simple(10));
    assert_eq!(err, 0);
    assert_eq!(body.last(), Some(&0), "fresh dump ends in NUL");
    same(std::str::from_utf8(&body[..body.len() - 1]).unwrap(), &want, "GET_RRD_DUMP (fresh)");
    // within 2 s the cached copy is served: the file shows the same text (never a NUL) and
    // the IPC body has no NUL
    same(&read_text(&d.p(".rrd")), &want, ".rrd (cached)");
    let (err, body) = c.call(&build::simple(10));
    assert_eq!(err, 0);
    if body.last() != Some(&0) {
        same(&String::from_utf8(body).unwrap(), &want, "GET_RRD_DUMP (cached, no NUL)");
    }

    // a value posted now is visible once the 2-s cache has expired
    let node2 = format!("1300:0:{}:0.7:4:0.1:0.01:1000:500:200:100:5000:2500:123:456\0", t + 1);
    assert_eq!(c.call(&build::set_status(b"rrd/pve2-node/testnode", node2.as_bytes())).0, 0);
    std::thread::sleep(Duration::from_millis(2100));
    let text = read_text(&d.p(".rrd"));
    assert!(text.starts_with(&format!("pve2-node/testnode:{}\n", node2.trim_end_matches('\0'))), "{text}");
    assert_eq!(text.lines().count(), 4);

    // the daemon (no rrdcached socket here) wrote the 9.0 files with rrdtool
    let db = d.root.path().join("var/lib/rrdcached/db");
    for f in ["pve-node-9.0/testnode", "pve-vm-9.0/100", "pve-storage-9.0/testnode/local"] {
        assert!(db.join(f).is_file(), "{f} missing\n{}", d.log_text());
    }
    assert!(d.log_text().contains("unknown/wrong key"), "bad key logged:\n{}", d.log_text());
}

// ----- status crate level: what cannot be driven through a live daemon --------------------

#[test]
fn rrd_every_prefix_of_the_spec_table_maps_to_its_file_and_update_string() {
    use pmxcfs_status::rrd::{plan_update, RrdKind};
    let base = Path::new("/var/lib/rrdcached/db");
    let node12 = "1795350000:0.5:4:0.1:0.01:1000:500:200:100:5000:2500:123:456";
    let node19 = format!("{node12}:700:0:1:2:3:4:5");
    let vm10 = "1795350000:2:0.5:2048:1024:10000:5000:1:2:3:4";
    let vm17 = format!("{vm10}:6:7:8:9:10:11:12");
    // (key, posted value, kind, file, update string) — one row per line of §6.5's table
    let rows: Vec<(&str, String, RrdKind, &str, String)> = vec![
        ("pve2-node/pve1", format!("3600:0:{node12}"), RrdKind::Node, "pve-node-9.0/pve1", format!("{node12}:U:U:U:U:U:U:U")),
        ("pve-node-9.0/pve1", format!("3600:0:{node19}"), RrdKind::Node, "pve-node-9.0/pve1", node19.clone()),
        ("pve-node-9.7/pve1", format!("3600:0:{node19}:88:99"), RrdKind::Node, "pve-node-9.0/pve1", node19.clone()),
        ("pve2.3-vm/100", format!("3600:vm:running:0:{vm10}"), RrdKind::Vm, "pve-vm-9.0/100", format!("{vm10}:U:U:U:U:U:U:U")),
        ("pve-vm-9.0/100", format!("3600:vm:running:0:{vm17}"), RrdKind::Vm, "pve-vm-9.0/100", vm17.clone()),
        ("pve-vm-10.0/100", format!("3600:vm:running:0:{vm17}:13"), RrdKind::Vm, "pve-vm-9.0/100", vm17.clone()),
        ("pve2-storage/pve1/local", "1795350000:1000:500".into(), RrdKind::Storage, "pve-storage-9.0/pve1/local", "1795350000:1000:500".into()),
        ("pve-storage-9.0/pve1/local-zfs", "1795350000:1000:500".into(), RrdKind::Storage, "pve-storage-9.0/pve1/local-zfs", "1795350000:1000:500".into()),
        ("pve-storage-9.5/pve1/local", "1795350000:1000:500:42".into(), RrdKind::Storage, "pve-storage-9.0/pve1/local", "1795350000:1000:500".into()),
    ];
    for (key, value, kind, file, update) in rows {
        let mut data = value.into_bytes();
        data.push(0);
        let p = plan_update(base, key, &data).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(p.kind, kind, "{key}");
        assert_eq!(p.file, base.join(file), "{key}");
        assert_eq!(p.values, update, "{key}");
        assert_eq!(p.values.split(':').count(), 1 + kind.columns(), "{key}: timestamp + 9.0 columns");
    }
    for bad in ["pve2-node/a/b", "pve2.3-vm/", "pve2-storage/pve1", "pve2-vm/100", "nope/x"] {
        let e = plan_update(base, bad, b"1:2:3\0").unwrap_err();
        assert!(e.to_string().contains("RRD update error: unknown/wrong key"), "{bad}: {e}");
    }
}

#[test]
fn rrd_values_expire_after_300_seconds_and_kv_values_do_not() {
    use pmxcfs_status::StatusStore;
    let mut s = StatusStore::new("pve1", Path::new("/nonexistent"));
    let t = 1_795_350_000i64;
    s.set_local("rrd/pve2-storage/pve1/local", b"1795350000:1:2\0", t).unwrap();
    s.set_local("rrd/pve2-node/pve1", b"1:0:1795350100:1\0", t + 100).unwrap();
    s.set_local("kv/x", b"y\0", t).unwrap();
    assert_eq!(s.rrd.dump(t + 300).text, b"pve2-node/pve1:1:0:1795350100:1\npve2-storage/pve1/local:1795350000:1:2\n", "exactly 300 s old is kept");
    assert_eq!(s.rrd.dump(t + 303).text, b"pve2-node/pve1:1:0:1795350100:1\n", "301+ s old is gone");
    assert_eq!(s.rrd.dump(t + 401).text, b"", "all gone");
    assert!(s.rrd.is_empty());
    assert_eq!(s.get("", "kv/x").unwrap(), b"y\0");
}

/// Simulated 3-node kvstore group (the real `KvstoreApp` over `pmxcfs_dfsm::sim`): every node
/// logs enough entries through the IPC path (add locally + LOG multicast) for all rings to
/// wrap several times; a LOG message delivered twice is dropped; after a node restarts,
/// every member holds the same merged log: newest first, no duplicates, cut to one buffer,
/// with the newest entries of all three nodes.
#[test]
fn simulated_cluster_log_wraps_dedups_and_merges_entries_of_three_nodes() {
    use std::sync::Arc;

    use pmxcfs_dfsm::sim::Sim;
    use pmxcfs_dfsm::Mode;
    use pmxcfs_cluster::kvstore::{KvstoreApp, KvstoreHost};
    use pmxcfs_status::node::{ClusterInfo, ClusterNode, Status};
    use pmxcfs_status::clusterlog::CLOG_DEFAULT_SIZE;

    const LOG: u16 = 3;
    let status = |i: u32| {
        let s = Arc::new(Status::new(&format!("node{i}"), Path::new("/nonexistent-rrd"), None, 1_795_000_000 + u64::from(i)));
        s.set_cluster_info(ClusterInfo {
            name: "c".into(),
            config_version: 1,
            nodes: (1..=3).map(|n| ClusterNode { name: format!("node{n}"), nodeid: n, votes: 1, online: false }).collect(),
        });
        s
    };
    let mut st: Vec<Arc<Status>> = (1..=3).map(status).collect();
    let mut s = Sim::new(11, 0, None);
    for i in 1..=3u32 {
        s.start_hosted(i, 500 + i, KvstoreApp::new(st[i as usize - 1].clone(), format!("10.0.0.{i}")), Box::new(KvstoreHost { status: st[i as usize - 1].clone() }));
    }
    s.run(300_000);
    assert!((1..=3).all(|i| s.mode(i) == Some(Mode::Synced)));

    // 3 x 600 entries of ~250 bytes ≈ 3 x 1.2 rings
    let base = 1_795_001_000u32;
    let mut last = Vec::new();
    for j in 0..600u32 {
        for i in 1..=3u32 {
            let msg = format!("node{i} entry {j} {}", "x".repeat(200));
            let e = st[i as usize - 1].tables.lock().clusterlog.add(format!("node{i}").as_bytes(), b"root@pam", b"t", 1000 + i, base + j, 6, msg.as_bytes()).unwrap();
            s.request(i, LOG, &e.encode(), false);
            if j == 599 {
                last.push(e);
            }
        }
        if j % 50 == 0 {
            s.run(300_000);
        }
    }
    s.run(300_000);
    // node3's newest entry arrives again (from node1): dropped as a duplicate everywhere
    let before: Vec<usize> = st.iter().map(|x| x.tables.lock().clusterlog.entries().len()).collect();
    s.request(1, LOG, &last[2].encode(), false);
    s.run(300_000);
    let after: Vec<usize> = st.iter().map(|x| x.tables.lock().clusterlog.entries().len()).collect();
    assert_eq!(before, after, "duplicate LOG ignored");
    for (n, x) in st.iter().enumerate() {
        let entries = x.tables.lock().clusterlog.entries();
        let bytes: usize = entries.iter().map(|e| (e.size() + 7) & !7).sum();
        assert!(bytes <= (CLOG_DEFAULT_SIZE - 8) as usize && entries.len() < 1800, "node{} ring wrapped", n + 1);
        // (ring order is arrival order: a node's own entries go in before the multicast of
        // the others is delivered) every node's last entry is there once, the oldest are gone
        for e in &last {
            assert_eq!(entries.iter().filter(|m| m.key() == e.key()).count(), 1, "node{}", n + 1);
        }
        assert!(entries.iter().all(|e| e.time() > base + 100), "node{}: old entries overwritten", n + 1);
    }

    // node2 restarts with an empty log (only its own start entry) and merges everyone's
    s.stop(2);
    s.run(300_000);
    st[1] = status(2);
    s.start_hosted(2, 600, KvstoreApp::new(st[1].clone(), "10.0.0.2".into()), Box::new(KvstoreHost { status: st[1].clone() }));
    s.run(400_000);
    assert!((1..=3).all(|i| s.mode(i) == Some(Mode::Synced)));
    let logs: Vec<Vec<_>> = st.iter().map(|x| x.tables.lock().clusterlog.entries()).collect();
    assert_eq!(logs[0], logs[1], "node1 and the restarted node2 hold the same merged log");
    assert_eq!(logs[0], logs[2], "node1 and node3 hold the same merged log");
    let merged = &logs[0];
    for w in merged.windows(2) {
        assert!(w[0].key() > w[1].key(), "newest first, no duplicate keys");
    }
    let bytes: usize = merged.iter().map(|e| (e.size() + 7) & !7).sum();
    assert!(bytes <= (CLOG_DEFAULT_SIZE - 8) as usize, "cut to one buffer");
    assert!(bytes >= (CLOG_DEFAULT_SIZE - 8 - 2 * 4096) as usize, "but filled: {bytes}");
    for e in &last {
        assert_eq!(merged.iter().filter(|m| m.key() == e.key()).count(), 1, "newest entry of {:?} once", String::from_utf8_lossy(e.node()));
    }
    // the merged ring is in key order (time, node digest, uid): the restarted node's dump
    // starts with the largest key of the last round
    let top = last.iter().max_by_key(|e| e.key()).unwrap();
    assert_eq!(merged[0].key(), top.key());
    let dump = String::from_utf8(st[1].tables.lock().clusterlog.dump_json(None, 1)).unwrap();
    let node = String::from_utf8_lossy(top.node()).into_owned();
    assert!(dump.contains(&format!("\"node\": \"{node}\"")) && dump.contains(&format!("{node} entry 599")), "{dump}");
}
