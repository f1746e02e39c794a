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

/// `.members` lists every node of the cluster online with its own address.
fn all_online_with_ip(c: &Cluster, m: &serde_json::Value) -> bool {
    (1..=c.nodes.len() as u32).all(|id| {
        let n = &m["nodelist"][format!("node{id}")];
        n["online"] == 1 && n["ip"] == c.ip(id).as_str()
    })
}

#[test]
fn a_node_without_database_imports_corosync_conf_joins_and_members_end_right_with_late_cmap() {
    // node3 has no database, only etc/corosync/corosync.conf (what `pvecm add` leaves);
    // node2's cmap answer comes seconds after its first kvstore membership
    let mut c = Cluster::prepared(3, &[3]);
    c.nodes[1].extra = vec!["--cmap-delay".into(), "3000".into()];
    c.start_daemon(0);
    c.start_daemon(1);
    // names as long as the original takes them, through the CPG door
    let names = ["l".repeat(300), "m".repeat(1000)];
    for n in &names {
        write_retry(&c.nodes[0].p(n), n.len().to_string().as_bytes());
    }
    for n in &names {
        let p = c.nodes[1].p(n);
        wait_for("node2 has the long names", 20, || std::fs::read(&p).map(|d| d == n.len().to_string().as_bytes()).unwrap_or(false));
    }
    wait_for("node2 (late cmap) shows node1 and node2 online", 30, || {
        let m = c.members(1);
        (1..=2).all(|id| m["nodelist"][format!("node{id}")]["online"] == 1)
    });

    c.start_daemon(2);
    for n in &names {
        let p = c.nodes[2].p(n);
        wait_for("node3 synced the long names", 40, || std::fs::read(&p).map(|d| d == n.len().to_string().as_bytes()).unwrap_or(false));
    }
    let log3 = c.nodes[2].log();
    assert!(log3.contains("imported") && !log3.contains("using local mode"), "{log3}");
    write_retry(&c.nodes[2].p("from-node3.cfg"), b"3\n");
    let p = c.nodes[0].p("from-node3.cfg");
    wait_for("node1 sees node3's write", 20, || p.exists());

    // every node shows every node online, each with its ip (its own included)
    for i in 0..3 {
        wait_for(&format!("node{} .members: all online with ip", i + 1), 30, || all_online_with_ip(&c, &c.members(i)));
    }
    // a restart with the late cmap answer while the others run ends right as well
    c.stop_daemon(1);
    c.start_daemon(1);
    wait_for("restarted node2 (late cmap): all online with ip", 40, || all_online_with_ip(&c, &c.members(1)));

    let snaps: Vec<_> = c.nodes.iter().map(|n| snapshot(&n.mnt())).collect();
    assert_eq!(snaps[0], snaps[2], "node1 vs node3\n{}", c.nodes[2].log());
    // the joined node's database holds the long names and passes `pmxcfs check`
    c.stop_daemon(2);
    let db = c.nodes[2].root.path().join("var/lib/pve-cluster/config.db");
    let out = std::process::Command::new(BIN).args(["check", "--db"]).arg(&db).output().unwrap();
    assert!(out.status.success(), "check:\n{}", String::from_utf8_lossy(&out.stdout));
}
