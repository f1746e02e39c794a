//! Support for tests against a real corosync cluster: one namespace and node process per
//! member, driven through stdin/stdout lines.
//!
//! Support for tests against a REAL corosync cluster started with the
//! shared harness (`shared/harness/cluster.sh`): one network namespace per
//! node, so each DFSM node is a separate process (this test binary,
//! re-executed as the node helper of `node.rs`) started with
//! `cluster.sh netexec N` and driven through stdin/stdout lines.
//!
//! [`Cluster`] tears everything down in `Drop`, also on panic. Tests in one
//! binary are serialized; every test uses its own netns prefix, subnet and
//! state dir, so binaries may also run in parallel.

#![allow(dead_code)]

pub mod node;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Set in the environment of node helper processes.
pub const HELPER_ENV: &str = "PMXCFS_DFSM_NODE_HELPER";
/// Name of the `#[test]` every corosync test binary defines as the helper
/// entry point (`fn corosync_node_helper() { helper_entry() }`).
pub const HELPER_TEST: &str = "corosync_node_helper";

static SERIAL: Mutex<()> = Mutex::new(());

/// The body of the helper test: runs a node when re-executed as one,
/// returns at once otherwise.
pub fn helper_entry() {
    if std::env::var_os(HELPER_ENV).is_some() {
        node::main();
    }
}

fn find_harness() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CORO_HARNESS") {
        return Some(PathBuf::from(p));
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("../../shared/harness/cluster.sh"),
        manifest.join("../shared/harness/cluster.sh"),
        PathBuf::from("/work/shared/harness/cluster.sh"),
    ];
    candidates.into_iter().find(|p| p.is_file())
}

/// Poll `f` every 200 ms until it returns `Some`, or panic after `timeout`
/// with `what` and the last observation.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        let last = match f() {
            Ok(v) => return v,
            Err(e) => e,
        };
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last: {last}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One node helper process.
pub struct Node {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<String>,
    pub pid: u32,
}

impl Node {
    /// Send one command line without waiting for the reply.
    pub fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to node");
        self.stdin.flush().expect("flush to node");
    }

    /// The next reply line (without `@ `).
    pub fn recv(&mut self, timeout: Duration) -> String {
        match self.rx.recv_timeout(timeout) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => {
                panic!("node {} did not answer within {timeout:?}", self.pid)
            }
            Err(RecvTimeoutError::Disconnected) => panic!("node {} exited", self.pid),
        }
    }

    /// Send a command and wait for its reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(line);
        self.recv(Duration::from_secs(60))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running harness cluster plus our node processes.
pub struct Cluster {
    script: PathBuf,
    env: Vec<(String, String)>,
    pub base: PathBuf,
    nodes: BTreeMap<u32, Node>,
    /// Extra environment for node processes.
    pub node_env: Vec<(String, String)>,
    _serial: MutexGuard<'static, ()>,
}

impl Cluster {
    /// `cluster.sh up n` with a prefix/subnet/state dir unique to `tag`
    /// and `subnet`, fast totem timing (token 1000 ms, coefficient 0).
    pub fn up(tag: &str, subnet: u8, n: u32) -> Cluster {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!(
                "corosync tests need root (network namespaces, corosync); run `cargo test` as root \
                 (CI does)"
            );
        }
        let script = find_harness().unwrap_or_else(|| {
            panic!(
                "corosync test harness not found: expected shared/harness/cluster.sh next to the \
                 repository (or set CORO_HARNESS)"
            )
        });
        let base = PathBuf::from(format!("/tmp/coro/dfsm-{tag}"));
        let env = vec![
            ("CORO_PREFIX".to_string(), format!("dfsm{tag}")),
            ("CORO_NET".to_string(), format!("10.231.{subnet}")),
            ("CORO_BASE".to_string(), base.display().to_string()),
            ("CORO_NAME".to_string(), "dfsmtest".to_string()),
            ("CORO_TOKEN".to_string(), "1000".to_string()),
            ("CORO_TOKEN_COEFF".to_string(), "0".to_string()),
            ("CORO_TIMEOUT".to_string(), "30".to_string()),
        ];
        let c = Cluster {
            script,
            env,
            base,
            nodes: BTreeMap::new(),
            node_env: Vec::new(),
            _serial: serial,
        };
        c.sh_ok(&["up", &n.to_string()]);
        c
    }

    /// Run `cluster.sh ARGS`.
    pub fn sh(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(&self.script)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .expect("run cluster.sh")
    }

    /// Run `cluster.sh ARGS` and panic on failure.
    pub fn sh_ok(&self, args: &[&str]) -> String {
        let out = self.sh(args);
        if !out.status.success() {
            panic!(
                "cluster.sh {args:?} failed: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Start the DFSM node helper in node `i`'s network namespace and wait
    /// until it is up.
    pub fn start_node(&mut self, i: u32) {
        assert!(!self.nodes.contains_key(&i), "node {i} already running");
        let exe = std::env::current_exe().expect("current_exe");
        let log_path = self.base.join(format!("n{i}/dfsm-node.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open node log");
        let mut child = Command::new("bash")
            .arg(&self.script)
            .args(["netexec", &i.to_string()])
            .arg(&exe)
            .args([HELPER_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(self.node_env.iter().map(|(k, v)| (k, v)))
            .env(HELPER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn node helper");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(reply) = line.strip_prefix("@ ") {
                    if tx.send(reply.to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        let mut node = Node {
            child,
            stdin,
            rx,
            pid: 0,
        };
        let ready = node.recv(Duration::from_secs(30));
        let pid = ready
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("node {i}: unexpected greeting {ready:?}"));
        node.pid = pid;
        self.nodes.insert(i, node);
    }

    /// Quit node `i` cleanly (leave + finalize) and wait for its exit.
    pub fn stop_node(&mut self, i: u32) {
        let mut n = self.nodes.remove(&i).expect("node running");
        n.send("quit");
        let bye = n.recv(Duration::from_secs(30));
        assert_eq!(bye, "bye");
        let _ = n.child.wait();
    }

    /// SIGKILL node `i`'s helper process.
    pub fn kill_node(&mut self, i: u32) {
        if let Some(mut n) = self.nodes.remove(&i) {
            n.kill();
        }
    }

    pub fn node(&mut self, i: u32) -> &mut Node {
        self.nodes
            .get_mut(&i)
            .unwrap_or_else(|| panic!("node {i} not running"))
    }

    pub fn cmd(&mut self, i: u32, line: &str) -> String {
        self.node(i).cmd(line)
    }

    pub fn pid(&mut self, i: u32) -> u32 {
        self.node(i).pid
    }

    /// Wait until every node in `nodes` is SYNCED, joined, and sees exactly
    /// the members `nodeid/pid` of `nodes`.
    pub fn wait_synced(&mut self, nodes: &[u32], timeout: Duration) {
        let mut want: Vec<String> = nodes
            .iter()
            .map(|&i| format!("{i}/{}", self.pid(i)))
            .collect();
        want.sort();
        let want = format!("members {}", want.join(","));
        wait_for(
            timeout,
            &format!("nodes {nodes:?} synced with {want}"),
            || {
                for &i in nodes {
                    let mode = self.cmd(i, "mode");
                    if mode != "mode Synced joined=true" {
                        return Err(format!("node {i}: {mode}"));
                    }
                    let m = self.cmd(i, "members");
                    if m != want {
                        return Err(format!("node {i}: {m}"));
                    }
                }
                Ok(())
            },
        )
    }

    /// Wait until `line` gives the same reply on all `nodes`; returns it.
    pub fn wait_same(&mut self, nodes: &[u32], line: &str, timeout: Duration) -> String {
        wait_for(timeout, &format!("same `{line}` on {nodes:?}"), || {
            let replies: Vec<String> = nodes.iter().map(|&i| self.cmd(i, line)).collect();
            if replies.iter().all(|r| r == &replies[0]) {
                Ok(replies[0].clone())
            } else {
                Err(format!("{replies:?}"))
            }
        })
    }

    /// Wait until node `i` answers `line` with `want`.
    pub fn wait_reply(&mut self, i: u32, line: &str, want: &str, timeout: Duration) {
        wait_for(timeout, &format!("node {i}: `{line}` -> `{want}`"), || {
            let r = self.cmd(i, line);
            if r == want {
                Ok(())
            } else {
                Err(r)
            }
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut n) in std::mem::take(&mut self.nodes) {
            n.kill();
        }
        let out = self.sh(&["down"]);
        if !out.status.success() {
            eprintln!(
                "cluster.sh down failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if std::thread::panicking() {
            eprintln!("corosync and node logs kept under {}", self.base.display());
        }
    }
}
