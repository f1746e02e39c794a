//! Cluster mode over REAL corosync (../shared/harness/cluster.sh): three pmxcfs-ng nodes in
//! network namespaces replicate the tree, a partitioned node turns read-only and catches up
//! after the heal, a restarted daemon resyncs. Needs root; cleans up in Drop.

mod common;

use common::qb::{in_netns, QbClient};
use common::cluster::*;
use common::*;
use pmxcfs_ipc::protocol::build;

#[test]
fn corosync_cluster_replicates_turns_read_only_without_quorum_and_resyncs() {
    let mut c = Cluster::up(3);
    // 1. a write on node1 is visible on every node
    write_retry(&c.nodes[0].p("replicated.cfg"), b"from node1\n");
    for n in &c.nodes {
        let p = n.p("replicated.cfg");
        wait_for(&format!("replicated.cfg on node{}", n.id), 15, || std::fs::read(&p).map(|d| d == b"from node1\n").unwrap_or(false));
    }
    std::fs::create_dir(c.nodes[1].p("dir-from-node2")).unwrap();
    let members: serde_json::Value = serde_json::from_slice(&std::fs::read(c.nodes[2].p(".members")).unwrap()).unwrap();
    assert_eq!(members["cluster"]["name"], "ngtest", "{members}");
    wait_for("node3 sees node2's directory", 15, || c.nodes[2].p("dir-from-node2").is_dir());

    // kvstore: a status value set through IPC on node2 reaches node1; so does a cluster log line
    let prefix = c.env.iter().find(|(k, _)| k == "CORO_PREFIX").unwrap().1.clone();
    let ipc_name = "pve2".to_string();
    let (n2, n1) = (format!("{prefix}2"), format!("{prefix}1"));
    let name = ipc_name.clone();
    in_netns(&n2, move || {
        let q = QbClient::connect(&name);
        assert_eq!(q.call(&build::set_status(b"kv/golden", b"hello from node2\0")).0, 0);
        assert_eq!(q.call(&build::log_cluster_msg(6, b"golden-ident", b"golden-tag", b"log line from node2")).0, 0);
    });
    wait_for("node1 sees node2's kv/golden and log line", 15, move || {
        let name = ipc_name.clone();
        in_netns(&n1, move || {
            let q = QbClient::connect(&name);
            let (e, v) = q.call(&build::get_status(b"kv/golden", b"node2"));
            let (_, log) = q.call(&build::get_cluster_log(50, b""));
            e == 0 && v == b"hello from node2\0" && String::from_utf8_lossy(&log).contains("log line from node2")
        })
    });

    // 2. partition node3 away: it loses quorum, turns read-only, writes fail with EACCES
    c.sh_ok(&["partition", "1,2", "3"]);
    let p3 = c.nodes[2].p("replicated.cfg");
    wait_for("node3 read-only (0440)", 30, || {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&p3).map(|m| m.permissions().mode() & 0o777 == 0o440).unwrap_or(false)
    });
    let e = std::fs::write(c.nodes[2].p("refused.cfg"), b"x").unwrap_err();
    assert_eq!(errno(&e), libc::EACCES);
    write_retry(&c.nodes[0].p("during-partition.cfg"), b"quorate side\n");

    // 3. heal: node3 catches up
    c.sh_ok(&["heal"]);
    let p = c.nodes[2].p("during-partition.cfg");
    wait_for("node3 resynced after heal", 40, || std::fs::read(&p).map(|d| d == b"quorate side\n").unwrap_or(false));
    assert!(!c.nodes[2].p("refused.cfg").exists());

    // 4. restart node2's daemon while node1 writes; it resyncs from the leader
    c.stop_daemon(1);
    write_retry(&c.nodes[0].p("while-node2-down.cfg"), b"x\n");
    c.start_daemon(1);
    let p = c.nodes[1].p("while-node2-down.cfg");
    wait_for("node2 resynced after restart", 40, || p.exists());

    // every node has the same tree
    let snaps: Vec<_> = c.nodes.iter().map(|n| snapshot(&n.mnt())).collect();
    assert_eq!(snaps[0], snaps[1], "node1 vs node2\n{}", c.nodes[1].log());
    assert_eq!(snaps[0], snaps[2], "node1 vs node3\n{}", c.nodes[2].log());
}
