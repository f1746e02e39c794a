//! Cluster faults with real corosync: random partitions, heals, corosync kills and daemon
//! kills while every node writes concurrently. At the end every node has the same tree,
//! every write acknowledged by a node survives (or a later acknowledged write to the same
//! file replaced it), and nothing half-written appears. Duration: `PMXCFS_FAULT_SECS`
//! (default 40 s).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;

/// Per file: highest sequence number whose write+rename returned OK, and every attempted one.
#[derive(Default, Debug)]
struct Ledger {
    acked: BTreeMap<PathBuf, u64>,
    attempted: BTreeMap<PathBuf, Vec<u64>>,
    acks: usize,
    refusals: usize,
}

fn set_contents(dir: &Path, name: &str, seq: u64) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp.{seq}"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(format!("{name} seq {seq}\n").as_bytes())?;
    close_checked(f)?;
    std::fs::rename(&tmp, dir.join(name))
}

fn writer(mnt: PathBuf, node: u32, stop: Arc<AtomicBool>, ledger: Arc<Mutex<Ledger>>) {
    let dir = mnt.join(format!("w{node}"));
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        seq += 1;
        let name = format!("file{}", seq % 5);
        let path = dir.join(&name);
        ledger.lock().unwrap().attempted.entry(path.clone()).or_default().push(seq);
        match set_contents(&dir, &name, seq) {
            Ok(()) => {
                let mut l = ledger.lock().unwrap();
                l.acks += 1;
                let e = l.acked.entry(path).or_insert(0);
                *e = (*e).max(seq);
            }
            Err(_) => {
                ledger.lock().unwrap().refusals += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn seq_of(content: &[u8]) -> Option<u64> {
    String::from_utf8_lossy(content).trim().rsplit(' ').next()?.parse().ok()
}

#[test]
fn corosync_faults_keep_every_acknowledged_write_and_converge() {
    let secs: u64 = std::env::var("PMXCFS_FAULT_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let mut c = Cluster::up(3);
    for n in &c.nodes {
        write_retry(&n.p(&format!("w{}.marker", n.id)), b"x");
        std::fs::create_dir(n.p(&format!("w{}", n.id))).unwrap();
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = c
        .nodes
        .iter()
        .map(|n| {
            let (mnt, id, stop, ledger) = (n.mnt(), n.id, stop.clone(), ledger.clone());
            std::thread::spawn(move || writer(mnt, id, stop, ledger))
        })
        .collect();
    let mut rng = Rng(0x0fau64 ^ u64::from(std::process::id()));
    let t0 = Instant::now();
    let mut actions = Vec::new();
    while t0.elapsed() < Duration::from_secs(secs) {
        let action = rng.below(5);
        let node = rng.below(3) as usize;
        match action {
            0 => {
                let minority = (node + 1).to_string();
                let majority: Vec<String> = (1..=3).filter(|i| *i != node + 1).map(|i| i.to_string()).collect();
                c.sh_ok(&["partition", &majority.join(","), &minority]);
                actions.push(format!("partition {} | {minority}", majority.join(",")));
            }
            1 => {
                c.sh_ok(&["heal"]);
                actions.push("heal".into());
            }
            2 => {
                // kill -9 the daemon; its writer sees errors until the restart
                if let Some(mut ch) = c.nodes[node].child.take() {
                    let _ = ch.kill();
                    let _ = ch.wait();
                }
                lazy_umount(&c.nodes[node].mnt());
                std::thread::sleep(Duration::from_millis(500));
                c.start_daemon(node);
                actions.push(format!("kill -9 pmxcfs node{}", node + 1));
            }
            3 => {
                c.sh_ok(&["kill", &(node + 1).to_string(), "KILL"]);
                std::thread::sleep(Duration::from_millis(1000));
                c.sh_ok(&["start", &(node + 1).to_string()]);
                actions.push(format!("kill -9 corosync node{}", node + 1));
            }
            _ => {
                std::thread::sleep(Duration::from_millis(1500));
                actions.push("pause".into());
            }
        }
        std::thread::sleep(Duration::from_millis(1000 + rng.below(2000)));
    }
    c.sh_ok(&["heal"]);
    // let every node rejoin, then stop writing
    std::thread::sleep(Duration::from_secs(6));
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    // converge: all trees identical (retry while resyncs finish)
    let t1 = Instant::now();
    loop {
        let snaps: Vec<_> = c.nodes.iter().map(|n| snapshot(&n.mnt())).collect();
        if snaps.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        assert!(t1.elapsed() < Duration::from_secs(60), "trees did not converge after faults {actions:?}\nnode1 log:\n{}", c.nodes[0].log());
        std::thread::sleep(Duration::from_millis(500));
    }
    let l = ledger.lock().unwrap();
    for (path, acked) in &l.acked {
        // every node shows the same tree, so reading through node1's mount is enough
        let rel = path.strip_prefix(c.nodes.iter().find(|n| path.starts_with(n.mnt())).unwrap().mnt()).unwrap();
        let content = std::fs::read(c.nodes[0].p(rel.to_str().unwrap())).unwrap_or_default();
        let seq = seq_of(&content).unwrap_or(0);
        assert!(seq >= *acked, "{} holds seq {seq}, but seq {acked} was acknowledged (faults: {actions:?})", rel.display());
        assert!(l.attempted[path].contains(&seq), "{} holds seq {seq}, which nobody wrote", rel.display());
    }
    eprintln!("{} s of faults ({} actions), {} acknowledged writes, {} refused", secs, actions.len(), l.acks, l.refusals);
    assert!(l.acks > 20, "the writers made progress");
}
