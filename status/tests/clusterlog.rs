//! Cluster-log tests: golden vectors from captured C traffic, wrap-around, merge, corrupt rings.

mod common;

use common::{load_hex, Rng};
use pmxcfs_status::clusterlog::*;

const NORMAL_HDR: usize = 24;
const STATE_HDR: usize = 32;

fn state(name: &str) -> Vec<u8> {
    let msg = load_hex(name);
    assert_eq!(msg.len(), STATE_HDR + CLOG_DEFAULT_SIZE as usize, "{name}");
    msg[STATE_HDR..].to_vec()
}

/// Rebuild a live log holding the entries of a ring (oldest first).
fn log_from_ring(ring: &ClogRing) -> ClusterLog {
    let mut cl = ClusterLog::new();
    for e in ring.entries().iter().rev() {
        assert!(cl.insert(e));
    }
    cl
}

#[test]
fn golden_log_message_decodes_and_reencodes() {
    let msg = load_hex("log_node3_l35.hex");
    assert_eq!(msg.len(), 140);
    let payload = &msg[NORMAL_HDR..];
    let e = LogEntry::decode(payload).unwrap();
    assert_eq!(e.uid(), 2);
    assert_eq!(e.time(), 1795350145);
    assert_eq!(e.pid(), 23871);
    assert_eq!(e.priority(), 6);
    assert_eq!(e.node(), b"node3");
    assert_eq!(e.ident(), b"golden-ident");
    assert_eq!(e.tag(), b"golden-tag");
    assert_eq!(e.msg(), b"golden cluster log message from node3");
    assert_eq!(e.node_digest(), 0xe6fcafc220cec54e);
    assert_eq!(e.ident_digest(), 0xbbe612be89edece9);
    assert_eq!(e.size(), 116);
    assert_eq!(e.encode(), payload);

    // packing the same data locally gives the same bytes
    let p = LogEntry::pack(
        b"node3",
        b"golden-ident",
        b"golden-tag",
        23871,
        1795350145,
        6,
        b"golden cluster log message from node3",
        2,
    )
    .unwrap();
    assert_eq!(p.encode(), payload);
}

#[test]
fn golden_log_message_rejections() {
    let msg = load_hex("log_node3_l35.hex");
    let payload = &msg[NORMAL_HDR..];
    assert_eq!(
        LogEntry::decode(&payload[..47]),
        Err(ClogError::EntryTooShort(47))
    );
    assert!(matches!(
        LogEntry::decode(&payload[..payload.len() - 1]),
        Err(ClogError::EntryLengthMismatch { .. })
    ));
    let mut bad = payload.to_vec();
    bad[44 + 5] = b'x'; // node's NUL
    assert_eq!(LogEntry::decode(&bad), Err(ClogError::Unterminated("node")));
    let mut bad = payload.to_vec();
    bad[payload.len() - 5] = b'x'; // msg's NUL
    assert_eq!(LogEntry::decode(&bad), Err(ClogError::Unterminated("msg")));
}

#[test]
fn golden_state_ring_parses_and_dumps() {
    let raw = state("state_node1_l220.hex");
    let ring = ClogRing::from_state(&raw).unwrap();
    assert_eq!(ring.size(), 131072);
    assert_eq!(ring.cpos(), 272);
    let entries = ring.entries();
    let summary: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e.uid(),
                e.time(),
                e.pid(),
                String::from_utf8_lossy(e.node()).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (2, 1795350145, 23871, "node3".to_string()),
            (1, 1795350141, 23718, "node3".to_string()),
            (1, 1795350140, 23677, "node2".to_string()),
            (1, 1795350139, 23636, "node1".to_string()),
        ]
    );
    let expected = "{\n\"data\": [\n\
{\"uid\": 2, \"time\": 1795350145, \"pri\": 6, \"tag\": \"golden-tag\", \"pid\": 23871, \"node\": \"node3\", \"user\": \"golden-ident\", \"msg\": \"golden cluster log message from node3\"},\n\
{\"uid\": 1, \"time\": 1795350141, \"pri\": 6, \"tag\": \"cluster\", \"pid\": 23718, \"node\": \"node3\", \"user\": \"root\", \"msg\": \"starting cluster log\"},\n\
{\"uid\": 1, \"time\": 1795350140, \"pri\": 6, \"tag\": \"cluster\", \"pid\": 23677, \"node\": \"node2\", \"user\": \"root\", \"msg\": \"starting cluster log\"},\n\
{\"uid\": 1, \"time\": 1795350139, \"pri\": 6, \"tag\": \"cluster\", \"pid\": 23636, \"node\": \"node1\", \"user\": \"root\", \"msg\": \"starting cluster log\"}\n\
]\n}\n";
    assert_eq!(
        String::from_utf8(ring.dump_json(None, 50)).unwrap(),
        expected
    );

    // max entries and ident filter
    let two = String::from_utf8(ring.dump_json(None, 2)).unwrap();
    assert_eq!(two.matches("\"uid\"").count(), 2);
    let root = String::from_utf8(ring.dump_json(Some(b"root"), 50)).unwrap();
    assert_eq!(root.matches("\"user\": \"root\"").count(), 3);
    assert!(!root.contains("golden"));
    let golden = String::from_utf8(ring.dump_json(Some(b"golden-ident"), 50)).unwrap();
    assert_eq!(golden.matches("\"uid\"").count(), 1);
    let none = ring.dump_json(Some(b"nobody"), 50);
    assert_eq!(none, b"{\n\"data\": [\n]\n}\n");
    // an empty filter is no filter
    assert_eq!(ring.dump_json(Some(b""), 50), ring.dump_json(None, 50));
}

#[test]
fn golden_state_rebuilt_byte_for_byte() {
    for name in [
        "state_node1_l17.hex",
        "state_node2_l12.hex",
        "state_node2_l39.hex",
        "state_node1_l220.hex",
        "state_node3_l103.hex",
        "state_node2_l148.hex",
        "state_node2_l174.hex",
    ] {
        let raw = state(name);
        let ring = ClogRing::from_state(&raw).unwrap();
        let mut cl = log_from_ring(&ring);
        assert_eq!(cl.get_state(), raw, "{name}");
    }
}

#[test]
fn golden_local_start_entry_matches_capture() {
    // node1's first state: only its own "starting cluster log"
    let raw = state("state_node1_l17.hex");
    let mut cl = ClusterLog::new();
    cl.add(
        b"node1",
        b"root",
        b"cluster",
        23636,
        1795350139,
        6,
        b"starting cluster log",
    )
    .unwrap();
    assert_eq!(cl.get_state(), raw);
}

#[test]
fn golden_merge_epoch2() {
    // node2 (local, index 1) merges node1's state: node2's next state is the capture
    let s1 = state("state_node1_l17.hex");
    let s2 = state("state_node2_l12.hex");
    let expected = state("state_node2_l39.hex");
    let mut cl = log_from_ring(&ClogRing::from_state(&s2).unwrap());
    let errs = cl.merge_states(&[Some(&s1), None], 1).unwrap();
    assert!(errs.iter().all(Option::is_none));
    assert_eq!(cl.get_state(), expected);
}

#[test]
fn golden_merge_epoch7_restarted_node() {
    let s1 = state("state_node1_l220.hex");
    let s2 = state("state_node2_l148.hex");
    let s3 = state("state_node3_l103.hex");
    let expected = state("state_node2_l174.hex");
    let mut cl = log_from_ring(&ClogRing::from_state(&s2).unwrap());
    // the local node's copy is ignored in favour of the live ring
    cl.merge_states(&[Some(&s1), Some(&s2), Some(&s3)], 1)
        .unwrap();
    assert_eq!(cl.get_state(), expected);
    // after the merge, the dedup table knows node3's uid 2 at 1795350145
    let dup = LogEntry::decode(&load_hex("log_node3_l35.hex")[NORMAL_HDR..]).unwrap();
    assert!(!cl.insert(&dup));
}

#[test]
fn merge_skips_bad_states_and_checks_input() {
    let s1 = state("state_node1_l220.hex");
    let mut bad = s1.clone();
    bad[0] = 1; // size field mismatch
    let mut cl = ClusterLog::new();
    cl.add(b"nodeX", b"root", b"cluster", 1, 1795350200, 6, b"hello")
        .unwrap();
    let errs = cl.merge_states(&[None, Some(&bad), Some(&s1)], 0).unwrap();
    assert!(matches!(errs[1], Some(ClogError::RingSizeMismatch { .. })));
    assert_eq!(cl.entries().len(), 5);
    assert_eq!(cl.merge_states(&[None], 0), Err(ClogError::BadMergeInput));
    assert_eq!(
        cl.merge_states(&[None, None], 2),
        Err(ClogError::BadMergeInput)
    );
}

#[test]
fn merge_cuts_to_one_buffer_and_dedups() {
    let mut rng = Rng(7);
    let mut logs = Vec::new();
    for n in 0..3u32 {
        let mut cl = ClusterLog::new();
        for i in 0..2000u32 {
            let len = rng.below(300) as usize;
            let msg = vec![b'a' + (i % 26) as u8; len];
            cl.add(
                format!("node{n}").as_bytes(),
                b"root",
                b"t",
                1,
                1000 + i * 3 + n,
                6,
                &msg,
            )
            .unwrap();
        }
        logs.push(cl);
    }
    // also a shared entry present in two logs
    let shared = LogEntry::pack(b"nodeS", b"root", b"t", 1, 999_999, 6, b"shared", 1).unwrap();
    logs[1].insert(&shared);
    logs[2].insert(&shared);
    let rings: Vec<ClogRing> = logs
        .iter_mut()
        .map(|l| ClogRing::from_state(&l.get_state()).unwrap())
        .collect();
    let mut local = logs.remove(0);
    local
        .merge(&[None, Some(&rings[1]), Some(&rings[2])], 0)
        .unwrap();
    let merged = local.entries();
    assert_eq!(merged.iter().filter(|e| e.node() == b"nodeS").count(), 1);
    // newest first, strictly descending keys
    for w in merged.windows(2) {
        assert!(w[0].key() > w[1].key());
    }
    let bytes: usize = merged.iter().map(|e| (e.size() + 7) & !7).sum();
    assert!(bytes <= (CLOG_DEFAULT_SIZE - 8) as usize);
    assert!(
        bytes >= (CLOG_DEFAULT_SIZE - 8 - 2 * 4096) as usize,
        "{bytes}"
    );
    // the newest entries of every member made it
    assert_eq!(merged[0].node(), b"nodeS");
    assert!(merged[1..4].iter().any(|e| e.node() == b"node0"));
    assert!(merged[1..4].iter().any(|e| e.node() == b"node2"));
}

/// Insert thousands of entries of random size; the walk must always return a contiguous
/// newest-first suffix of what was inserted, and state round-trips.
#[test]
fn wrap_around_thousands() {
    let mut rng = Rng(0x1234_5678);
    let mut cl = ClusterLog::new();
    let mut inserted = Vec::new();
    for i in 0..6000u32 {
        let len = if rng.below(10) == 0 {
            rng.below(4000)
        } else {
            rng.below(120)
        } as usize;
        let msg: Vec<u8> = (0..len).map(|_| b' ' + rng.below(90) as u8).collect();
        let e = cl
            .add(
                b"pve1",
                b"root",
                b"tag",
                42,
                1_000_000 + i,
                (i % 8) as u8,
                &msg,
            )
            .unwrap();
        assert!(e.size() <= 4096);
        inserted.push(e);
        if i % 97 == 0 || i > 5900 {
            let got = cl.entries();
            assert!(!got.is_empty());
            let n = got.len();
            let tail: Vec<_> = inserted[inserted.len() - n..]
                .iter()
                .rev()
                .cloned()
                .collect();
            assert_eq!(got, tail, "after {i} inserts");
            let bytes: usize = got.iter().map(|e| (e.size() + 7) & !7).sum();
            assert!(bytes <= (CLOG_DEFAULT_SIZE - 8) as usize);
        }
    }
    let got = cl.entries();
    assert!(got.len() > 100, "{}", got.len());
    let dump = String::from_utf8(cl.dump_json(None, 50)).unwrap();
    assert_eq!(dump.matches("\"uid\"").count(), 50);
    assert!(dump.contains(&format!("\"uid\": {}", 6000)));
    // state round trip through a validated ring
    let st = cl.get_state();
    let ring = ClogRing::from_state(&st).unwrap();
    assert_eq!(ring.entries(), got);
    // uids increase from 1
    assert_eq!(inserted[0].uid(), 1);
    assert_eq!(inserted[5999].uid(), 6000);
}

#[test]
fn dedup_rules() {
    let mut cl = ClusterLog::new();
    let mk = |time, uid| LogEntry::pack(b"n1", b"root", b"t", 1, time, 6, b"m", uid).unwrap();
    assert!(cl.insert(&mk(100, 5)));
    assert!(!cl.insert(&mk(100, 5)));
    assert!(!cl.insert(&mk(100, 4)));
    assert!(!cl.insert(&mk(99, 9)));
    assert!(cl.insert(&mk(100, 6)));
    assert!(cl.insert(&mk(101, 1)));
    // other node has its own record
    let other = LogEntry::pack(b"n2", b"root", b"t", 1, 50, 6, b"m", 1).unwrap();
    assert!(cl.insert(&other));
    assert_eq!(cl.entries().len(), 4);
}

#[test]
fn escaped_message_in_dump() {
    let mut cl = ClusterLog::new();
    cl.add(b"n", b"root", b"t", 1, 5, 3, "say \"hi\"\nnäh".as_bytes())
        .unwrap();
    let d = String::from_utf8(cl.dump_json(None, 50)).unwrap();
    assert!(d.contains(r##""msg": "say \"hi\"#010n\u00e4h""##), "{d}");
}

#[test]
fn random_states_never_panic() {
    let mut rng = Rng(0xdead_beef);
    for round in 0..400 {
        let len = match round % 4 {
            0 => rng.below(64) as usize,
            1 => 9 + rng.below(5000) as usize,
            _ => 40960,
        };
        let mut b = rng.bytes(len);
        if len >= 8 && round % 3 != 0 {
            b[0..4].copy_from_slice(&(len as u32).to_le_bytes());
            let cpos = (rng.below(len as u64) as u32) & !7;
            b[4..8].copy_from_slice(&cpos.to_le_bytes());
        }
        if let Ok(r) = ClogRing::from_state(&b) {
            let _ = r.entries();
            let _ = r.dump_json(None, 50);
            let _ = r.dump_json(Some(b"root"), 3);
            let _ = r.sorted();
            let mut cl = ClusterLog::new();
            cl.merge(&[None, Some(&r)], 0).unwrap();
            let _ = cl.get_state();
        }
        let _ = LogEntry::decode(&b[..b.len().min(4096)]);
    }
}

/// Corrupt a valid ring with many entries in random places: typed error or usable ring.
#[test]
fn mutated_rings_never_panic_or_hang() {
    let mut cl = ClusterLog::new();
    for i in 0..3000u32 {
        cl.add(
            b"pve",
            b"root",
            b"t",
            1,
            100 + i,
            6,
            format!("message {i}").as_bytes(),
        )
        .unwrap();
    }
    let good = cl.ring().as_bytes().to_vec();
    let mut rng = Rng(42);
    let mut errors = 0;
    for _ in 0..300 {
        let mut b = good.clone();
        for _ in 0..1 + rng.below(20) {
            let pos = rng.below(b.len() as u64) as usize;
            b[pos] = rng.next() as u8;
        }
        // sometimes aim at the links of the newest entries
        if rng.below(2) == 0 {
            let cpos = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
            if cpos + 4 <= b.len() {
                let v = rng.next() as u32 % (b.len() as u32 + 100);
                b[cpos..cpos + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        match ClogRing::from_state(&b) {
            Ok(r) => {
                let _ = r.dump_json(None, 10_000);
                let mut l = ClusterLog::new();
                l.merge(&[None, Some(&r)], 0).unwrap();
            }
            Err(_) => errors += 1,
        }
    }
    // self-referencing prev must be a cycle error, not a hang
    let mut b = good.clone();
    let cpos = u32::from_le_bytes(b[4..8].try_into().unwrap());
    b[cpos as usize..cpos as usize + 4].copy_from_slice(&cpos.to_le_bytes());
    assert_eq!(
        ClogRing::from_state(&b).unwrap_err(),
        ClogError::RingCycle(cpos)
    );
    let _ = errors;
}

/// After an early wrap (a big entry that did not fit at the end), a later lap can pass the
/// previous lap's last entry. The walk then stops at the entry at offset 8, whose `prev`
/// points into overwritten space: it is still part of the state (sort, merge), but the
/// original's JSON dump leaves it out.
#[test]
fn early_wrap_entry_is_kept_but_not_dumped() {
    let mut cl = ClusterLog::new();
    let small = vec![b's'; 40];
    let mut t = 1000;
    let mut add = |cl: &mut ClusterLog, msg: &[u8]| {
        t += 1;
        cl.add(b"n", b"root", b"t", 1, t, 6, msg).unwrap()
    };
    // small slots are 104 bytes, the big one 4064: fill until the big one no longer fits
    while cl.ring().cpos() as usize + 104 + 4064 < CLOG_DEFAULT_SIZE as usize {
        add(&mut cl, &small);
    }
    let last_small = cl.ring().cpos();
    let big = add(&mut cl, &vec![b'b'; 4000]);
    assert_eq!(cl.ring().cpos(), 8, "big entry wrapped to the start");
    // next lap: small entries until we are past the previous lap's last entry
    while cl.ring().cpos() <= last_small {
        add(&mut cl, &small);
    }
    let entries = cl.entries();
    assert_eq!(entries.last().unwrap(), &big);
    let dump = String::from_utf8(cl.dump_json(None, 100_000)).unwrap();
    assert_eq!(dump.matches("\"uid\"").count(), entries.len() - 1);
    assert!(!dump.contains("bbbb"));
    // the state keeps it
    let st = cl.get_state();
    assert!(ClogRing::from_state(&st).unwrap().entries().contains(&big));
}
