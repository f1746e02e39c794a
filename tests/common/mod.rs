//! Test harness: runs the real `pmxcfs` binary on a temporary `--root`, mounted with FUSE,
//! and always cleans up (kill, unmount, remove) even when a test fails.
#![allow(dead_code)]

pub mod cluster;
pub mod qb;
mod rng;
pub mod uring_knob;

#[allow(unused_imports)]
pub use rng::Rng;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_pmxcfs");
pub const NODE: &str = "testnode";
/// What the daemon logs when it serves over FUSE's io_uring transport.
pub const IO_URING_LOG_LINE: &str = "[fuse] notice: serving over io_uring";

/// Path of the shared golden data (../shared/golden beside the checkout).
pub fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden").join(name)
}

pub fn require_root() {
    assert!(nix_is_root(), "these tests mount FUSE and must run as root");
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn is_mounted(mountpoint: &Path) -> bool {
    let want = mountpoint.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(want.as_str())))
        .unwrap_or(false)
}

/// A running daemon on its own root.
pub struct Daemon {
    pub root: tempfile::TempDir,
    pub child: Option<Child>,
    pub log: PathBuf,
    pub args: Vec<String>,
    pub node: String,
}

impl Daemon {
    /// Starts `pmxcfs -f -l` on a fresh root.
    pub fn start(extra: &[&str]) -> Daemon {
        require_root();
        let root = tempfile::Builder::new().prefix("pmxcfs-test.").tempdir().expect("tempdir");
        Daemon::start_in(root, extra)
    }

    /// Starts on a fresh root whose database is a copy of `db`.
    pub fn start_with_db(db: &Path, extra: &[&str]) -> Daemon {
        require_root();
        let root = tempfile::Builder::new().prefix("pmxcfs-test.").tempdir().expect("tempdir");
        let dir = root.path().join("var/lib/pve-cluster");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(db, dir.join("config.db")).unwrap();
        Daemon::start_in(root, extra)
    }

    /// Starts on an existing root directory.
    pub fn start_in_root(root: tempfile::TempDir, extra: &[&str]) -> Daemon {
        require_root();
        Daemon::start_in(root, extra)
    }

    /// Gives up the root directory (the daemon must be stopped).
    pub fn take_root(mut self) -> tempfile::TempDir {
        assert!(self.child.is_none(), "stop the daemon first");
        let placeholder = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.root, placeholder)
    }

    fn start_in(root: tempfile::TempDir, extra: &[&str]) -> Daemon {
        let log = root.path().join("daemon.log");
        let mut node = NODE.to_string();
        let mut args = Vec::new();
        let mut it = extra.iter();
        while let Some(a) = it.next() {
            if *a == "--nodename" {
                node = it.next().expect("--nodename NAME").to_string();
            } else {
                args.push(a.to_string());
            }
        }
        let mut d = Daemon { root, child: None, log, args, node };
        d.spawn().unwrap_or_else(|e| panic!("daemon did not mount: {e}\n{}", d.log_text()));
        d
    }

    /// (Re)starts the process on the same root; waits for the mount.
    pub fn spawn(&mut self) -> Result<(), String> {
        let logf = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["-f", "-l", "--nodename", &self.node, "--root"]).arg(self.root.path());
        if !self.args.iter().any(|a| a == "--ipc-name") {
            cmd.args(["--ipc-name", &self.ipc_name()]);
        }
        cmd.args(&self.args);
        cmd.stdin(Stdio::null()).stdout(logf.try_clone().unwrap()).stderr(logf);
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        // ready = mounted AND the pid file names this child (written after IPC started)
        let pid_file = self.root.path().join("run/pve-cluster.pid");
        let ready = |pid: u32| {
            is_mounted(&self.mnt()) && std::fs::read_to_string(&pid_file).map(|s| s.trim() == pid.to_string()).unwrap_or(false)
        };
        while !ready(child.id()) {
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!("daemon exited with {st}"));
            }
            if t0.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                return Err("timeout waiting for the mount".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let knob_on = uring_knob::UringKnob::now() == "Y";
        if std::env::var_os("PMXCFS_TEST_IO_URING").is_some_and(|v| v == "1") && knob_on && !self.args.iter().any(|a| a == "--no-io-uring") {
            // the suite's io_uring pass: a daemon that fell back to /dev/fuse would pass the
            // tests without testing the ring
            let t0 = Instant::now();
            while !self.log_text().contains(IO_URING_LOG_LINE) {
                if t0.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    return Err(format!("PMXCFS_TEST_IO_URING=1 but the daemon does not serve over io_uring; log:\n{}", self.log_text()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.child = Some(child);
        Ok(())
    }

    /// This daemon's IPC service name (unique per root so tests can run side by side).
    pub fn ipc_name(&self) -> String {
        let tag = self.root.path().file_name().unwrap().to_string_lossy().replace('.', "-");
        format!("pve2-{tag}")
    }

    pub fn mnt(&self) -> PathBuf {
        self.root.path().join("etc/pve")
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt().join(rel)
    }

    pub fn db_path(&self) -> PathBuf {
        self.root.path().join("var/lib/pve-cluster/config.db")
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asks the daemon for its counters (SIGUSR1 → stats file).
    pub fn stats(&self) -> serde_json::Value {
        let f = self.root.path().join("run/pve-cluster/pmxcfs-ng.stats");
        let _ = std::fs::remove_file(&f);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), libc::SIGUSR1) };
        let t0 = Instant::now();
        loop {
            if let Ok(s) = std::fs::read_to_string(&f) {
                if let Ok(v) = serde_json::from_str(&s) {
                    return v;
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "no stats file");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn commits(&self) -> u64 {
        self.stats()["commits"].as_u64().unwrap()
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(&mut self) -> i32 {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let st = wait_timeout(&mut child, Duration::from_secs(20));
        st.and_then(|s| s.code()).unwrap_or(-1)
    }

    /// SIGKILL and wait; clears the dead mount and the IPC rings the killed server left.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
        lazy_umount(&self.mnt());
        self.remove_stale_rings();
    }

    /// A killed daemon's clients' rings stay in /dev/shm (libqb removes them on disconnect).
    fn remove_stale_rings(&self) {
        let shm = Path::new(pmxcfs_ipc::stale_rings::SHM_DIR);
        pmxcfs_ipc::stale_rings::remove_stale_rings(shm, &self.ipc_name());
    }
}

pub fn wait_timeout(child: &mut Child, t: Duration) -> Option<std::process::ExitStatus> {
    let t0 = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if t0.elapsed() > t {
            let _ = child.kill();
            return child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn lazy_umount(mnt: &Path) {
    if is_mounted(mnt) {
        let c = std::ffi::CString::new(mnt.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: umount2 with a valid path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        lazy_umount(&self.mnt());
        self.remove_stale_rings();
    }
}

/// errno of an io::Error.
pub fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// Sets atime+mtime of `p` like `touch -d @secs`.
pub fn utime(p: &Path, secs: i64) -> std::io::Result<()> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let t = libc::timespec { tv_sec: secs as _, tv_nsec: 0 };
    let times = [t, t];
    // SAFETY: valid path and two timespecs.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// sha256 of every file and "-" for dirs below `dir`, skipping the special root entries.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, String> {
    use sha2::Digest;
    let mut out = std::collections::BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(base).unwrap().to_string_lossy().to_string();
            if dir == base && (rel.starts_with('.') || ["local", "qemu-server", "lxc", "openvz"].contains(&rel.as_str())) {
                continue;
            }
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.insert(rel, "-".into());
                walk(base, &e.path(), out);
            } else {
                let data = std::fs::read(e.path()).unwrap();
                out.insert(rel, pmxcfs_hex(&sha2::Sha256::digest(&data)));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

pub fn pmxcfs_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// close(2) with its result: closing a written file on the mount reports its commit.
pub fn close_checked(f: std::fs::File) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    let fd = f.into_raw_fd();
    // SAFETY: we own fd and close it exactly once.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
