//! The DFSM node process of the real-corosync tests, driven by one command per stdin line.
//!
//! A DFSM node process for tests against real corosync: a
//! [`GroupRunner`] with the [`TestApp`], a [`QuorumTracker`] and a
//! [`CmapTracker`], driven by one command per stdin line. Every reply is
//! one stdout line starting with `@ ` (libcpg may print other lines).
//! Logs (tracing) go to stderr.
//!
//! Commands: `put K V`, `del K`, `get K`, `burst PREFIX N THREADS`,
//! `digest`, `applied`, `corrupt on|off`, `mode`, `members`, `local`, `quorate`, `cluster`,
//! `quit`.
//!
//! Environment: `DFSM_GROUP` (default `pve_dcdb_v1`), `DFSM_PROTOCOL`
//! (default 1), `DFSM_VERIFY` (verify interval in s, default none),
//! `DFSM_LOG` (`0` disables logging).

#![allow(dead_code)]

use std::io::{BufRead, Write};
use std::sync::Arc;

use pmxcfs_dfsm::testapp::{set_payload, TestApp, OP_DELETE, OP_SET};
use pmxcfs_dfsm::transport::DCDB_GROUP;
use pmxcfs_dfsm::transport::{CmapTracker, GroupConfig, GroupRunner, QuorumTracker, SendError};
use sha2::{Digest, Sha256};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn res(r: Result<i32, SendError>) -> String {
    match r {
        Ok(v) => v.to_string(),
        Err(SendError::Aborted) => "err aborted".into(),
        Err(SendError::NotConnected) => "err notconnected".into(),
    }
}

struct Node {
    runner: GroupRunner<TestApp>,
    quorum: QuorumTracker,
    cmap: CmapTracker,
}

impl Node {
    fn handle(&self, line: &str) -> Option<String> {
        let mut it = line.split_whitespace();
        let cmd = it.next()?;
        let args: Vec<&str> = it.collect();
        let r = &self.runner;
        Some(match (cmd, args.as_slice()) {
            ("put", [k, v]) => format!("put {}", res(r.send(OP_SET, set_payload(k, v)))),
            ("del", [k]) => format!("del {}", res(r.send(OP_DELETE, k.as_bytes().to_vec()))),
            ("get", [k]) => {
                let k = k.to_string();
                match r.with_app(move |a| {
                    a.db.get(&k)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                }) {
                    Ok(Some(v)) => format!("get {v}"),
                    Ok(None) => "get -".into(),
                    Err(e) => format!("get err {e}"),
                }
            }
            ("burst", [prefix, n, threads]) => {
                let n: usize = n.parse().unwrap_or(10);
                let t: usize = threads.parse().unwrap_or(1).max(1);
                let local = r.local().map(|m| m.nodeid).unwrap_or(0);
                let handles: Vec<_> = (0..t)
                    .map(|ti| {
                        let r = r.clone();
                        let prefix = prefix.to_string();
                        std::thread::spawn(move || {
                            let mut ok = 0usize;
                            let mut bad = 0usize;
                            for i in 0..n {
                                let key = if i % 2 == 0 {
                                    "shared".to_string()
                                } else {
                                    format!("{prefix}-{local}-{ti}-{i}")
                                };
                                let val = format!("{prefix}-{local}-{ti}-{i}");
                                match r.send(OP_SET, set_payload(&key, &val)) {
                                    Ok(0) => ok += 1,
                                    _ => bad += 1,
                                }
                            }
                            (ok, bad)
                        })
                    })
                    .collect();
                let (mut ok, mut bad) = (0, 0);
                for h in handles {
                    let (o, b) = h.join().unwrap_or((0, n));
                    ok += o;
                    bad += b;
                }
                format!("burst ok={ok} bad={bad}")
            }
            ("digest", []) => {
                match r.with_app(|a| (a.db.digest(), a.db.version, a.db.entries.len())) {
                    Ok((d, v, n)) => format!("digest {} v={v} n={n}", hex(&d)),
                    Err(e) => format!("digest err {e}"),
                }
            }
            ("applied", []) => match r.with_app(|a| {
                let seq: Vec<String> = a
                    .applied
                    .iter()
                    .map(|x| format!("{}:{}", x.sender, x.count))
                    .collect();
                (
                    seq.len(),
                    hex(&Sha256::digest(seq.join(",").as_bytes())[..8]),
                )
            }) {
                Ok((n, h)) => format!("applied {n} {h}"),
                Err(e) => format!("applied err {e}"),
            },
            ("corrupt", [on]) => {
                let on = *on == "on";
                match r.with_app(move |a| a.corrupt_checksum = on) {
                    Ok(()) => format!("corrupt {}", if on { "on" } else { "off" }),
                    Err(e) => format!("corrupt err {e}"),
                }
            }
            ("mode", []) => format!("mode {:?} joined={}", r.mode(), r.is_joined()),
            ("members", []) => match r.with_dfsm(|d| {
                d.map(|d| {
                    d.members()
                        .iter()
                        .map(|m| m.id.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                })
            }) {
                Ok(Some(m)) if !m.is_empty() => format!("members {m}"),
                Ok(_) => "members -".into(),
                Err(e) => format!("members err {e}"),
            },
            ("local", []) => match r.local() {
                Some(m) => format!("local {m}"),
                None => "local -".into(),
            },
            ("quorate", []) => format!(
                "quorate {}",
                if self.quorum.quorate() { "yes" } else { "no" }
            ),
            ("cluster", []) => match self.cmap.info() {
                Some(i) => format!(
                    "cluster {} {} {}",
                    i.cluster_name,
                    i.config_version,
                    i.nodes
                        .iter()
                        .map(|n| format!("{}:{}:{}", n.nodeid, n.name, n.votes))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                None => "cluster -".into(),
            },
            _ => format!("error unknown command {line:?}"),
        })
    }
}

/// Run the node until `quit` or EOF on stdin.
pub fn main() {
    if std::env::var("DFSM_LOG").as_deref() != Ok("0") {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .try_init();
    }
    let group = std::env::var("DFSM_GROUP").unwrap_or_else(|_| DCDB_GROUP.to_string());
    let protocol = std::env::var("DFSM_PROTOCOL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut cfg = GroupConfig::new(&group, protocol);
    cfg.verify_interval = std::env::var("DFSM_VERIFY")
        .ok()
        .and_then(|v| v.parse().ok());
    let node = Arc::new(Node {
        runner: GroupRunner::spawn(cfg, TestApp::new(), pmxcfs_dfsm::NoEffects).expect("spawn group runner"),
        quorum: QuorumTracker::spawn(None).expect("spawn quorum tracker"),
        cmap: CmapTracker::spawn(None).expect("spawn cmap tracker"),
    });
    let out = std::io::stdout();
    let say = |s: &str| {
        let mut o = out.lock();
        let _ = writeln!(o, "@ {s}");
        let _ = o.flush();
    };
    // start on a fresh line: the test harness may have printed a partial
    // line ("test corosync_node_helper ... ") when running as a helper
    println!();
    say(&format!("ready {}", std::process::id()));
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "quit" {
            break;
        }
        if let Some(reply) = node.handle(line) {
            say(&reply);
        }
    }
    node.runner.shutdown();
    node.quorum.shutdown();
    node.cmap.shutdown();
    say("bye");
}
