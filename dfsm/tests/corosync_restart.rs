//! Restarted DFSM processes and restarted corosync daemons over REAL
//! corosync. Needs root.

mod corosync_support;

use std::time::{Duration, Instant};

use corosync_support::{helper_entry, wait_for, Cluster};

const T: Duration = Duration::from_secs(40);

/// Entry point of the node helper processes (no-op in a normal run).
#[test]
fn corosync_node_helper() {
    helper_entry();
}

#[test]
fn corosync_restarted_member_resyncs() {
    let mut c = Cluster::up("s", 64, 3);
    for i in 1..=3 {
        c.start_node(i);
    }
    c.wait_synced(&[1, 2, 3], T);
    assert_eq!(c.cmd(1, "put a 1"), "put 0");

    c.stop_node(2); // clean leave + finalize
    c.wait_synced(&[1, 3], T);
    assert_eq!(c.cmd(1, "put while-down yes"), "put 0");
    assert_eq!(c.cmd(3, "put k3 v3"), "put 0");

    c.start_node(2); // new pid, empty database
    c.wait_synced(&[1, 2, 3], T);
    let d = c.wait_same(&[1, 2, 3], "digest", T);
    assert!(d.contains(" v=3 n=3"), "{d}");
    assert_eq!(c.cmd(2, "get while-down"), "get yes");
    assert_eq!(c.cmd(2, "get k3"), "get v3");
    assert_eq!(c.cmd(2, "put back again"), "put 0");
    c.wait_same(&[1, 2, 3], "get back", T);
}

#[test]
fn corosync_member_reconnects_after_its_corosync_restarts() {
    let mut c = Cluster::up("k", 65, 3);
    for i in 1..=3 {
        c.start_node(i);
    }
    c.wait_synced(&[1, 2, 3], T);

    c.sh_ok(&["kill", "3"]); // SIGKILL node 3's corosync
    c.wait_reply(3, "mode", "mode Synced joined=false", T);
    assert_eq!(c.cmd(3, "put nope 1"), "put err notconnected");
    c.wait_reply(3, "quorate", "quorate no", T);
    c.wait_synced(&[1, 2], T);
    assert_eq!(c.cmd(1, "put after-kill 1"), "put 0");

    c.sh_ok(&["start", "3"]);
    c.wait_synced(&[1, 2, 3], T);
    c.wait_reply(3, "quorate", "quorate yes", T);
    c.wait_same(&[1, 2, 3], "digest", T);
    assert_eq!(c.cmd(3, "get after-kill"), "get 1");
}

#[test]
fn corosync_member_with_diverged_checksum_leaves_and_rejoins_after_5s() {
    let mut c = Cluster::up("v", 66, 3);
    // node 1 (lowest nodeid) sends VERIFY_REQUEST every 2 s
    c.node_env.push(("DFSM_VERIFY".into(), "2".into()));
    for i in 1..=3 {
        c.start_node(i);
    }
    c.wait_synced(&[1, 2, 3], T);
    assert_eq!(c.cmd(1, "put a 1"), "put 0");

    // node 3 computes a wrong checksum: on the next VERIFY it leaves
    assert_eq!(c.cmd(3, "corrupt on"), "corrupt on");
    wait_for(T, "node 3 left the group", || {
        let m = c.cmd(3, "mode");
        if m == "mode Leave joined=false" {
            Ok(())
        } else {
            Err(m)
        }
    });
    let left_at = Instant::now();
    assert_eq!(c.cmd(3, "corrupt off"), "corrupt off");
    c.wait_synced(&[1, 2], T);
    assert_eq!(c.cmd(3, "put x 1"), "put err notconnected");

    // it re-initializes and rejoins more than 5 s later, then resyncs
    c.wait_synced(&[1, 2, 3], T);
    let gap = left_at.elapsed();
    assert!(gap >= Duration::from_millis(4500), "rejoined after {gap:?}");
    assert_eq!(c.cmd(2, "put b 2"), "put 0");
    c.wait_same(&[1, 2, 3], "digest", T);
    assert_eq!(c.cmd(3, "get b"), "get 2");
}
