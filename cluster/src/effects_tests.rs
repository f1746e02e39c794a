//! The dcdb steps on the simulated CPG return their I/O as effects: nothing is written to
//! `config.db` or to the host's corosync.conf until the host performs them.

use pmxcfs_backend::{Database, DatabaseOptions, Op};
use pmxcfs_dfsm::sim::Sim;
use pmxcfs_dfsm::{EffectHost, Mode};

use crate::dcdb::{encode_op, DcdbApp, DcdbEffect, DcdbHost};
use crate::sim_tests::{app, node, Node};

const MAX: usize = 200_000;

fn send(s: &mut Sim<DcdbApp>, node: u32, op: Op) {
    let (subtype, payload) = encode_op(&op).unwrap();
    s.request(node, subtype, &payload, false);
}

fn effects(s: &mut Sim<DcdbApp>, nodeid: u32) -> Vec<DcdbEffect> {
    s.dfsm_mut(nodeid).unwrap().take_effects()
}

/// What a fresh open of the node's `config.db` holds at `path`.
fn on_disk(n: &Node, path: &str) -> Option<Vec<u8>> {
    let db = Database::open(&n._dir.path().join("config.db"), DatabaseOptions::default()).unwrap();
    let found = db.tree().read(path).ok().map(|d| d.to_vec());
    found
}

#[test]
fn a_corosync_conf_change_is_an_effect_and_the_host_file_is_written_only_by_the_host() {
    let (a, b) = (node(), node());
    let mut s = Sim::new(3, 1, None);
    s.start(1, 101, app(&a));
    s.start(2, 102, app(&b));
    s.run(MAX);
    assert_eq!(s.mode(2), Some(Mode::Synced));
    assert_eq!(effects(&mut s, 2), [], "equal trees: no resync, nothing to do");
    let transactions = b.db.stats().store_transactions;

    send(&mut s, 1, Op::Create { path: "corosync.conf".into() });
    send(&mut s, 1, Op::Write { path: "corosync.conf".into(), offset: 0, data: b"totem {\n  config_version: 2\n}\n".to_vec(), truncate: true });
    send(&mut s, 1, Op::Mkdir { path: "nodes".into() });
    s.run(MAX);

    // applied in RAM, in delivery order; the I/O is left to the host
    assert_eq!(b.db.tree().read("corosync.conf").unwrap()[..], b"totem {\n  config_version: 2\n}\n"[..]);
    let host_conf = b._dir.path().join("etc/corosync/corosync.conf");
    let queued = effects(&mut s, 2);
    assert_eq!(queued, [DcdbEffect::SyncCorosyncConf, DcdbEffect::SyncCorosyncConf], "create and write of corosync.conf, not the mkdir");
    assert!(!host_conf.exists(), "the step wrote no file");
    assert_eq!(b.db.stats().store_transactions, transactions, "the step wrote no store transaction");
    assert_eq!(on_disk(&b, "corosync.conf"), None);

    DcdbHost { db: b.db.clone(), host_corosync_conf: Some(host_conf.clone()) }.perform(queued).unwrap();
    assert_eq!(std::fs::read(&host_conf).unwrap(), b"totem {\n  config_version: 2\n}\n");
}

#[test]
fn a_resync_replaces_the_tree_in_ram_and_its_store_transaction_is_an_effect() {
    let (a, b) = (node(), node());
    let mut s = Sim::new(5, 1, None);
    s.start(1, 101, app(&a));
    s.run(MAX);
    send(&mut s, 1, Op::Mkdir { path: "only-on-a".into() });
    s.run(MAX);
    effects(&mut s, 1);

    s.start(2, 102, app(&b));
    s.run(MAX);
    assert_eq!(s.mode(2), Some(Mode::Synced));
    assert!(b.db.tree().lookup("only-on-a").is_some(), "node 2 took the leader's tree");
    let transactions = b.db.stats().store_transactions;
    let queued = effects(&mut s, 2);
    assert_eq!(queued, [DcdbEffect::PersistResync, DcdbEffect::SyncCorosyncConf]);
    assert_eq!(b.db.stats().store_transactions, transactions, "the step wrote no store transaction");
    assert!(Database::open(&b._dir.path().join("config.db"), DatabaseOptions::default()).unwrap().tree().lookup("only-on-a").is_none());

    DcdbHost { db: b.db.clone(), host_corosync_conf: None }.perform(queued).unwrap();
    assert_eq!(b.db.stats().store_transactions, transactions + 1, "one store transaction for the whole resync");
    let reloaded = Database::open(&b._dir.path().join("config.db"), DatabaseOptions::default()).unwrap();
    assert_eq!(reloaded.tree().checksum(), a.db.tree().checksum(), "config.db holds the leader's tree");
}
