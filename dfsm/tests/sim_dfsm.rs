//! DFSM core behaviour on the simulated CPG, named after what a user of the
//! cluster would observe.

mod common;

use pmxcfs_dfsm::sim::{Sim, TraceKind};
use pmxcfs_dfsm::testapp::{set_payload, KvDb, TestApp, OP_DELETE, OP_SET};
use pmxcfs_dfsm::wire::frame::encode_normal;
use pmxcfs_dfsm::wire::{Epoch, MessageType};
use pmxcfs_dfsm::{MemberId, Mode, Outcome};

const PV: u32 = 1;
const MAX: usize = 100_000;

fn db_with(version: u64, mtime: u32, kv: &[(&str, &str)]) -> KvDb {
    KvDb {
        version,
        mtime,
        entries: kv
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
    }
}

fn sim(seed: u64) -> Sim<TestApp> {
    Sim::new(seed, PV, None)
}

fn set(s: &mut Sim<TestApp>, node: u32, k: &str, v: &str) -> u64 {
    s.request(node, OP_SET, &set_payload(k, v), true)
}

fn assert_all_synced_and_equal(s: &Sim<TestApp>) -> KvDb {
    let nodes = s.nodes();
    let first = s.app(nodes[0]).unwrap().db.clone();
    for n in nodes {
        assert_eq!(s.mode(n), Some(Mode::Synced), "node {n} not synced");
        assert_eq!(s.app(n).unwrap().db, first, "node {n} diverged");
    }
    first
}

/// Types of state messages a node sent, in order.
fn sent_state_types(s: &Sim<TestApp>, node: u32) -> Vec<u16> {
    s.trace_of(node)
        .iter()
        .filter_map(|t| match t.kind {
            TraceKind::Send { msg_type, .. } if msg_type != 0 => Some(msg_type),
            _ => None,
        })
        .collect()
}

#[test]
fn single_node_is_synced_alone_and_answers_its_own_writes() {
    let mut s = sim(1);
    s.start(1, 100, TestApp::new());
    s.run(MAX);
    assert_eq!(s.mode(1), Some(Mode::Synced));
    let c = set(&mut s, 1, "a", "1");
    s.run(MAX);
    assert_eq!(s.answer(1, c), Some(Outcome::Applied(0)));
    assert_eq!(s.app(1).unwrap().db.get("a"), Some(&b"1"[..]));
    assert_eq!(s.app(1).unwrap().synced_calls, 1);
}

#[test]
fn own_message_result_answers_waiting_caller() {
    let mut s = sim(2);
    s.start(1, 100, TestApp::new());
    s.start(2, 200, TestApp::new());
    s.run(MAX);
    let ok = set(&mut s, 2, "k", "v");
    let missing = s.request(2, OP_DELETE, b"nope", true);
    let fire_and_forget = s.request(1, OP_DELETE, b"k", false);
    s.run(MAX);
    assert_eq!(s.answer(2, ok), Some(Outcome::Applied(0)));
    assert_eq!(s.answer(2, missing), Some(Outcome::Applied(-2)));
    // nobody waits for a fire-and-forget message, and results stay local
    assert_eq!(s.answer(1, fire_and_forget), None);
    assert!(s.answers(1).is_empty());
    assert_all_synced_and_equal(&s);
}

#[test]
fn lowest_nodeid_sends_sync_start_and_every_member_sends_state() {
    let mut s = sim(3);
    s.start(2, 200, TestApp::with_db(db_with(5, 10, &[("x", "1")])));
    s.run(MAX);
    s.start(1, 100, TestApp::new());
    s.run(MAX);
    let ss = MessageType::SyncStart as u16;
    let st = MessageType::State as u16;
    assert_eq!(
        sent_state_types(&s, 1).iter().filter(|&&t| t == ss).count(),
        1
    );
    assert_eq!(
        sent_state_types(&s, 2).iter().filter(|&&t| t == ss).count(),
        0
    );
    for n in [1, 2] {
        assert_eq!(
            sent_state_types(&s, n).iter().filter(|&&t| t == st).count(),
            1
        );
    }
    // the data leader is node 2 (higher version), not the coordinator
    assert_eq!(
        sent_state_types(&s, 2),
        vec![
            st,
            MessageType::Update as u16,
            MessageType::UpdateComplete as u16
        ]
    );
    let db = assert_all_synced_and_equal(&s);
    assert_eq!(db.get("x"), Some(&b"1"[..]));
}

#[test]
fn leader_with_highest_version_sends_updates() {
    for seed in 0..10 {
        let mut s = sim(seed);
        s.start(1, 100, TestApp::with_db(db_with(3, 50, &[("a", "old")])));
        s.start(2, 200, TestApp::with_db(db_with(9, 10, &[("a", "new")])));
        s.start(3, 300, TestApp::with_db(db_with(3, 50, &[("a", "old")])));
        s.run(MAX);
        let db = assert_all_synced_and_equal(&s);
        assert_eq!(db.version, 9);
        assert_eq!(db.get("a"), Some(&b"new"[..]));
        let upd = MessageType::Update as u16;
        assert!(sent_state_types(&s, 2).contains(&upd), "seed {seed}");
        assert!(!sent_state_types(&s, 1).contains(&upd), "seed {seed}");
        assert!(!sent_state_types(&s, 3).contains(&upd), "seed {seed}");
    }
}

#[test]
fn equal_versions_leader_is_highest_mtime_then_lowest_member() {
    let mut s = sim(4);
    s.start(1, 100, TestApp::with_db(db_with(4, 10, &[("a", "1")])));
    s.start(2, 200, TestApp::with_db(db_with(4, 20, &[("a", "2")])));
    s.run(MAX);
    assert_eq!(assert_all_synced_and_equal(&s).get("a"), Some(&b"2"[..]));

    let mut s = sim(5);
    s.start(1, 100, TestApp::with_db(db_with(4, 10, &[("a", "1")])));
    s.start(2, 200, TestApp::with_db(db_with(4, 10, &[("a", "2")])));
    s.run(MAX);
    assert_eq!(assert_all_synced_and_equal(&s).get("a"), Some(&b"1"[..]));
}

#[test]
fn writes_during_a_resync_apply_in_the_same_order_everywhere() {
    for seed in 0..30 {
        let mut s = sim(seed);
        s.start(1, 100, TestApp::with_db(db_with(7, 1, &[("base", "1")])));
        s.start(2, 200, TestApp::new());
        s.run(MAX);
        // node 3 joins while nodes 1 and 2 keep writing
        s.start(3, 300, TestApp::new());
        let mut counts = Vec::new();
        for i in 0..6 {
            let n = 1 + (i % 2);
            counts.push((n, set(&mut s, n, &format!("k{i}"), &format!("v{i}"))));
            for _ in 0..s.rand_below(4) {
                s.step();
            }
        }
        s.run(MAX);
        let db = assert_all_synced_and_equal(&s);
        for i in 0..6 {
            assert_eq!(db.get(&format!("k{i}")), Some(format!("v{i}").as_bytes()));
        }
        for (n, c) in counts {
            assert_eq!(s.answer(n, c), Some(Outcome::Applied(0)), "seed {seed}");
        }
        // nodes that were synced all along applied the same sequence
        let a1 = &s.app(1).unwrap().applied;
        let a2 = &s.app(2).unwrap().applied;
        assert_eq!(a1, a2, "seed {seed}");
    }
}

#[test]
fn three_nodes_converge_after_partition_heal() {
    for seed in 0..20 {
        let mut s = sim(seed);
        for n in 1..=3 {
            s.start(n, n * 100, TestApp::new());
        }
        s.run(MAX);
        set(&mut s, 1, "before", "x");
        s.run(MAX);
        s.partition(&[&[1, 2], &[3]]);
        s.run(MAX);
        assert_eq!(s.mode(3), Some(Mode::Synced), "alone is synced");
        set(&mut s, 1, "majority", "1");
        set(&mut s, 2, "majority2", "2");
        set(&mut s, 3, "minority", "3");
        s.run(MAX);
        s.heal();
        s.run(MAX);
        let db = assert_all_synced_and_equal(&s);
        // highest version wins: the side with more writes
        assert_eq!(db.get("majority"), Some(&b"1"[..]));
        assert_eq!(db.get("majority2"), Some(&b"2"[..]));
        assert_eq!(db.get("minority"), None);
        assert_eq!(db.get("before"), Some(&b"x"[..]));
    }
}

#[test]
fn restarted_node_resyncs_from_leader() {
    let mut s = sim(6);
    for n in 1..=3 {
        s.start(n, n * 100, TestApp::new());
    }
    s.run(MAX);
    set(&mut s, 2, "a", "1");
    s.run(MAX);
    let old = s.stop(2).unwrap();
    s.run(MAX);
    set(&mut s, 1, "while-down", "y");
    s.run(MAX);
    // new process, same on-disk data, new pid; its counter starts at 1 again
    s.start(2, 201, TestApp::with_db(old.db));
    let c = set(&mut s, 2, "after", "z");
    assert_eq!(c, 1);
    s.run(MAX);
    let db = assert_all_synced_and_equal(&s);
    assert_eq!(db.get("while-down"), Some(&b"y"[..]));
    assert_eq!(db.get("after"), Some(&b"z"[..]));
    assert_eq!(s.answer(2, c), Some(Outcome::Applied(0)));
}

#[test]
fn crashed_node_is_dropped_and_survivors_keep_working() {
    let mut s = sim(7);
    for n in 1..=3 {
        s.start(n, n * 100, TestApp::new());
    }
    s.run(MAX);
    set(&mut s, 3, "a", "1");
    s.crash(1);
    let c = set(&mut s, 2, "b", "2");
    s.run(MAX);
    assert_eq!(s.answer(2, c), Some(Outcome::Applied(0)));
    let db = assert_all_synced_and_equal(&s);
    assert_eq!(db.get("b"), Some(&b"2"[..]));
    // node 2 is now the lowest nodeid and coordinated the resync
    let ss = MessageType::SyncStart as u16;
    assert!(sent_state_types(&s, 2).contains(&ss));
}

#[test]
fn newer_protocol_version_stops_the_node_for_good() {
    let mut s = sim(8);
    s.start(1, 100, TestApp::new());
    s.start(2, 200, TestApp::new());
    s.run(MAX);
    let bad = encode_normal(PV + 1, OP_SET, s.now(), 1, &set_payload("x", "y"));
    s.inject_multicast(1, MemberId::new(9, 9), bad);
    s.run(MAX);
    for n in [1, 2] {
        assert_eq!(s.mode(n), Some(Mode::VersionError));
        assert!(!s.dfsm(n).unwrap().restartable());
        assert!(s.app(n).unwrap().db.get("x").is_none());
    }
}

#[test]
fn older_protocol_version_is_ignored() {
    let mut s = sim(9);
    s.start(1, 100, TestApp::new());
    s.run(MAX);
    let old = encode_normal(PV - 1, OP_SET, s.now(), 1, &set_payload("x", "y"));
    s.inject(1, MemberId::new(1, 100), old);
    s.run(MAX);
    assert_eq!(s.mode(1), Some(Mode::Synced));
    assert!(s.app(1).unwrap().db.get("x").is_none());
}

#[test]
fn malformed_message_makes_node_leave_and_rejoin() {
    let mut s = sim(10);
    s.start(1, 100, TestApp::new());
    s.start(2, 200, TestApp::new());
    s.run(MAX);
    set(&mut s, 1, "a", "1");
    s.run(MAX);
    // unknown application subtype from a member: the receivers leave
    let bad = encode_normal(PV, 77, s.now(), 42, b"");
    s.inject(2, MemberId::new(1, 100), bad);
    s.run(MAX);
    let t2: Vec<_> = s.trace_of(2).iter().map(|t| t.kind.clone()).collect();
    assert!(t2.contains(&TraceKind::Mode(Mode::Leave)));
    assert!(t2.contains(&TraceKind::Leave));
    // ... and came back after the backoff, resynced
    let db = assert_all_synced_and_equal(&s);
    assert_eq!(db.get("a"), Some(&b"1"[..]));
}

#[test]
fn short_message_makes_node_leave() {
    let mut s = sim(11);
    s.start(1, 100, TestApp::new());
    s.run(MAX);
    // a NORMAL header with our protocol version but only 20 bytes long
    let mut short = vec![0u8; 20];
    short[4] = PV as u8;
    s.inject(1, MemberId::new(1, 100), short);
    s.run(MAX);
    let kinds: Vec<_> = s.trace_of(1).iter().map(|t| t.kind.clone()).collect();
    assert!(kinds.contains(&TraceKind::Mode(Mode::Leave)));
    assert_eq!(s.mode(1), Some(Mode::Synced));
}

#[test]
fn state_message_with_wrong_epoch_is_dropped() {
    let mut s = sim(12);
    s.start(1, 100, TestApp::new());
    s.start(2, 200, TestApp::new());
    s.run(MAX);
    let stale = Epoch {
        epoch: 999,
        time: 1,
        nodeid: 1,
        pid: 100,
    };
    let msg = pmxcfs_dfsm::wire::frame::encode_state(
        PV,
        MessageType::UpdateComplete,
        s.now(),
        stale,
        &[],
    );
    s.inject(2, MemberId::new(1, 100), msg);
    s.run(MAX);
    assert_eq!(s.mode(2), Some(Mode::Synced));
    assert!(!s
        .trace_of(2)
        .iter()
        .any(|t| t.kind == TraceKind::Mode(Mode::Leave)));
}

#[test]
fn hourly_verify_request_comes_from_lowest_nodeid_only() {
    let mut s: Sim<TestApp> = Sim::new(13, PV, Some(3600));
    for n in 1..=3 {
        s.start(n, n * 100, TestApp::new());
    }
    s.run(MAX);
    s.advance(3599);
    s.run(MAX);
    let vr = MessageType::VerifyRequest as u16;
    let vf = MessageType::Verify as u16;
    assert!(!sent_state_types(&s, 1).contains(&vr));
    s.advance(1);
    s.run(MAX);
    assert_eq!(
        sent_state_types(&s, 1).iter().filter(|&&t| t == vr).count(),
        1
    );
    assert_eq!(
        sent_state_types(&s, 1).iter().filter(|&&t| t == vf).count(),
        1
    );
    for n in [2, 3] {
        assert!(sent_state_types(&s, n).iter().all(|&t| t != vr && t != vf));
    }
    s.advance(3600);
    s.run(MAX);
    assert_eq!(
        sent_state_types(&s, 1).iter().filter(|&&t| t == vr).count(),
        2
    );
    assert_all_synced_and_equal(&s);
}

#[test]
fn node_with_wrong_checksum_leaves_and_resyncs_on_verify() {
    let mut s: Sim<TestApp> = Sim::new(14, PV, Some(3600));
    for n in 1..=3 {
        s.start(n, n * 100, TestApp::new());
    }
    s.run(MAX);
    s.dfsm_mut(3).unwrap().app_mut().corrupt_checksum = true;
    s.advance(3600);
    s.run(MAX);
    let left = |n| {
        s.trace_of(n)
            .iter()
            .any(|t| t.kind == TraceKind::Mode(Mode::Leave))
    };
    assert!(left(3), "diverged node must leave");
    assert!(!left(1) && !left(2));
    assert_all_synced_and_equal(&s);
}

#[test]
fn waiting_caller_is_aborted_when_node_restarts() {
    let mut s = sim(15);
    s.start(1, 100, TestApp::new());
    s.start(2, 200, TestApp::new());
    s.run(MAX);
    // node 2 sends, then corrupt input makes it leave before its message
    // comes back: the wait is released without a result
    s.inject(2, MemberId::new(1, 100), vec![1u8; 3]);
    let c = set(&mut s, 2, "lost", "?");
    s.run(MAX);
    assert_eq!(s.answer(2, c), Some(Outcome::Aborted));
    assert_all_synced_and_equal(&s);
}

#[test]
fn random_schedules_always_converge() {
    for seed in 0..40 {
        let mut s = sim(seed);
        let mut pids = [100u32, 200, 300, 400];
        for n in 1..=4 {
            s.start(n, pids[n as usize - 1], TestApp::new());
        }
        for round in 0..12 {
            match s.rand_below(7) {
                0 => {
                    let a = 1 + s.rand_below(4) as u32;
                    let rest: Vec<u32> = (1..=4).filter(|&n| n != a).collect();
                    s.partition(&[&[a], &rest]);
                }
                1 => s.heal(),
                2 => {
                    let n = 1 + s.rand_below(4) as u32;
                    if let Some(app) = s.crash(n) {
                        pids[n as usize - 1] += 1;
                        s.start(n, pids[n as usize - 1], TestApp::with_db(app.db));
                    }
                }
                _ => {
                    let n = 1 + s.rand_below(4) as u32;
                    set(&mut s, n, &format!("r{round}"), &format!("{seed}"));
                }
            }
            for _ in 0..s.rand_below(20) {
                s.step();
            }
        }
        s.heal();
        s.run(MAX);
        assert_all_synced_and_equal(&s);
    }
}
