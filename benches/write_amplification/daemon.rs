//! One running daemon instance: start (plain or isolated), wait for its mount, read its
//! counters, wait until it has written everything, stop and clean up.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::accounting::{proc_io, NgStats, ProcIo};
use crate::isolation::{cstr, isolate, DaemonSpec, InstanceDirs, Isolation};
use crate::workloads::NODE;
use crate::{check_abort, other, sleep_checked, Config};

const STATS_FILE: &str = "pmxcfs-ng.stats";

/// Mount point and filesystem type of every mount in `/proc/PID/mountinfo`.
pub(crate) fn mounts_of(pid: &str) -> Vec<(String, String)> {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mp = l.split(' ').nth(4)?;
            let fstype = l.split(" - ").nth(1)?.split(' ').next()?;
            Some((mp.replace("\\040", " "), fstype.to_string()))
        })
        .collect()
}

/// One running daemon. Dropping it stops the daemon, removes its mount and its directories.
pub(crate) struct Daemon {
    pub(crate) spec: DaemonSpec,
    pub(crate) child: Child,
    pub(crate) pid: u32,
    /// Mount point as seen in the daemon's mount namespace.
    pub(crate) ns_mountpoint: String,
    /// Path through which this process reaches the mounted filesystem.
    pub(crate) access: PathBuf,
    pub(crate) log: Arc<Mutex<VecDeque<String>>>,
    pub(crate) dirs: InstanceDirs,
}

pub(crate) fn drain(stream: impl Read + Send + 'static, log: Arc<Mutex<VecDeque<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
            if l.len() >= 200 {
                l.pop_front();
            }
            l.push_back(line);
        }
    });
}

impl Daemon {
    pub(crate) fn start(spec: &DaemonSpec, cfg: &Config, db: Option<&Path>) -> io::Result<Daemon> {
        let dirs = InstanceDirs::new(&cfg.base_dir, &cfg.shm_dir, cfg.device)?;
        if let Some(golden) = db {
            let db = dirs.db_dir().join("config.db");
            fs::copy(golden, &db).map_err(|e| {
                other(format!(
                    "copy {} -> {}: {e}",
                    golden.display(),
                    db.display()
                ))
            })?;
            File::open(&db)?.sync_all()?;
        }
        let root = dirs.disk.display().to_string();
        let argv: Vec<String> = spec
            .argv
            .iter()
            .map(|a| a.replace("{root}", &root).replace("{node}", NODE))
            .collect();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let ns_mountpoint;
        if spec.isolated {
            ns_mountpoint = "/etc/pve".to_string();
            let hosts = dirs.disk.join("hosts");
            // pmxcfs wants the node name to resolve to a non-loopback address. 192.0.2.1 is a
            // documentation address; the private network namespace has no route anywhere.
            fs::write(
                &hosts,
                format!("127.0.0.1 localhost\n192.0.2.1 {NODE}.bench.invalid {NODE}\n"),
            )?;
            let mut iso = Isolation {
                overlays: Vec::new(),
                binds: Vec::new(),
                hostname: cstr(NODE),
            };
            let targets = [
                (dirs.disk.join("etc/pve"), PathBuf::from("/etc/pve")),
                (dirs.db_dir(), PathBuf::from("/var/lib/pve-cluster")),
                (dirs.run_dir(), PathBuf::from("/run/pve-cluster")),
            ];
            for (i, (src, target)) in targets.iter().enumerate() {
                if !target.exists() {
                    // Not on this host: make it appear in the namespace only, through an
                    // overlay on its parent whose upper layer is a temporary directory.
                    let parent = target.parent().expect("absolute path");
                    let layer = dirs.disk.join(format!("overlay-{i}"));
                    fs::create_dir_all(layer.join("upper"))?;
                    fs::create_dir_all(layer.join("work"))?;
                    let opts = format!(
                        "lowerdir={},upperdir={},workdir={}",
                        parent.display(),
                        layer.join("upper").display(),
                        layer.join("work").display()
                    );
                    iso.overlays.push((cstr(parent), cstr(opts), cstr(target)));
                }
                iso.binds.push((cstr(src), cstr(target)));
            }
            iso.binds.push((cstr(&hosts), cstr("/etc/hosts")));
            // SAFETY: the closure only makes system calls (see `isolate`).
            unsafe {
                cmd.pre_exec(move || {
                    isolate(&iso)?;
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    libc::setpgid(0, 0);
                    Ok(())
                });
            }
        } else {
            ns_mountpoint = dirs.disk.join("etc/pve").display().to_string();
            // SAFETY: async-signal-safe system calls only.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    libc::setpgid(0, 0);
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| other(format!("start {}: {e}", argv.join(" "))))?;
        let pid = child.id();
        let log = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(s) = child.stdout.take() {
            drain(s, log.clone());
        }
        if let Some(s) = child.stderr.take() {
            drain(s, log.clone());
        }
        let access = if spec.isolated {
            PathBuf::from(format!("/proc/{pid}/root/etc/pve"))
        } else {
            PathBuf::from(&ns_mountpoint)
        };
        let daemon = Daemon {
            spec: spec.clone(),
            child,
            pid,
            ns_mountpoint,
            access,
            log,
            dirs,
        };
        daemon.wait_mounted()?;
        Ok(daemon)
    }

    pub(crate) fn log_tail(&self) -> String {
        let l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        l.iter()
            .rev()
            .take(15)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n    ")
    }

    pub(crate) fn wait_mounted(&self) -> io::Result<()> {
        let start = Instant::now();
        loop {
            check_abort()?;
            if mounts_of(&self.pid.to_string())
                .iter()
                .any(|(mp, t)| *mp == self.ns_mountpoint && t.starts_with("fuse"))
            {
                return Ok(());
            }
            if !Path::new(&format!("/proc/{}", self.pid)).exists() || self.exited() {
                std::thread::sleep(Duration::from_millis(100));
                return Err(other(format!(
                    "daemon {} exited before mounting; its output:\n    {}",
                    self.spec.name,
                    self.log_tail()
                )));
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(other(format!(
                    "daemon {} did not mount within 30 s; its output:\n    {}",
                    self.spec.name,
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn exited(&self) -> bool {
        // A zombie child still has /proc/PID; look at its state.
        fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .map(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
                    .unwrap_or(false)
            })
            .unwrap_or(true)
    }

    pub(crate) fn io(&self) -> io::Result<ProcIo> {
        proc_io(self.pid)
    }

    /// Asks a pmxcfs-ng daemon for its counters (SIGUSR1 → stats file on tmpfs).
    pub(crate) fn stats(&self) -> Option<NgStats> {
        if !self.spec.has_stats {
            return None;
        }
        let path = self.dirs.run_dir().join(STATS_FILE);
        let _ = fs::remove_file(&path);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid as i32, libc::SIGUSR1) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if let Ok(text) = fs::read_to_string(&path) {
                let v: Value = serde_json::from_str(&text).ok()?;
                return Some(NgStats {
                    commits: v["commits"].as_u64()?,
                    // builds before the crash record counted store transactions as commits
                    store_transactions: v["store_transactions"].as_u64().or_else(|| v["commits"].as_u64())?,
                    wal_syncs: v["wal_syncs"].as_u64()?,
                    dirty: v["dirty"].as_bool()?,
                    failed: v["failed"].as_bool().unwrap_or(false),
                    db_exclusive: v["db_exclusive"].as_bool().filter(|_| v["db_exclusive_when_alone"].as_bool() == Some(true)),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// After the benchmark's own checkpoint opened config.db: waits until a pmxcfs-ng that
    /// locks it exclusively while alone is back to that (built-ins run with a hold of 2 s),
    /// so the measured part sees the store as on a node where nobody else opens it.
    pub(crate) fn wait_alone_again(&self) -> io::Result<()> {
        let start = Instant::now();
        while let Some(NgStats { db_exclusive: Some(false), .. }) = self.stats() {
            if start.elapsed() > Duration::from_secs(60) {
                return Err(other("the daemon did not return to exclusive locking of config.db within 60 s"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// Waits until everything the workload did is on its way to disk: for pmxcfs-ng until
    /// nothing is dirty and the commit and WAL-sync counters have not moved for 1.2 s (so the
    /// once-a-second WAL fdatasync has run), for other daemons until write_bytes has not moved
    /// for 2 s. Never less than 1.1 s.
    pub(crate) fn wait_committed(&self) -> io::Result<Duration> {
        let start = Instant::now();
        let quiet = if self.spec.has_stats {
            Duration::from_millis(1200)
        } else {
            Duration::from_secs(2)
        };
        let mut last_io = self.io()?;
        let mut last_stats = self.stats();
        let mut last_change = Instant::now();
        loop {
            sleep_checked(Duration::from_millis(100))?;
            if self.exited() {
                return Err(other(format!(
                    "daemon {} died; its output:\n    {}",
                    self.spec.name,
                    self.log_tail()
                )));
            }
            let io = self.io()?;
            if io.write_bytes != last_io.write_bytes {
                last_io = io;
                last_change = Instant::now();
            }
            if self.spec.has_stats {
                let s = self.stats();
                if s.is_none() || s.is_some_and(|s| s.dirty) || s != last_stats {
                    last_change = Instant::now();
                }
                if let Some(s) = s {
                    if s.failed {
                        return Err(other(format!(
                            "daemon {}: commit failed; output:\n    {}",
                            self.spec.name,
                            self.log_tail()
                        )));
                    }
                }
                last_stats = s;
            }
            if start.elapsed() >= Duration::from_millis(1100) && last_change.elapsed() >= quiet {
                return Ok(start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(120) + Duration::from_millis(self.spec.sync_interval_ms.unwrap_or(0)) {
                return Err(other(format!(
                    "daemon {} did not settle within 120 s",
                    self.spec.name
                )));
            }
        }
    }

    /// fsync every file of the database directory, so pages dirtied before the measurement
    /// (database copy, start-up, set-up) are clean and the workload's writes are counted.
    /// syncfs of the filesystem holding the database directory. Through the directory, not
    /// by opening the files: an open of config.db would end a pmxcfs-ng's exclusive locking.
    pub(crate) fn sync_db_dir(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let dir = File::open(self.dirs.db_dir())?;
        // SAFETY: syncfs on a descriptor we own
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Daemon {
    /// Clean stop: SIGTERM, then waits for the exit (a daemon's close checkpoints its WAL).
    pub(crate) fn stop(&mut self) -> io::Result<()> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        let start = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) {
            if start.elapsed() > Duration::from_secs(30) {
                return Err(other(format!("daemon {} ignored SIGTERM for 30 s", self.spec.name)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
            let start = Instant::now();
            while matches!(self.child.try_wait(), Ok(None))
                && start.elapsed() < Duration::from_secs(15)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(self.child.try_wait(), Ok(None)) {
                eprintln!(
                    "warning: daemon {} ignored SIGTERM for 15 s, killing it",
                    self.spec.name
                );
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        // A daemon in the host namespace that died without unmounting leaves its mount behind.
        if !self.spec.isolated
            && mounts_of("self")
                .iter()
                .any(|(mp, _)| *mp == self.ns_mountpoint)
        {
            let mp = cstr(&self.ns_mountpoint);
            // SAFETY: plain system call.
            unsafe { libc::umount2(mp.as_ptr(), libc::MNT_DETACH) };
        }
        // `dirs` is dropped after this: the directories go once nothing is mounted on them.
    }
}

