//! The DFSM core stepped by hand, without the simulator.
//!
//! The DFSM core stepped by hand (no simulator): queue resend after a
//! membership change, queue ordering by count, and a comparison of the
//! message types the core sends with the golden traces of the original.

mod common;

use pmxcfs_dfsm::sim::{Sim, TraceKind};
use pmxcfs_dfsm::testapp::{set_payload, KvDb, TestApp, OP_SET};
use pmxcfs_dfsm::wire::frame::encode_normal;
use pmxcfs_dfsm::wire::{BaseHeader, Frame};
use pmxcfs_dfsm::{Action, Config, Dfsm, MemberId, Mode, Outcome};

const A: MemberId = MemberId::new(1, 100);
const B: MemberId = MemberId::new(2, 200);
const C: MemberId = MemberId::new(3, 300);

fn node(id: MemberId) -> Dfsm<TestApp> {
    Dfsm::new(
        Config {
            local: id,
            protocol_version: 1,
            verify_interval: None,
        },
        TestApp::new(),
    )
}

fn multicasts(acts: &[Action]) -> Vec<Vec<u8>> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Multicast { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn queued_own_messages_are_resent_byte_for_byte_after_a_join() {
    let mut b = node(B);
    b.confchg(10, &[A, B], &[], &[B]);
    assert_eq!(b.mode(), Mode::StartSync);
    // b sends while syncing; its own copy comes back and is queued
    let (count, acts) = b.send_message(11, OP_SET, &set_payload("k", "v"), true);
    let sent = multicasts(&acts).remove(0);
    b.deliver(11, B, &sent);
    // a message of A is queued too
    let from_a = encode_normal(1, OP_SET, 11, 7, &set_payload("a", "1"));
    b.deliver(11, A, &from_a);
    assert_eq!(b.queued(), (2, 0));
    // C joins before the sync finished: b resends only its own message,
    // with the original header (same count and time), and drops the queue
    let acts = b.confchg(20, &[A, B, C], &[], &[C]);
    let resent = multicasts(&acts);
    assert_eq!(resent, vec![sent.clone()]);
    assert_eq!(b.queued(), (0, 0));
    assert!(matches!(
        Frame::decode(&resent[0]).unwrap(),
        Frame::Normal { count: c, .. } if c == count
    ));
    assert_eq!(b.msgcount(), 1, "a resend consumes no count");
}

#[test]
fn no_resend_when_members_only_left() {
    let mut b = node(B);
    b.confchg(10, &[A, B, C], &[], &[B]);
    let (_, acts) = b.send_message(11, OP_SET, &set_payload("k", "v"), true);
    b.deliver(11, B, &multicasts(&acts)[0]);
    let acts = b.confchg(12, &[A, B], &[C], &[]);
    // no joiner: nothing is resent (and B is not lowest, so no SYNC_START)
    assert!(multicasts(&acts).is_empty());
    assert_eq!(b.queued(), (1, 0));
}

#[test]
fn queue_is_applied_in_count_order_once_synced() {
    let mut b = node(B);
    b.confchg(10, &[A, B], &[], &[B]);
    for (sender, count, key) in [(A, 5, "a5"), (A, 2, "a2"), (B, 3, "b3")] {
        let m = encode_normal(1, OP_SET, 11, count, &set_payload(key, "x"));
        b.deliver(11, sender, &m);
    }
    // finish a sync round where both states are equal: A coordinates
    let sync_start = pmxcfs_dfsm::wire::frame::encode_state(
        1,
        pmxcfs_dfsm::wire::MessageType::SyncStart,
        12,
        pmxcfs_dfsm::wire::Epoch {
            epoch: 1,
            time: 12,
            nodeid: 1,
            pid: 100,
        },
        &[],
    );
    let acts = b.deliver(12, A, &sync_start);
    let my_state = multicasts(&acts).remove(0);
    let Frame::State { epoch, payload, .. } = Frame::decode(&my_state).unwrap() else {
        panic!()
    };
    let a_state = pmxcfs_dfsm::wire::frame::encode_state(
        1,
        pmxcfs_dfsm::wire::MessageType::State,
        12,
        epoch,
        payload,
    );
    b.deliver(12, A, &a_state);
    b.deliver(12, B, &my_state);
    assert_eq!(b.mode(), Mode::Synced);
    let order: Vec<u64> = b.app().applied.iter().map(|x| x.count).collect();
    assert_eq!(order, vec![2, 3, 5]);
    // B's own count 3 was never registered as waiting: no answer needed
    assert_eq!(b.queued(), (0, 0));
}

#[test]
fn aborted_waiters_on_restart() {
    let mut a = node(A);
    a.confchg(1, &[A, B], &[], &[A]);
    let (c, _) = a.send_message(2, OP_SET, &set_payload("k", "v"), true);
    let acts = a.restart(3).unwrap();
    assert!(acts.contains(&Action::Answer {
        count: c,
        outcome: Outcome::Aborted
    }));
    assert_eq!(a.mode(), Mode::Start);
}

// ----- comparison with the golden traces -----------------------------------

/// Normalized per-node sequence of sync events in the dcdb group:
/// `C<n>` for a confchg with n members, the state message types sent, runs
/// of UPDATE collapsed to one, and retried sends (send_failed) dropped.
fn golden_sequence(file: &str) -> Vec<String> {
    let recs = common::load(file);
    let mut out: Vec<String> = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        if r.group != "pve_dcdb_v1" {
            continue;
        }
        match r.dir.as_str() {
            "confchg" => out.push(format!("C{}", r.len)),
            "send" => {
                let retried = recs[i + 1..]
                    .iter()
                    .find(|n| n.group == r.group)
                    .is_some_and(|n| n.dir == "send_failed");
                if retried {
                    continue;
                }
                let h = BaseHeader::decode(r.bytes.as_deref().unwrap()).unwrap();
                if h.msg_type != 0 {
                    push_type(&mut out, h.msg_type);
                }
            }
            _ => {}
        }
    }
    out
}

fn push_type(out: &mut Vec<String>, t: u16) {
    let s = format!("T{t}");
    if t == 3 && out.last() == Some(&s) {
        return;
    }
    out.push(s);
}

fn sim_sequence(s: &Sim<TestApp>, nodeid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for t in s.trace_of(nodeid) {
        match &t.kind {
            TraceKind::Confchg { members } if members.contains(&t.node) => {
                out.push(format!("C{}", members.len()))
            }
            TraceKind::Send { msg_type, .. } if *msg_type != 0 => push_type(&mut out, *msg_type),
            _ => {}
        }
    }
    out
}

#[test]
fn sync_rounds_match_the_golden_three_node_scenario() {
    for seed in 0..10 {
        let mut s: Sim<TestApp> = Sim::new(seed, 1, None);
        let big = KvDb {
            version: 31,
            mtime: 5,
            ..KvDb::default()
        };
        let small = KvDb {
            version: 3,
            mtime: 4,
            ..KvDb::default()
        };
        // 01 startup: node1 (larger DB), then node2, then node3
        s.start(1, 23636, TestApp::with_db(big));
        s.run(10_000);
        s.start(2, 23677, TestApp::with_db(small.clone()));
        s.run(10_000);
        s.start(3, 23718, TestApp::with_db(small));
        s.run(10_000);
        // 03..10 writes from node1 and node2
        for i in 0..5 {
            s.request(1 + i % 2, OP_SET, &set_payload(&format!("f{i}"), "x"), true);
        }
        s.run(10_000);
        // 11 partition 1,2 | 3; 12 writes on node1
        s.partition(&[&[1, 2], &[3]]);
        s.run(10_000);
        s.request(1, OP_SET, &set_payload("during", "x"), true);
        s.run(10_000);
        // 13 heal
        s.heal();
        s.run(10_000);
        // 14 restart node2's daemon; node1 writes meanwhile
        let app2 = s.stop(2).unwrap();
        s.run(10_000);
        s.request(1, OP_SET, &set_payload("while-node2-down", "x"), true);
        s.run(10_000);
        s.start(2, 24545, TestApp::with_db(app2.db));
        s.run(10_000);
        // 17 shutdown node1, node2 (node3 ends alone)
        s.stop(1);
        s.run(10_000);
        let sim2 = sim_sequence(&s, 2);
        s.stop(2);
        s.run(10_000);
        let sim1: Vec<String> = sim_sequence(&s, 1);
        let sim3 = sim_sequence(&s, 3);

        let g1 = golden_sequence("node1.tsv");
        let g2 = golden_sequence("node2.tsv");
        let g3 = golden_sequence("node3.tsv");
        let head: Vec<&str> = g1.iter().take(7).map(String::as_str).collect();
        assert_eq!(head, ["C1", "C2", "T1", "T2", "T3", "T4", "C3"]);
        assert_eq!(g1.len(), 29);
        assert_eq!(sim1, g1, "node1, seed {seed}");
        assert_eq!(sim2, g2, "node2, seed {seed}");
        assert_eq!(sim3, g3, "node3, seed {seed}");
        assert_eq!(s.mode(3), Some(Mode::Synced));
    }
}
