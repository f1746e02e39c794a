//! The dcdb and kvstore applications on the simulated CPG: every node applies the same ordered stream
//! to its own config.db, and resyncs converge byte for byte.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use pmxcfs_backend::{Database, DatabaseOptions, Op};
use pmxcfs_dfsm::sim::Sim;
use pmxcfs_dfsm::{Mode, Outcome};

use crate::dcdb::{encode_op, DcdbApp, DcdbHost};

const MAX: usize = 200_000;

/// One simulated node's database in its own temp dir.
pub(crate) struct Node {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) db: Arc<Database>,
}

pub(crate) fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(&dir.path().join("config.db"), DatabaseOptions::default()).unwrap());
    Node { _dir: dir, db }
}

pub(crate) fn app(n: &Node) -> DcdbApp {
    DcdbApp::new(n.db.clone(), Arc::new(AtomicBool::new(true)))
}

/// Starts node `nodeid` on `s` with its effects performed after each step, as the daemon does.
fn start(s: &mut Sim<DcdbApp>, nodeid: u32, pid: u32, n: &Node) {
    s.start_hosted(nodeid, pid, app(n), Box::new(DcdbHost { db: n.db.clone(), host_corosync_conf: None }));
}

fn send(s: &mut Sim<DcdbApp>, node: u32, op: Op) -> u64 {
    let (subtype, payload) = encode_op(&op).unwrap();
    s.request(node, subtype, &payload, true)
}

fn assert_converged(s: &Sim<DcdbApp>, nodes: &[&Node]) {
    let sum = nodes[0].db.tree().checksum();
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(s.mode(i as u32 + 1), Some(Mode::Synced), "node {} synced", i + 1);
        assert_eq!(n.db.tree().checksum(), sum, "node {} has the same tree", i + 1);
        assert!(!n.db.stats().dirty || n.db.acknowledge().is_ok());
        // what is on disk reloads to the same tree
        let path = n._dir.path().join("config.db");
        let reloaded = Database::open(&path, DatabaseOptions::default()).unwrap();
        assert_eq!(reloaded.tree().checksum(), sum, "node {} config.db matches RAM", i + 1);
    }
}

#[test]
fn three_nodes_apply_the_same_changes_and_persist_identical_trees() {
    let (a, b, c) = (node(), node(), node());
    let mut s = Sim::new(7, 1, None);
    start(&mut s, 1, 101, &a);
    start(&mut s, 2, 102, &b);
    start(&mut s, 3, 103, &c);
    s.run(MAX);
    let m = send(&mut s, 1, Op::Mkdir { path: "testdir".into() });
    s.run(MAX);
    assert_eq!(s.answer(1, m), Some(Outcome::Applied(0)));
    send(&mut s, 2, Op::Create { path: "testdir/f".into() });
    let w = send(&mut s, 2, Op::Write { path: "testdir/f".into(), offset: 0, data: b"whole content\n".to_vec(), truncate: true });
    let dup = send(&mut s, 3, Op::Mkdir { path: "testdir".into() });
    s.run(MAX);
    assert_eq!(s.answer(2, w), Some(Outcome::Applied(14)), "a WRITE answers with the byte count");
    assert_eq!(s.answer(3, dup), Some(Outcome::Applied(-libc::EEXIST)));
    send(&mut s, 3, Op::Rename { from: "testdir/f".into(), to: "testdir/g".into() });
    send(&mut s, 1, Op::SetMtime { path: "testdir/g".into(), mtime: 1_700_000_000 });
    s.run(MAX);
    assert_eq!(c.db.tree().lookup("testdir/g").unwrap().mtime, 1_700_000_000);
    assert_eq!(a.db.tree().lookup("testdir/g").unwrap().writer, 1, "writer is the sender's nodeid");
    assert_converged(&s, &[&a, &b, &c]);
}

#[test]
fn partitioned_node_is_resynced_from_the_leader_after_heal() {
    let (a, b, c) = (node(), node(), node());
    let mut s = Sim::new(11, 1, None);
    start(&mut s, 1, 101, &a);
    start(&mut s, 2, 102, &b);
    start(&mut s, 3, 103, &c);
    s.run(MAX);
    send(&mut s, 1, Op::Mkdir { path: "d".into() });
    send(&mut s, 1, Op::Create { path: "d/old".into() });
    s.run(MAX);
    s.partition(&[&[1, 2], &[3]]);
    s.run(MAX);
    send(&mut s, 1, Op::Create { path: "during.txt".into() });
    send(&mut s, 1, Op::Write { path: "during.txt".into(), offset: 0, data: b"x".to_vec(), truncate: true });
    send(&mut s, 2, Op::Delete { path: "d/old".into() });
    s.run(MAX);
    assert!(c.db.tree().lookup("during.txt").is_none());
    s.heal();
    s.run(MAX);
    assert!(c.db.tree().lookup("d/old").is_none(), "the follower drops what the leader deleted");
    assert_eq!(c.db.tree().read("during.txt").unwrap()[..], b"x"[..]);
    assert_converged(&s, &[&a, &b, &c]);
}

#[test]
fn restarted_node_with_an_older_database_catches_up() {
    let (a, b) = (node(), node());
    let mut s = Sim::new(3, 1, None);
    start(&mut s, 1, 101, &a);
    s.run(MAX);
    for i in 0..20 {
        send(&mut s, 1, Op::Create { path: format!("f{i}") });
    }
    s.run(MAX);
    start(&mut s, 2, 102, &b);
    s.run(MAX);
    assert_eq!(b.db.tree().len(), 21);
    assert_converged(&s, &[&a, &b]);
}

#[test]
fn unlock_request_removes_only_an_expired_lock() {
    let (a, b) = (node(), node());
    let mut s = Sim::new(5, 1, None);
    start(&mut s, 1, 101, &a);
    start(&mut s, 2, 102, &b);
    s.run(MAX);
    for p in ["priv", "priv/lock", "priv/lock/job"] {
        send(&mut s, 1, Op::Mkdir { path: p.into() });
    }
    s.run(MAX);
    let csum = b.db.tree().lock_csum("priv/lock/job").unwrap();
    let payload = crate::dcdb::encode_unlock("priv/lock/job", csum);
    s.request(2, pmxcfs_dfsm::wire::dcdb::DcdbSubtype::UnlockRequest as u16, &payload, false);
    s.run(MAX);
    assert!(a.db.tree().lookup("priv/lock/job").is_some(), "a fresh lock stays");
    // pretend node 1 (lowest nodeid) has seen this lock for more than 120 s
    a.db.with_tree_mut(|t| t.locks.reset("priv/lock/job", 1, csum));
    s.request(2, pmxcfs_dfsm::wire::dcdb::DcdbSubtype::UnlockRequest as u16, &payload, false);
    s.run(MAX);
    assert!(a.db.tree().lookup("priv/lock/job").is_none());
    assert!(b.db.tree().lookup("priv/lock/job").is_none(), "every node deletes it");
    assert_converged(&s, &[&a, &b]);
}

mod kvstore_group {
    use std::path::Path;
    use std::sync::Arc;

    use pmxcfs_dfsm::sim::Sim;
    use pmxcfs_dfsm::Mode;

    use crate::kvstore::{update_payload, KvstoreApp, KvstoreHost};
    use pmxcfs_status::node::{ClusterInfo, ClusterNode, Status};

    fn status(name: &str) -> Arc<Status> {
        let s = Arc::new(Status::new(name, Path::new("/nonexistent-rrd"), None, 1_795_000_000));
        s.set_cluster_info(ClusterInfo {
            name: "c".into(),
            config_version: 1,
            nodes: (1..=3).map(|i| ClusterNode { name: format!("node{i}"), nodeid: i, votes: 1, online: false }).collect(),
        });
        s
    }

    #[test]
    fn kv_updates_logs_and_nodeips_reach_every_member() {
        let st: Vec<Arc<Status>> = (1..=3).map(|i| status(&format!("node{i}"))).collect();
        let mut s = Sim::new(9, 0, None);
        for i in 0..3u32 {
            s.start_hosted(i + 1, 200 + i, KvstoreApp::new(st[i as usize].clone(), format!("10.0.0.{}", i + 1)), Box::new(KvstoreHost { status: st[i as usize].clone() }));
        }
        s.run(200_000);
        for i in 1..=3 {
            assert_eq!(s.mode(i), Some(Mode::Synced));
        }
        // node2 publishes kv/golden (applied locally first, then multicast)
        st[1].set_local("kv/golden", b"hello from node2\0").unwrap();
        s.request(2, 1, &update_payload("kv/golden", b"hello from node2\0").unwrap(), false);
        // node3 logs a cluster log entry
        let e = st[2].tables.lock().clusterlog.add(b"node3", b"golden-ident", b"golden-tag", 42, 1_795_000_100, 6, b"hello log").unwrap();
        s.request(3, 3, &e.encode(), false);
        s.run(200_000);
        assert_eq!(st[0].tables.lock().store.get("node2", "kv/golden").unwrap(), b"hello from node2\0");
        let log = String::from_utf8(st[0].tables.lock().clusterlog.dump_json(None, 50)).unwrap();
        assert!(log.contains("hello log"), "{log}");
        let members = st[0].members_text();
        assert!(members.contains("\"node3\": { \"id\": 3, \"online\": 1, \"ip\": \"10.0.0.3\"}"), "{members}");
    }

    #[test]
    fn a_restarted_node_gets_the_merged_cluster_log() {
        let st: Vec<Arc<Status>> = (1..=2).map(|i| status(&format!("node{i}"))).collect();
        let mut s = Sim::new(4, 0, None);
        s.start_hosted(1, 300, KvstoreApp::new(st[0].clone(), "10.0.0.1".into()), Box::new(KvstoreHost { status: st[0].clone() }));
        s.run(100_000);
        st[0].tables.lock().clusterlog.add(b"node1", b"root", b"t", 1, 1_795_000_200, 6, b"before node2 came").unwrap();
        s.start_hosted(2, 301, KvstoreApp::new(st[1].clone(), "10.0.0.2".into()), Box::new(KvstoreHost { status: st[1].clone() }));
        s.run(200_000);
        let log = String::from_utf8(st[1].tables.lock().clusterlog.dump_json(None, 50)).unwrap();
        assert!(log.contains("before node2 came"), "{log}");
    }
}
