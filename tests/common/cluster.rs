//! A real N-node corosync cluster (../shared/harness/cluster.sh) with one pmxcfs-ng per node,
//! each on its own `--root` and `--nodename`, started through `cluster.sh netexec` so the FUSE
//! mounts stay visible. Everything is torn down in Drop, also when a test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

pub struct Cluster {
    pub env: Vec<(String, String)>,
    pub base: PathBuf,
    pub nodes: Vec<Node>,
    /// One real cluster at a time per test process (2 cores; and the harness's names).
    _serial: std::sync::MutexGuard<'static, ()>,
}

static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
static CLUSTER_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

pub struct Node {
    pub id: u32,
    pub root: tempfile::TempDir,
    pub child: Option<Child>,
    /// Extra daemon arguments for every start of this node.
    pub extra: Vec<String>,
}

impl Node {
    pub fn mnt(&self) -> PathBuf {
        self.root.path().join("etc/pve")
    }
    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt().join(rel)
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("daemon.log")).unwrap_or_default()
    }
}

pub fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/harness/cluster.sh")
}

impl Cluster {
    pub fn sh(&self, args: &[&str]) -> std::process::Output {
        Command::new("bash").arg(harness()).args(args).envs(self.env.iter().map(|(k, v)| (k, v))).output().expect("run cluster.sh")
    }

    pub fn sh_ok(&self, args: &[&str]) {
        let out = self.sh(args);
        assert!(out.status.success(), "cluster.sh {args:?} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }

    /// N corosync nodes, each with a pmxcfs-ng seeded with the cluster's corosync.conf, all running.
    pub fn up(n: u32) -> Cluster {
        let mut c = Cluster::prepared(n, &[]);
        for i in 0..n as usize {
            c.start_daemon(i);
        }
        c
    }

    /// Corosync running on N nodes; no daemon started. Nodes in `fresh` get a root holding
    /// only etc/corosync/corosync.conf (what `pvecm add` leaves), the others a seeded database.
    pub fn prepared(n: u32, fresh: &[u32]) -> Cluster {
        require_root();
        let serial = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let seq = CLUSTER_SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tag = (std::process::id() + seq * 37) % 200 + 20;
        let base = PathBuf::from(format!("/tmp/pmxcfs-ng-coro-{}-{seq}", std::process::id()));
        let env = vec![
            ("CORO_BASE".into(), base.display().to_string()),
            ("CORO_PREFIX".into(), format!("pxng{tag}n")),
            ("CORO_NET".into(), format!("10.219.{tag}")),
            ("CORO_NAME".into(), "ngtest".into()),
            ("CORO_TOKEN".into(), "1000".into()),
            ("CORO_TOKEN_COEFF".into(), "0".into()),
        ];
        let mut c = Cluster { env, base, nodes: Vec::new(), _serial: serial };
        c.sh_ok(&["up", &n.to_string()]);
        let conf = std::fs::read(c.base.join("n1/corosync.conf")).expect("harness corosync.conf");
        for id in 1..=n {
            let root = tempfile::Builder::new().prefix("pmxcfs-cluster.").tempdir().unwrap();
            if fresh.contains(&id) {
                std::fs::create_dir_all(root.path().join("etc/corosync")).unwrap();
                std::fs::write(root.path().join("etc/corosync/corosync.conf"), &conf).unwrap();
                c.nodes.push(Node { id, root, child: None, extra: Vec::new() });
                continue;
            }
            // seed the database in local mode with the cluster's corosync.conf (like `pvecm create`)
            let mut seed = Daemon::start_in_root(root, &["--nodename", &format!("node{id}")]);
            std::fs::write(seed.p("corosync.conf"), &conf).unwrap();
            assert_eq!(seed.stop(), 0);
            let root = seed.take_root();
            c.nodes.push(Node { id, root, child: None, extra: Vec::new() });
        }
        c
    }

    /// Node `id`'s corosync address (cluster.sh: NET.id).
    pub fn ip(&self, id: u32) -> String {
        let net = &self.env.iter().find(|(k, _)| k == "CORO_NET").expect("CORO_NET").1;
        format!("{net}.{id}")
    }

    /// `.members` of node index `i`, parsed.
    pub fn members(&self, i: usize) -> serde_json::Value {
        std::fs::read(self.nodes[i].p(".members")).ok().and_then(|d| serde_json::from_slice(&d).ok()).unwrap_or_default()
    }

    pub fn start_daemon(&mut self, i: usize) {
        let id = self.nodes[i].id;
        let root = self.nodes[i].root.path().to_path_buf();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(root.join("daemon.log")).unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(harness()).args(["netexec", &id.to_string()]);
        // PMXCFS_TEST_WRAPPER="valgrind -q --log-file=/tmp/vg.%p" runs the daemons under a tool
        if let Ok(wrapper) = std::env::var("PMXCFS_TEST_WRAPPER") {
            cmd.args(wrapper.split_whitespace());
        }
        cmd.args([BIN, "-f", "--nodename", &format!("node{id}"), "--root"]).arg(&root);
        cmd.args(["--node-ip", &self.ip(id)]).args(&self.nodes[i].extra);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        let child = cmd.spawn().unwrap();
        self.nodes[i].child = Some(child);
        let mnt = self.nodes[i].mnt();
        wait_for(&format!("node{id} mounted"), 20, || is_mounted(&mnt));
    }

    pub fn stop_daemon(&mut self, i: usize) {
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

pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(secs), "timeout waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn write_retry(p: &Path, data: &[u8]) {
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

