//! The DFSM over REAL corosync (3 nodes in network namespaces, see
//! `shared/harness/`): replication, total order, verify, cmap. Needs root.

mod corosync_support;

use std::time::Duration;

use corosync_support::{helper_entry, wait_for, Cluster};

const T: Duration = Duration::from_secs(40);

/// Entry point of the node helper processes (no-op in a normal run).
#[test]
fn corosync_node_helper() {
    helper_entry();
}

#[test]
fn corosync_three_nodes_replicate_testapp_writes_in_total_order() {
    let mut c = Cluster::up("r", 61, 3);
    // periodic VERIFY every 2 s exercises VERIFY_REQUEST/VERIFY for real
    c.node_env.push(("DFSM_VERIFY".into(), "2".into()));
    for i in 1..=3 {
        c.start_node(i);
    }
    c.wait_synced(&[1, 2, 3], T);
    // joined as the original does: cpg_name.length counts the NUL (12)
    let groups = c.sh_ok(&["exec", "1", "corosync-cpgtool"]);
    assert!(groups.contains("pve_dcdb_v1\\x00"), "{groups}");

    // one write, applied on the writer before send returns, then everywhere
    assert_eq!(c.cmd(2, "put hello world"), "put 0");
    assert_eq!(c.cmd(2, "get hello"), "get world");
    c.wait_same(&[1, 2, 3], "get hello", T);
    assert_eq!(c.cmd(3, "get hello"), "get world");

    // concurrent writers on every node (4 threads each), half of them to
    // the same key: every node must apply the same sequence
    for i in 1..=3 {
        c.node(i).send("burst b 40 4");
    }
    for i in 1..=3 {
        assert_eq!(c.node(i).recv(T), "burst ok=160 bad=0", "node {i}");
    }
    let applied = c.wait_same(&[1, 2, 3], "applied", T);
    assert!(applied.starts_with("applied 481 "), "{applied}");
    let digest = c.wait_same(&[1, 2, 3], "digest", T);
    assert!(digest.contains(" v=481 "), "{digest}");

    // several verify rounds later everybody is still in sync
    std::thread::sleep(Duration::from_secs(5));
    c.wait_synced(&[1, 2, 3], Duration::from_secs(5));
    assert_eq!(c.wait_same(&[1, 2, 3], "digest", T), digest);
}

#[test]
fn corosync_cmap_reports_cluster_name_and_nodelist_and_quorum_is_tracked() {
    let mut c = Cluster::up("m", 62, 3);
    c.start_node(2);
    let info = wait_for(T, "cmap cluster info", || {
        let r = c.cmd(2, "cluster");
        if r.starts_with("cluster dfsmtest ") {
            Ok(r)
        } else {
            Err(r)
        }
    });
    // harness config: no config_version, names node1..3, nodeids 1..3,
    // no quorum_votes
    assert_eq!(info, "cluster dfsmtest 0 1:node1:0,2:node2:0,3:node3:0");
    c.wait_reply(2, "quorate", "quorate yes", T);
    let pid = c.pid(2);
    assert_eq!(c.cmd(2, "local"), format!("local 2/{pid}"));
    c.wait_synced(&[2], T);
}
