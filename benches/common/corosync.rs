//! The benches' real corosync cluster (../shared/harness/cluster.sh, one network namespace per
//! node) under names unique to this run, and daemons started inside a node's namespace.
//! Included with `#[path]` by cluster_latency and scale; Drop tears corosync down.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The names one bench run gives its cluster; a tag from the process id keeps concurrent
/// runs (and the tests' clusters) apart.
pub struct RunNames {
    /// Directory of the harness's files: `/tmp/pmxcfs-ng-{dir}-PID`.
    pub dir: &'static str,
    /// Namespace prefix: `{prefix}TAGn`.
    pub prefix: &'static str,
    /// The first two octets of the node network: `{net}.TAG.ID`.
    pub net: &'static str,
    /// The lowest tag (tags are `tag_from..tag_from + 200`).
    pub tag_from: u32,
    /// The corosync cluster name.
    pub cluster: &'static str,
}

/// Corosync up on N nodes, torn down (and its files removed) on Drop.
pub struct Corosync {
    env: Vec<(String, String)>,
    base: PathBuf,
}

fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/harness/cluster.sh")
}

impl Corosync {
    /// Start corosync on `n` nodes (`cluster.sh up N`).
    pub fn up(n: u32, names: &RunNames) -> Result<Corosync, String> {
        let pid = std::process::id();
        let tag = pid % 200 + names.tag_from;
        let base = PathBuf::from(format!("/tmp/pmxcfs-ng-{}-{pid}", names.dir));
        let env = vec![
            ("CORO_BASE".into(), base.display().to_string()),
            ("CORO_PREFIX".into(), format!("{}{tag}n", names.prefix)),
            ("CORO_NET".into(), format!("{}.{tag}", names.net)),
            ("CORO_NAME".into(), names.cluster.into()),
            ("CORO_TOKEN".into(), "1000".into()),
            ("CORO_TOKEN_COEFF".into(), "0".into()),
        ];
        // built before `up` so that a half-started cluster is torn down too
        let c = Corosync { env, base };
        c.sh(&["up", &n.to_string()])?;
        Ok(c)
    }

    fn sh(&self, args: &[&str]) -> Result<(), String> {
        let out = Command::new("bash").arg(harness()).args(args).envs(self.env.iter().map(|(k, v)| (k, v))).output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("cluster.sh {args:?} failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// The cluster's corosync.conf (what `pvecm create` puts into the database).
    pub fn conf(&self) -> Result<Vec<u8>, String> {
        std::fs::read(self.base.join("n1/corosync.conf")).map_err(|e| format!("harness corosync.conf: {e}"))
    }

    /// Starts `bin -f --nodename nodeID --root ROOT` in node `id`'s namespace, its output
    /// appended to ROOT/daemon.log. The child is the namespace wrapper; [`daemon_pid`] finds
    /// the daemon itself.
    pub fn spawn_daemon(&self, bin: &str, id: u32, root: &Path) -> Result<Child, String> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(root.join("daemon.log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("bash");
        cmd.arg(harness()).args(["netexec", &id.to_string(), bin, "-f", "--nodename", &format!("node{id}"), "--root"]).arg(root);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null()).stdout(log.try_clone().map_err(|e| e.to_string())?).stderr(log);
        cmd.spawn().map_err(|e| e.to_string())
    }
}

impl Drop for Corosync {
    fn drop(&mut self) {
        let _ = self.sh(&["down"]);
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// The process of `bin` serving `root` (the harness starts it under `ip netns exec`).
pub fn daemon_pid(bin: &str, root: &Path) -> Option<u32> {
    let want = root.to_string_lossy().to_string();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let exe_ok = std::fs::read_link(e.path().join("exe")).map(|p| p == Path::new(bin)).unwrap_or(false);
        if exe_ok && args.windows(2).any(|w| w[0] == b"--root" && w[1] == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}
