//! Cluster mode over REAL corosync (../shared/harness/cluster.sh): three pmxcfs-ng nodes in
//! network namespaces replicate the tree, a partitioned node turns read-only and catches up
//! after the heal, a restarted daemon resyncs. Needs root; cleans up in Drop.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::qb::{in_netns, QbClient};
use common::*;
use pmxcfs_ipc::protocol::build;

struct Cluster {
    env: Vec<(String, String)>,
    base: PathBuf,
    nodes: Vec<Node>,
}

struct Node {
    id: u32,
    root: tempfile::TempDir,
    child: Option<Child>,
}

impl Node {
    fn mnt(&self) -> PathBuf {
        self.root.path().join("etc/pve")
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.mnt().join(rel)
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("daemon.log")).unwrap_or_default()
    }
}

fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/harness/cluster.sh")
}

impl Cluster {
    fn sh(&self, args: &[&str]) -> std::process::Output {
        Command::new("bash").arg(harness()).args(args).envs(self.env.iter().map(|(k, v)| (k, v))).output().expect("run cluster.sh")
    }

    fn sh_ok(&self, args: &[&str]) {
        let out = self.sh(args);
        assert!(out.status.success(), "cluster.sh {args:?} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }

    fn up(n: u32) -> Cluster {
        require_root();
        let tag = std::process::id() % 200 + 20;
        let base = PathBuf::from(format!("/tmp/pmxcfs-ng-coro-{}", std::process::id()));
        let env = vec![
            ("CORO_BASE".into(), base.display().to_string()),
            ("CORO_PREFIX".into(), format!("pxng{tag}n")),
            ("CORO_NET".into(), format!("10.219.{tag}")),
            ("CORO_NAME".into(), "ngtest".into()),
            ("CORO_TOKEN".into(), "1000".into()),
            ("CORO_TOKEN_COEFF".into(), "0".into()),
        ];
        let mut c = Cluster { env, base, nodes: Vec::new() };
        c.sh_ok(&["up", &n.to_string()]);
        let conf = std::fs::read(c.base.join("n1/corosync.conf")).expect("harness corosync.conf");
        for id in 1..=n {
            let root = tempfile::Builder::new().prefix("pmxcfs-cluster.").tempdir().unwrap();
            // seed the database in local mode with the cluster's corosync.conf (like `pvecm create`)
            let mut seed = Daemon::start_in_root(root, &["--nodename", &format!("node{id}")]);
            std::fs::write(seed.p("corosync.conf"), &conf).unwrap();
            assert_eq!(seed.stop(), 0);
            let root = seed.take_root();
            c.nodes.push(Node { id, root, child: None });
        }
        for i in 0..n as usize {
            c.start_daemon(i);
        }
        c
    }

    fn start_daemon(&mut self, i: usize) {
        let id = self.nodes[i].id;
        let root = self.nodes[i].root.path().to_path_buf();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(root.join("daemon.log")).unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(harness()).args(["netexec", &id.to_string(), BIN, "-f", "--nodename", &format!("node{id}"), "--root"]).arg(&root);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        let child = cmd.spawn().unwrap();
        self.nodes[i].child = Some(child);
        let mnt = self.nodes[i].mnt();
        wait_for(&format!("node{id} mounted"), 20, || is_mounted(&mnt));
    }

    fn stop_daemon(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = wait_timeout(&mut c, Duration::from_secs(20));
        }
        lazy_umount(&self.nodes[i].mnt());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if let Some(mut c) = self.nodes[i].child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            lazy_umount(&self.nodes[i].mnt());
        }
        let _ = self.sh(&["down"]);
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(secs), "timeout waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write_retry(p: &Path, data: &[u8]) {
    // right after start a node may still be syncing: EBUSY/EACCES until quorate and synced
    let t0 = Instant::now();
    loop {
        match std::fs::write(p, data) {
            Ok(()) => return,
            Err(e) if t0.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("write {} failed: {e}", p.display()),
        }
    }
}

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
