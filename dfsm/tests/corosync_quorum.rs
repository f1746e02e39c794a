//! Quorum loss and partition merge over REAL corosync. Needs root.

mod corosync_support;

use std::time::Duration;

use corosync_support::{helper_entry, Cluster};

const T: Duration = Duration::from_secs(40);

/// Entry point of the node helper processes (no-op in a normal run).
#[test]
fn corosync_node_helper() {
    helper_entry();
}

#[test]
fn corosync_partitioned_node_loses_quorum_and_rejoins() {
    let mut c = Cluster::up("q", 63, 3);
    for i in 1..=3 {
        c.start_node(i);
    }
    c.wait_synced(&[1, 2, 3], T);
    for i in 1..=3 {
        c.wait_reply(i, "quorate", "quorate yes", T);
    }
    assert_eq!(c.cmd(2, "put before x"), "put 0");
    c.wait_same(&[1, 2, 3], "digest", T);

    c.sh_ok(&["partition", "1,2", "3"]);
    c.wait_reply(3, "quorate", "quorate no", T);
    c.wait_synced(&[3], T);
    c.wait_synced(&[1, 2], T);
    assert_eq!(c.cmd(1, "quorate"), "quorate yes");
    assert_eq!(c.cmd(2, "quorate"), "quorate yes");

    // both sides write; the majority side has the higher version
    assert_eq!(c.cmd(1, "put during a"), "put 0");
    assert_eq!(c.cmd(2, "put during2 b"), "put 0");
    assert_eq!(c.cmd(3, "put lonely c"), "put 0");
    assert_eq!(c.cmd(3, "get during"), "get -");

    c.sh_ok(&["heal"]);
    c.wait_reply(3, "quorate", "quorate yes", T);
    c.wait_synced(&[1, 2, 3], T);
    let d = c.wait_same(&[1, 2, 3], "digest", T);
    assert!(d.contains(" v=3 "), "{d}");
    assert_eq!(c.cmd(3, "get during"), "get a");
    assert_eq!(c.cmd(3, "get during2"), "get b");
    // the minority's write lost against the leader's state
    assert_eq!(c.cmd(3, "get lonely"), "get -");
    assert_eq!(c.cmd(1, "get lonely"), "get -");
}
