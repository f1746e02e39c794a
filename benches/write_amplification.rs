//! Write-amplification benchmark: how many bytes a pmxcfs daemon makes the kernel write to
//! storage for each byte an application writes into /etc/pve.
//!
//! ```text
//! cargo bench --bench write_amplification -- [--daemon NAME=CMD]... [--workload NAME]...
//!     [--reps N] [--idle-seconds S] [--json FILE] [--svg FILE] [--quick] [--with-delay]
//! ```
//!
//! For every daemon × workload × repetition the benchmark starts a fresh daemon in local mode
//! on a copy of a database shaped like a real 3-node cluster, runs the workload through the
//! mounted filesystem with ordinary system calls, waits until the daemon has committed
//! everything, and reads the daemon's `write_bytes` from `/proc/PID/io`. See
//! `docs/benchmark.md` for the method and for comparing with the original on a Proxmox host.
//!
//! Needs root (FUSE mounts, mount/network namespaces). Cleans up after itself: daemons are
//! stopped, mounts removed and temporary directories deleted by Drop guards, also on panic
//! and on Ctrl-C.

use std::collections::VecDeque;
use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::IntoRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// The node the workloads write as (the golden database has pve1..pve3).
const NODE: &str = "pve1";
const NODES: [&str; 3] = ["pve1", "pve2", "pve3"];
/// Marker string only pmxcfs-ng binaries contain: such daemons write a stats file on SIGUSR1.
const STATS_MARKER: &[u8] = b"pmxcfs-ng.stats";
const STATS_FILE: &str = "pmxcfs-ng.stats";
const DEFAULT_GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/golden/c-config.db");
const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Interruption

static ABORT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    ABORT.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

fn check_abort() -> io::Result<()> {
    if ABORT.load(Ordering::SeqCst) {
        Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"))
    } else {
        Ok(())
    }
}

/// Sleeps up to `d`, returning early (with an error) when interrupted.
fn sleep_checked(d: Duration) -> io::Result<()> {
    let end = Instant::now() + d;
    loop {
        check_abort()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

// ---------------------------------------------------------------------------------------------
// Workloads

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    /// One new 1 MiB file written in writes of this many bytes.
    Dd(usize),
    HaStatus,
    GuestConfigs,
    Rewrite4k,
    HaIdle,
}

const ALL_WORKLOADS: [Workload; 8] = [
    Workload::Dd(512),
    Workload::Dd(4096),
    Workload::Dd(128 * 1024),
    Workload::Dd(1024 * 1024),
    Workload::HaStatus,
    Workload::GuestConfigs,
    Workload::Rewrite4k,
    Workload::HaIdle,
];

#[derive(Clone, Copy, Debug)]
struct Params {
    ha_count: usize,
    guest_count: usize,
    rewrite_count: usize,
    idle_secs: f64,
}

/// What a workload did: bytes handed to write(2) and the number of operations.
#[derive(Clone, Copy, Debug, Default)]
struct RunOutput {
    logical: u64,
    ops: u64,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Dd(512) => "dd-512",
            Workload::Dd(4096) => "dd-4k",
            Workload::Dd(131072) => "dd-128k",
            Workload::Dd(1048576) => "dd-1m",
            Workload::Dd(_) => "dd-?",
            Workload::HaStatus => "ha-status",
            Workload::GuestConfigs => "guest-configs",
            Workload::Rewrite4k => "rewrite-4k",
            Workload::HaIdle => "ha-idle-minute",
        }
    }

    fn from_name(s: &str) -> Option<Workload> {
        ALL_WORKLOADS.iter().copied().find(|w| w.name() == s)
    }

    fn describe(self, p: &Params) -> String {
        match self {
            Workload::Dd(bs) => format!("one new 1 MiB file written with write() calls of {bs} bytes (op = one write)"),
            Workload::HaStatus => format!(
                "{} x: 83-byte JSON to nodes/{NODE}/lrm_status.tmp.PID, close, rename onto lrm_status (op = one update)",
                p.ha_count
            ),
            Workload::GuestConfigs => format!("{} new ~500-byte VM configs in nodes/{NODE}/qemu-server/ (op = one file)", p.guest_count),
            Workload::Rewrite4k => format!("{} x: open existing file with O_TRUNC, write 4 KiB, close (op = one rewrite)", p.rewrite_count),
            Workload::HaIdle => format!(
                "idle 3-node HA cluster at real pace for {} s: lrm_status of pve1..3 every 10 s, per minute mkdir/rmdir of \
                 priv/lock/file-jobs_cfg and file-replication_cfg by each node (op = one update or lock cycle)",
                p.idle_secs
            ),
        }
    }

    /// Paced workloads mostly sleep; their instances run concurrently.
    fn paced(self) -> bool {
        self == Workload::HaIdle
    }

    /// Unmeasured preparation (directories, the file to rewrite, stale locks).
    fn setup(self, mnt: &Path) -> io::Result<()> {
        match self {
            Workload::Dd(_) => Ok(()),
            Workload::HaStatus => mkdirs(mnt, &format!("nodes/{NODE}")),
            Workload::GuestConfigs => mkdirs(mnt, &format!("nodes/{NODE}/qemu-server")),
            Workload::Rewrite4k => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o640)
                    .open(mnt.join(REWRITE_FILE))?;
                f.write_all(&payload(4096, 0))?;
                close_checked(f)
            }
            Workload::HaIdle => {
                for n in NODES {
                    mkdirs(mnt, &format!("nodes/{n}"))?;
                }
                mkdirs(mnt, "priv/lock")?;
                for lock in IDLE_LOCKS {
                    let p = mnt.join("priv/lock").join(lock);
                    if p.exists() {
                        fs::remove_dir(&p)?;
                    }
                }
                Ok(())
            }
        }
    }

    fn run(self, mnt: &Path, p: &Params) -> io::Result<RunOutput> {
        match self {
            Workload::Dd(bs) => {
                let path = mnt.join(format!("bench-{}.bin", self.name()));
                let mut f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o640)
                    .open(path)?;
                let buf = payload(bs, 7);
                let n = MIB as usize / bs;
                for _ in 0..n {
                    check_abort()?;
                    f.write_all(&buf)?;
                }
                close_checked(f)?;
                Ok(RunOutput {
                    logical: MIB,
                    ops: n as u64,
                })
            }
            Workload::HaStatus => {
                let ts = unix_now();
                let mut out = RunOutput::default();
                for i in 0..p.ha_count {
                    check_abort()?;
                    out.logical += write_lrm_status(mnt, NODE, ts + i as u64)?;
                    out.ops += 1;
                }
                Ok(out)
            }
            Workload::GuestConfigs => {
                let dir = mnt.join(format!("nodes/{NODE}/qemu-server"));
                let mut out = RunOutput::default();
                for i in 0..p.guest_count {
                    check_abort()?;
                    let vmid = 1000 + i as u32;
                    let conf = guest_config(vmid);
                    let mut f = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o640)
                        .open(dir.join(format!("{vmid}.conf")))?;
                    f.write_all(conf.as_bytes())?;
                    close_checked(f)?;
                    out.logical += conf.len() as u64;
                    out.ops += 1;
                }
                Ok(out)
            }
            Workload::Rewrite4k => {
                let path = mnt.join(REWRITE_FILE);
                let mut out = RunOutput::default();
                for i in 0..p.rewrite_count {
                    check_abort()?;
                    let mut f = OpenOptions::new().write(true).truncate(true).open(&path)?;
                    f.write_all(&payload(4096, i))?;
                    close_checked(f)?;
                    out.logical += 4096;
                    out.ops += 1;
                }
                Ok(out)
            }
            Workload::HaIdle => run_ha_idle(mnt, p.idle_secs),
        }
    }
}

const REWRITE_FILE: &str = "bench-rewrite-4k.cfg";
const IDLE_LOCKS: [&str; 2] = ["file-jobs_cfg", "file-replication_cfg"];

fn mkdirs(mnt: &Path, rel: &str) -> io::Result<()> {
    let mut p = mnt.to_path_buf();
    for part in rel.split('/') {
        p.push(part);
        match fs::create_dir(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("mkdir {}: {e}", p.display()),
                ))
            }
        }
    }
    Ok(())
}

/// close(2) with its result checked (pmxcfs-ng commits on close).
fn close_checked(f: File) -> io::Result<()> {
    let fd = f.into_raw_fd();
    // SAFETY: fd is owned and closed exactly once.
    if unsafe { libc::close(fd) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Printable bytes, varying with `seed`.
fn payload(len: usize, seed: usize) -> Vec<u8> {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 =:,\n";
    let mut x = (seed as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            alphabet[((x >> 33) % alphabet.len() as u64) as usize]
        })
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The LRM's status update as pve-ha-lrm does it (PVE::Tools::file_set_contents): write a
/// temporary file, close, rename it onto lrm_status. Returns the bytes written (83).
fn write_lrm_status(mnt: &Path, node: &str, ts: u64) -> io::Result<u64> {
    let json = format!("{{\"mode\":\"active\",\"results\":{{}},\"state\":\"wait_for_agent_lock\",\"timestamp\":{:010}}}", ts % 10_000_000_000);
    debug_assert_eq!(json.len(), 83);
    let dir = mnt.join("nodes").join(node);
    let tmp = dir.join(format!("lrm_status.tmp.{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&tmp)?;
    f.write_all(json.as_bytes())?;
    close_checked(f)?;
    fs::rename(&tmp, dir.join("lrm_status"))?;
    Ok(json.len() as u64)
}

/// A cfs_lock_file() cycle as PVE::Cluster does it: mkdir the lock directory, run the code
/// (here: read the config it protects), rmdir.
fn lock_cycle(mnt: &Path, lock: &str) -> io::Result<()> {
    let dir = mnt.join("priv/lock").join(lock);
    fs::create_dir(&dir).map_err(|e| other(format!("mkdir {}: {e}", dir.display())))?;
    let cfg = lock.trim_start_matches("file-").replace('_', ".");
    let _ = fs::read(mnt.join(cfg));
    fs::remove_dir(&dir).map_err(|e| other(format!("rmdir {}: {e}", dir.display())))
}

/// A ~500-byte qemu-server config.
fn guest_config(vmid: u32) -> String {
    let h = |k: u32| (vmid.wrapping_mul(2654435761).rotate_left(k) & 0xff) as u8;
    let uuid = |k: u32| {
        let v: Vec<u8> = (0..16).map(|i| h(k + i)).collect();
        format!(
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15]
        )
    };
    format!(
        "boot: order=scsi0;ide2;net0\ncores: 2\ncpu: x86-64-v2-AES\n\
         ide2: local:iso/debian-12.7.0-amd64-netinst.iso,media=cdrom,size=631M\nmemory: 2048\n\
         meta: creation-qemu=9.0.2,ctime={}\nname: bench-vm-{vmid}\n\
         net0: virtio=BC:24:11:{:02X}:{:02X}:{:02X},bridge=vmbr0,firewall=1\nnuma: 0\nostype: l26\n\
         scsi0: local-lvm:vm-{vmid}-disk-0,iothread=1,size=32G\nscsihw: virtio-scsi-single\n\
         smbios1: uuid={}\nsockets: 1\nvmgenid: {}\n",
        1_730_000_000 + vmid,
        h(1),
        h(9),
        h(17),
        uuid(3),
        uuid(11)
    )
}

/// The write pattern of an idle 3-node HA cluster, as it lands in every node's database:
/// each LRM rewrites its lrm_status every 10 s (the three nodes out of phase), and once a
/// minute each node's pvescheduler takes and releases the cluster locks for jobs.cfg and
/// replication.cfg (mkdir + rmdir under priv/lock).
fn run_ha_idle(mnt: &Path, secs: f64) -> io::Result<RunOutput> {
    enum Ev {
        Lrm(&'static str),
        Lock(&'static str),
    }
    let mut events: Vec<(f64, Ev)> = Vec::new();
    let mut minute = 0.0;
    while minute < secs {
        for _node in NODES {
            for lock in IDLE_LOCKS {
                events.push((minute + 0.5, Ev::Lock(lock)));
            }
        }
        minute += 60.0;
    }
    for (i, node) in NODES.iter().enumerate() {
        let mut t = 1.0 + i as f64 * 10.0 / 3.0;
        while t < secs {
            events.push((t, Ev::Lrm(node)));
            t += 10.0;
        }
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let start = Instant::now();
    let ts = unix_now();
    let mut out = RunOutput::default();
    for (at, ev) in events {
        let due = start + Duration::from_secs_f64(at);
        sleep_checked(due.saturating_duration_since(Instant::now()))?;
        match ev {
            Ev::Lrm(node) => out.logical += write_lrm_status(mnt, node, ts + at as u64)?,
            Ev::Lock(lock) => lock_cycle(mnt, lock)?,
        }
        out.ops += 1;
    }
    sleep_checked(
        (start + Duration::from_secs_f64(secs)).saturating_duration_since(Instant::now()),
    )?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Daemons

#[derive(Clone, Debug)]
struct DaemonSpec {
    name: String,
    /// Command line; `{root}` and `{node}` are replaced per instance.
    argv: Vec<String>,
    /// No `{root}` in the command: the daemon uses the real paths and runs in private
    /// mount/network/UTS namespaces with temporary directories bound over them.
    isolated: bool,
    /// A pmxcfs-ng build: writes its stats file on SIGUSR1 (commit counters, dirty flag).
    has_stats: bool,
}

fn which(prog: &str) -> Option<PathBuf> {
    if prog.contains('/') {
        return Some(PathBuf::from(prog));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(prog))
            .find(|p| p.is_file())
    })
}

fn file_contains(path: &Path, needle: &[u8]) -> bool {
    let Ok(data) = fs::read(path) else {
        return false;
    };
    data.windows(needle.len()).any(|w| w == needle)
}

impl DaemonSpec {
    fn parse(name: &str, cmd: &str) -> Result<DaemonSpec, String> {
        let argv: Vec<String> = cmd.split_whitespace().map(String::from).collect();
        if argv.is_empty() {
            return Err(format!("daemon '{name}': empty command"));
        }
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "daemon name '{name}': use letters, digits, '-', '_', '.'"
            ));
        }
        let exe = which(&argv[0])
            .ok_or_else(|| format!("daemon '{name}': '{}' not found in PATH", argv[0]))?;
        if !exe.is_file() {
            return Err(format!(
                "daemon '{name}': '{}' is not a file",
                exe.display()
            ));
        }
        let isolated = !argv.iter().any(|a| a.contains("{root}"));
        let has_stats = file_contains(&exe, STATS_MARKER);
        let mut argv = argv;
        argv[0] = exe.display().to_string();
        Ok(DaemonSpec {
            name: name.to_string(),
            argv,
            isolated,
            has_stats,
        })
    }

    fn builtin(name: &str) -> Option<DaemonSpec> {
        let bin = env!("CARGO_BIN_EXE_pmxcfs");
        let cmd = match name {
            "pmxcfs-ng" => format!("{bin} -f -l --root {{root}} --nodename {{node}}"),
            "pmxcfs-ng-delay" => {
                format!("{bin} -f -l --root {{root}} --nodename {{node}} --commit-delay 1000")
            }
            _ => return None,
        };
        DaemonSpec::parse(name, &cmd).ok()
    }

    fn command_line(&self) -> String {
        self.argv.join(" ")
    }
}

/// Per-instance directories: one on the disk under test (database, mount point, overlay
/// layers) and one on tmpfs (the run directory: pid and stats files must not count).
struct InstanceDirs {
    disk: PathBuf,
    shm: PathBuf,
}

static INSTANCE_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl InstanceDirs {
    fn new(base: &Path, shm_base: &Path) -> io::Result<InstanceDirs> {
        let tag = format!(
            "pmxcfs-bench-{}-{}",
            std::process::id(),
            INSTANCE_COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let dirs = InstanceDirs {
            disk: base.join(&tag),
            shm: shm_base.join(&tag),
        };
        fs::create_dir_all(dirs.disk.join("etc/pve"))?;
        fs::create_dir_all(dirs.disk.join("var/lib/pve-cluster"))?;
        fs::create_dir_all(dirs.shm.join("run/pve-cluster"))?;
        std::os::unix::fs::symlink(dirs.shm.join("run"), dirs.disk.join("run"))?;
        Ok(dirs)
    }

    fn db_dir(&self) -> PathBuf {
        self.disk.join("var/lib/pve-cluster")
    }

    fn run_dir(&self) -> PathBuf {
        self.shm.join("run/pve-cluster")
    }
}

impl Drop for InstanceDirs {
    fn drop(&mut self) {
        // remove_dir_all does not follow the run symlink.
        let _ = fs::remove_dir_all(&self.disk);
        let _ = fs::remove_dir_all(&self.shm);
    }
}

fn cstr(p: impl AsRef<std::ffi::OsStr>) -> CString {
    CString::new(p.as_ref().as_bytes()).expect("path without NUL")
}

/// What the child does between fork and exec to isolate a daemon with hard-coded paths.
struct Isolation {
    /// (parent dir, overlay options, missing target to create inside the overlay)
    overlays: Vec<(CString, CString, CString)>,
    /// (source, target) bind mounts
    binds: Vec<(CString, CString)>,
    hostname: CString,
}

/// Runs in the forked child before exec: only system calls, no allocation.
fn isolate(iso: &Isolation) -> io::Result<()> {
    let fail = |_what: &str| Err(io::Error::last_os_error());
    // SAFETY: plain system calls on pointers that outlive the calls.
    unsafe {
        if libc::unshare(
            libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC,
        ) != 0
        {
            return fail("unshare");
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return fail("make-rprivate");
        }
        for (parent, opts, target) in &iso.overlays {
            if libc::mount(
                c"overlay".as_ptr(),
                parent.as_ptr(),
                c"overlay".as_ptr(),
                0,
                opts.as_ptr().cast(),
            ) != 0
            {
                return fail("overlay");
            }
            if libc::mkdir(target.as_ptr(), 0o755) != 0 && *libc::__errno_location() != libc::EEXIST
            {
                return fail("mkdir");
            }
        }
        for (src, dst) in &iso.binds {
            // Detach whatever is mounted there in this private namespace (on a Proxmox host:
            // this namespace's copy of the real /etc/pve). MNT_DETACH never aborts a FUSE
            // connection, and the host's mounts are not affected.
            for _ in 0..8 {
                if libc::umount2(dst.as_ptr(), libc::MNT_DETACH) != 0 {
                    break;
                }
            }
            if libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return fail("bind");
            }
        }
        if libc::sethostname(iso.hostname.as_ptr(), iso.hostname.as_bytes().len()) != 0 {
            return fail("sethostname");
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ProcIo {
    write_bytes: u64,
    cancelled_write_bytes: u64,
    wchar: u64,
}

fn proc_io(pid: u32) -> io::Result<ProcIo> {
    let text = fs::read_to_string(format!("/proc/{pid}/io"))?;
    let mut io = ProcIo::default();
    for line in text.lines() {
        let (k, v) = line.split_once(':').unwrap_or((line, "0"));
        let v: u64 = v.trim().parse().unwrap_or(0);
        match k {
            "write_bytes" => io.write_bytes = v,
            "cancelled_write_bytes" => io.cancelled_write_bytes = v,
            "wchar" => io.wchar = v,
            _ => {}
        }
    }
    Ok(io)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NgStats {
    commits: u64,
    wal_syncs: u64,
    dirty: bool,
    failed: bool,
}

/// Mount point and filesystem type of every mount in `/proc/PID/mountinfo`.
fn mounts_of(pid: &str) -> Vec<(String, String)> {
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
struct Daemon {
    spec: DaemonSpec,
    child: Child,
    pid: u32,
    /// Mount point as seen in the daemon's mount namespace.
    ns_mountpoint: String,
    /// Path through which this process reaches the mounted filesystem.
    access: PathBuf,
    log: Arc<Mutex<VecDeque<String>>>,
    dirs: InstanceDirs,
}

fn drain(stream: impl Read + Send + 'static, log: Arc<Mutex<VecDeque<String>>>) {
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
    fn start(spec: &DaemonSpec, cfg: &Config) -> io::Result<Daemon> {
        let dirs = InstanceDirs::new(&cfg.base_dir, &cfg.shm_dir)?;
        if let Some(golden) = &cfg.golden {
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

    fn log_tail(&self) -> String {
        let l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        l.iter()
            .rev()
            .take(15)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n    ")
    }

    fn wait_mounted(&self) -> io::Result<()> {
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

    fn exited(&self) -> bool {
        // A zombie child still has /proc/PID; look at its state.
        fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .map(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
                    .unwrap_or(false)
            })
            .unwrap_or(true)
    }

    fn io(&self) -> io::Result<ProcIo> {
        proc_io(self.pid)
    }

    /// Asks a pmxcfs-ng daemon for its counters (SIGUSR1 → stats file on tmpfs).
    fn stats(&self) -> Option<NgStats> {
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
                    wal_syncs: v["wal_syncs"].as_u64()?,
                    dirty: v["dirty"].as_bool()?,
                    failed: v["failed"].as_bool().unwrap_or(false),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// Waits until everything the workload did is on its way to disk: for pmxcfs-ng until
    /// nothing is dirty and the commit and WAL-sync counters have not moved for 1.2 s (so the
    /// once-a-second WAL fdatasync has run), for other daemons until write_bytes has not moved
    /// for 2 s. Never less than 1.1 s.
    fn wait_committed(&self) -> io::Result<Duration> {
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
            if start.elapsed() > Duration::from_secs(120) {
                return Err(other(format!(
                    "daemon {} did not settle within 120 s",
                    self.spec.name
                )));
            }
        }
    }

    /// fsync every file of the database directory, so pages dirtied before the measurement
    /// (database copy, start-up, set-up) are clean and the workload's writes are counted.
    fn sync_db_dir(&self) -> io::Result<()> {
        for e in fs::read_dir(self.dirs.db_dir())? {
            let p = e?.path();
            if p.is_file() {
                if let Ok(f) = File::open(&p) {
                    f.sync_all()?;
                }
            }
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

// ---------------------------------------------------------------------------------------------
// Measurement

#[derive(Clone, Debug)]
struct Rep {
    logical: u64,
    written: u64,
    cancelled: u64,
    wchar: u64,
    elapsed: f64,
    ops: u64,
    txns: Option<u64>,
    wal_syncs: Option<u64>,
    settle: f64,
    /// Written by a checkpoint of the WAL frames left at the end (not part of `written`).
    ckpt: u64,
}

struct Config {
    daemons: Vec<DaemonSpec>,
    workloads: Vec<Workload>,
    reps: usize,
    params: Params,
    json: PathBuf,
    svg: PathBuf,
    base_dir: PathBuf,
    shm_dir: PathBuf,
    golden: Option<PathBuf>,
}

fn run_rep(spec: &DaemonSpec, w: Workload, cfg: &Config) -> io::Result<Rep> {
    let d = Daemon::start(spec, cfg)?;
    w.setup(&d.access)
        .map_err(|e| other(format!("setup: {e}")))?;
    d.wait_committed()?;
    // Start from an empty WAL (as right after a checkpoint), so what is left in it at the end
    // is the workload's, and from clean pages.
    checkpoint_debt(&d.dirs.db_dir().join("config.db"))?;
    d.sync_db_dir()?;
    let io0 = d.io()?;
    let s0 = d.stats();
    let t0 = Instant::now();
    let out = w.run(&d.access, &cfg.params).map_err(|e| {
        other(format!(
            "workload: {e}; daemon output:\n    {}",
            d.log_tail()
        ))
    })?;
    let elapsed = t0.elapsed().as_secs_f64();
    let settle = d.wait_committed()?.as_secs_f64();
    let io1 = d.io()?;
    let s1 = d.stats();
    let ckpt = checkpoint_debt(&d.dirs.db_dir().join("config.db"))?;
    let (txns, wal_syncs) = match (s0, s1) {
        (Some(a), Some(b)) => (Some(b.commits - a.commits), Some(b.wal_syncs - a.wal_syncs)),
        _ => (None, None),
    };
    drop(d);
    Ok(Rep {
        logical: out.logical,
        written: io1.write_bytes - io0.write_bytes,
        cancelled: io1.cancelled_write_bytes - io0.cancelled_write_bytes,
        wchar: io1.wchar - io0.wchar,
        elapsed,
        ops: out.ops,
        txns,
        wal_syncs,
        settle,
        ckpt,
    })
}

fn thread_write_bytes() -> io::Result<u64> {
    let text = fs::read_to_string("/proc/thread-self/io")?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// Bytes a checkpoint of what the workload left in the WAL writes (the daemon's SQLite pays
/// this later: at the next automatic checkpoint or when it closes the database). Measured by
/// running `PRAGMA wal_checkpoint(PASSIVE)` from this thread, after the daemon's own
/// write_bytes has been read.
fn checkpoint_debt(db: &Path) -> io::Result<u64> {
    let sqlerr = |e: rusqlite::Error| other(format!("checkpoint of {}: {e}", db.display()));
    let before = thread_write_bytes()?;
    let conn = rusqlite::Connection::open(db).map_err(sqlerr)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(sqlerr)?;
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        .map_err(sqlerr)?;
    // synchronous=NORMAL checkpoints fsync the database; do it here in any case.
    File::open(db)?.sync_all()?;
    let after = thread_write_bytes()?;
    drop(conn);
    Ok(after - before)
}

struct Row {
    workload: Workload,
    daemon: String,
    reps: Vec<Rep>,
    errors: Vec<String>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

struct Summary {
    logical: f64,
    written: f64,
    ratio: f64,
    per_op: f64,
    ops_per_s: f64,
    txns: Option<f64>,
    wal_syncs: Option<f64>,
    per_day: Option<f64>,
    ckpt: f64,
}

impl Row {
    fn summary(&self, p: &Params) -> Option<Summary> {
        if self.reps.is_empty() {
            return None;
        }
        let m = |f: &dyn Fn(&Rep) -> f64| median(self.reps.iter().map(f).collect()).unwrap_or(0.0);
        let mo = |f: &dyn Fn(&Rep) -> Option<u64>| {
            median(self.reps.iter().filter_map(f).map(|x| x as f64).collect())
        };
        let logical = m(&|r| r.logical as f64);
        let written = m(&|r| r.written as f64);
        Some(Summary {
            logical,
            written,
            ratio: m(&|r| r.written as f64 / (r.logical.max(1)) as f64),
            per_op: m(&|r| r.written as f64 / r.ops.max(1) as f64),
            ops_per_s: m(&|r| r.ops as f64 / r.elapsed.max(1e-9)),
            txns: mo(&|r| r.txns),
            wal_syncs: mo(&|r| r.wal_syncs),
            ckpt: m(&|r| r.ckpt as f64),
            per_day: if self.workload.paced() {
                Some(written * 86400.0 / p.idle_secs)
            } else {
                None
            },
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting

fn fmt_bytes(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} B")
    } else if v < 10.0 {
        format!("{v:.2} {}", units[i])
    } else if v < 100.0 {
        format!("{v:.1} {}", units[i])
    } else {
        format!("{v:.0} {}", units[i])
    }
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let (sign, digits) = if let Some(d) = s.strip_prefix('-') {
        ("-", d)
    } else {
        ("", s.as_str())
    };
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn fmt_ratio(r: f64, times: &str) -> String {
    if r < 10.0 {
        format!("{r:.2}{times}")
    } else if r < 100.0 {
        format!("{r:.1}{times}")
    } else {
        format!("{}{times}", thousands(r))
    }
}

fn fmt_rate(v: f64) -> String {
    if v >= 100.0 {
        thousands(v)
    } else {
        format!("{v:.2}")
    }
}

fn table(rows: &[Row], p: &Params) -> String {
    let header = [
        "workload",
        "daemon",
        "reps",
        "logical",
        "written",
        "ratio",
        "written/op",
        "ops/s",
        "txns",
        "+ckpt",
        "note",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        match r.summary(p) {
            Some(s) => lines.push(vec![
                r.workload.name().into(),
                r.daemon.clone(),
                r.reps.len().to_string(),
                fmt_bytes(s.logical),
                fmt_bytes(s.written),
                fmt_ratio(s.ratio, "x"),
                fmt_bytes(s.per_op),
                fmt_rate(s.ops_per_s),
                s.txns.map(thousands).unwrap_or_else(|| "n/a".into()),
                fmt_bytes(s.ckpt),
                {
                    let mut note = s
                        .per_day
                        .map(|d| format!("{}/day", fmt_bytes(d)))
                        .unwrap_or_default();
                    if !r.errors.is_empty() {
                        note.push_str(&format!(" ({} failed)", r.errors.len()));
                    }
                    note.trim().to_string()
                },
            ]),
            None => lines.push(vec![
                r.workload.name().into(),
                r.daemon.clone(),
                "0".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!(
                    "FAILED: {}",
                    r.errors
                        .first()
                        .map(|e| e.lines().next().unwrap_or(""))
                        .unwrap_or("")
                ),
            ]),
        }
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in l.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            // Text columns left-aligned, numbers right-aligned.
            if c < 2 || c == header.len() - 1 {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
            line.push_str("  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            out.push('\n');
        }
    }
    out
}

/// Axis label of a decade: 0.1×, 1×, 10×, 1,000×.
fn decade(v: f64) -> String {
    if v < 1.0 {
        format!("{}×", v)
    } else {
        format!("{}×", thousands(v))
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A grouped bar chart of the write amplification, log scale, written by hand.
fn svg(rows: &[Row], cfg: &Config, machine: &Machine) -> String {
    let p = &cfg.params;
    let daemons: Vec<&str> = cfg.daemons.iter().map(|d| d.name.as_str()).collect();
    let workloads = &cfg.workloads;
    let summary = |w: Workload, d: &str| {
        rows.iter()
            .find(|r| r.workload == w && r.daemon == d)
            .and_then(|r| r.summary(p))
    };
    let value = |w: Workload, d: &str| summary(w, d).map(|s| s.ratio);
    let with_ckpt =
        |w: Workload, d: &str| summary(w, d).map(|s| (s.written + s.ckpt) / s.logical.max(1.0));
    let vals: Vec<f64> = workloads
        .iter()
        .flat_map(|w| daemons.iter().filter_map(move |d| value(*w, d)))
        .filter(|v| *v > 0.0)
        .collect();
    let vmin = vals.iter().copied().fold(f64::INFINITY, f64::min).min(1.0);
    let vmax = workloads
        .iter()
        .flat_map(|w| daemons.iter().filter_map(move |d| with_ckpt(*w, d)))
        .fold(vals.iter().copied().fold(1.0, f64::max), f64::max);
    let lo = 10f64.powf((vmin / 2.0).log10().floor());
    let mut hi = 10f64.powf(vmax.log10().ceil());
    if hi <= vmax * 1.5 {
        hi *= 10.0;
    }
    let colors = [
        "#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#c53030", "#d69e2e", "#319795", "#718096",
    ];
    let nd = daemons.len().max(1);
    let bar_w = 34.0;
    let group_w = (nd as f64 * (bar_w + 4.0) + 36.0)
        .max(112.0)
        .max(700.0 / workloads.len().max(1) as f64);
    let (left, right, top, bottom) = (78.0, 24.0, 96.0, 56.0);
    let plot_h = 340.0;
    let width = left + right + group_w * workloads.len().max(1) as f64;
    let height = top + plot_h + bottom;
    let y = |v: f64| top + plot_h * (1.0 - (v.log10() - lo.log10()) / (hi.log10() - lo.log10()));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="22" font-size="15" font-weight="bold">Write amplification: daemon write_bytes / bytes written by the workload</text>"#
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="40" fill="#444">{}</text>"##,
        xml_escape(&format!(
            "median of {} repetitions, log scale; {}; {} cores, Linux {}, database on {}",
            cfg.reps, machine.date, machine.cores, machine.kernel, machine.fs
        ))
    );
    // Legend
    let mut lx = left;
    for (i, d) in daemons.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="54" width="12" height="12" fill="{}"/>"#,
            colors[i % colors.len()]
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="64">{}</text>"#,
            lx + 17.0,
            xml_escape(d)
        );
        lx += 30.0 + 7.5 * d.len() as f64;
    }
    let _ = writeln!(
        s,
        r##"<text x="{lx}" y="64" fill="#444">(pale top: what a checkpoint of the WAL left at the end adds)</text>"##
    );
    // Grid: decades with labels, minor ticks 2..9.
    let mut dec = lo;
    while dec <= hi * 1.0001 {
        let yy = y(dec);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#bbb"/>"##,
            width - right
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            yy + 4.0,
            decade(dec)
        );
        if dec < hi {
            for k in 2..10 {
                let ym = y(dec * k as f64);
                let _ = writeln!(
                    s,
                    r##"<line x1="{left}" x2="{:.1}" y1="{ym:.1}" y2="{ym:.1}" stroke="#eee"/>"##,
                    width - right
                );
            }
        }
        dec *= 10.0;
    }
    let _ = writeln!(
        s,
        r##"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle" fill="#444">write amplification (log)</text>"##,
        top + plot_h / 2.0
    );
    // Bars
    for (gi, w) in workloads.iter().enumerate() {
        let gx = left + gi as f64 * group_w;
        let inner = nd as f64 * (bar_w + 4.0) - 4.0;
        let x0 = gx + (group_w - inner) / 2.0;
        for (di, d) in daemons.iter().enumerate() {
            let x = x0 + di as f64 * (bar_w + 4.0);
            match value(*w, d) {
                Some(v) if v > 0.0 => {
                    let yt = y(v);
                    if let Some(vc) = with_ckpt(*w, d).filter(|vc| *vc > v * 1.01) {
                        let yc = y(vc);
                        let _ = writeln!(
                            s,
                            r#"<rect x="{x:.1}" y="{yc:.1}" width="{bar_w}" height="{:.1}" fill="{}" fill-opacity="0.3"><title>{}: {} with pending checkpoint = {}</title></rect>"#,
                            (yt - yc).max(0.5),
                            colors[di % colors.len()],
                            xml_escape(w.name()),
                            xml_escape(d),
                            fmt_ratio(vc, "×")
                        );
                    }
                    let _ = writeln!(
                        s,
                        r#"<rect x="{x:.1}" y="{yt:.1}" width="{bar_w}" height="{:.1}" fill="{}"><title>{}: {} = {}</title></rect>"#,
                        (top + plot_h - yt).max(0.5),
                        colors[di % colors.len()],
                        xml_escape(w.name()),
                        xml_escape(d),
                        fmt_ratio(v, "×")
                    );
                    let ylabel = with_ckpt(*w, d).map(|vc| y(vc).min(yt)).unwrap_or(yt);
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{:.1}" font-size="9.5" text-anchor="middle">{}</text>"#,
                        x + bar_w / 2.0,
                        ylabel - 4.0,
                        fmt_ratio(v, "×")
                    );
                }
                _ => {
                    let _ = writeln!(
                        s,
                        r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#c53030">n/a</text>"##,
                        x + bar_w / 2.0,
                        top + plot_h - 4.0
                    );
                }
            }
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            gx + group_w / 2.0,
            top + plot_h + 20.0,
            xml_escape(w.name())
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        width - right,
        top + plot_h,
        top + plot_h
    );
    let _ = writeln!(
        s,
        r##"<line x1="{left}" x2="{left}" y1="{top}" y2="{:.1}" stroke="#333"/>"##,
        top + plot_h
    );
    let _ = writeln!(s, "</svg>");
    s
}

// ---------------------------------------------------------------------------------------------
// Machine description

struct Machine {
    date: String,
    cores: usize,
    kernel: String,
    cpu: String,
    fs: String,
}

fn utc_date() -> String {
    let secs = unix_now() as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil from days (H. Hinnant).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Filesystem type and device of the mount holding `path` (longest mount-point prefix).
fn fs_of(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return "unknown".into();
    };
    let mut best: Option<(usize, String)> = None;
    for l in text.lines() {
        let Some(mp) = l.split(' ').nth(4) else {
            continue;
        };
        let mp = mp.replace("\\040", " ");
        if path.starts_with(&mp) && best.as_ref().is_none_or(|(n, _)| mp.len() >= *n) {
            let mut tail = l.split(" - ").nth(1).unwrap_or("").split(' ');
            let fstype = tail.next().unwrap_or("?");
            let dev = tail.next().unwrap_or("?");
            best = Some((mp.len(), format!("{fstype} ({dev})")));
        }
    }
    best.map(|b| b.1).unwrap_or_else(|| "unknown".into())
}

fn machine(base: &Path) -> Machine {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    Machine {
        date: utc_date(),
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        cpu,
        fs: format!("{} {}", base.display(), fs_of(base)),
    }
}

// ---------------------------------------------------------------------------------------------
// Command line

const USAGE: &str = "\
usage: cargo bench --bench write_amplification -- [OPTIONS]

  --daemon NAME=CMD   a daemon to measure (repeatable). CMD is split on spaces; {root} and
                      {node} are replaced per instance. With {root} the daemon runs as given
                      (pmxcfs-ng: 'pmxcfs -f -l --root {root} --nodename {node}'); without it
                      the daemon is taken to use the real paths (/etc/pve, /var/lib/pve-cluster,
                      /run/pve-cluster) and runs isolated in private mount, network and UTS
                      namespaces with temporary directories bound over them (the original:
                      'orig=/usr/bin/pmxcfs -f -l'). NAME alone selects a built-in:
                      pmxcfs-ng, pmxcfs-ng-delay (--commit-delay 1000).
                      Default: pmxcfs-ng.
  --with-delay        also measure the built-in pmxcfs-ng-delay
  --workload NAME     run only this workload (repeatable); --list shows them
  --reps N            repetitions per daemon and workload, median reported (default 3)
  --idle-seconds S    duration of ha-idle-minute (default 60; 6 with --quick)
  --count N           updates for ha-status and rewrite-4k (default 200; 20 with --quick)
  --guests N          configs for guest-configs (default 1000; 100 with --quick)
  --json FILE         JSON results (default TARGET/write-amplification/results.json)
  --svg FILE          SVG chart (default TARGET/write-amplification/chart.svg)
  --dir DIR           where instance directories (databases) go; must be a real disk
                      filesystem, not tmpfs (default /tmp)
  --db FILE           database copied into every instance before start
                      (default ../shared/golden/c-config.db beside the checkout; 'none' = empty database)
  --quick             smoke test: 1 repetition, small counts, 6 s idle
  --list              list the workloads and exit
";

fn default_out_dir() -> PathBuf {
    // target/<profile>/deps/write_amplification-HASH -> target/write-amplification
    std::env::current_exe()
        .ok()
        .and_then(|p| p.ancestors().nth(3).map(|t| t.join("write-amplification")))
        .unwrap_or_else(|| PathBuf::from("write-amplification"))
}

fn parse_args(args: Vec<String>) -> Result<Option<Config>, String> {
    let mut daemons = Vec::new();
    let mut workloads = Vec::new();
    let mut reps = None;
    let mut idle = None;
    let mut count = None;
    let mut guests = None;
    let mut quick = false;
    let mut with_delay = false;
    let out = default_out_dir();
    let mut json = out.join("results.json");
    let mut svg = out.join("chart.svg");
    let mut base = PathBuf::from("/tmp");
    let mut golden = Some(PathBuf::from(DEFAULT_GOLDEN));
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") && f != "--daemon" => {
                (f.to_string(), Some(v.to_string()))
            }
            _ => (a.clone(), None),
        };
        let mut val = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--bench" => {}
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "--list" => {
                let p = Params {
                    ha_count: 200,
                    guest_count: 1000,
                    rewrite_count: 200,
                    idle_secs: 60.0,
                };
                for w in ALL_WORKLOADS {
                    println!("{:<15} {}", w.name(), w.describe(&p));
                }
                return Ok(None);
            }
            "--daemon" => {
                let v = val("--daemon")?;
                let spec = match v.split_once('=') {
                    Some((name, cmd)) => DaemonSpec::parse(name.trim(), cmd)?,
                    None => DaemonSpec::builtin(v.trim())
                        .ok_or_else(|| format!("no built-in daemon '{v}' (use NAME=CMD)"))?,
                };
                if daemons.iter().any(|d: &DaemonSpec| d.name == spec.name) {
                    return Err(format!("daemon name '{}' given twice", spec.name));
                }
                daemons.push(spec);
            }
            "--with-delay" => with_delay = true,
            "--workload" => {
                let v = val("--workload")?;
                let w = Workload::from_name(&v)
                    .ok_or_else(|| format!("unknown workload '{v}' (see --list)"))?;
                if !workloads.contains(&w) {
                    workloads.push(w);
                }
            }
            "--reps" => {
                reps = Some(
                    val("--reps")?
                        .parse::<usize>()
                        .map_err(|e| format!("--reps: {e}"))?
                        .max(1),
                )
            }
            "--idle-seconds" => {
                idle = Some(
                    val("--idle-seconds")?
                        .parse::<f64>()
                        .map_err(|e| format!("--idle-seconds: {e}"))?
                        .max(1.0),
                )
            }
            "--count" => {
                count = Some(
                    val("--count")?
                        .parse::<usize>()
                        .map_err(|e| format!("--count: {e}"))?
                        .max(1),
                )
            }
            "--guests" => {
                guests = Some(
                    val("--guests")?
                        .parse::<usize>()
                        .map_err(|e| format!("--guests: {e}"))?
                        .max(1),
                )
            }
            "--json" => json = PathBuf::from(val("--json")?),
            "--svg" => svg = PathBuf::from(val("--svg")?),
            "--dir" => base = PathBuf::from(val("--dir")?),
            "--db" => {
                let v = val("--db")?;
                golden = if v == "none" {
                    None
                } else {
                    Some(PathBuf::from(v))
                };
            }
            "--quick" => quick = true,
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    if daemons.is_empty() {
        daemons
            .push(DaemonSpec::builtin("pmxcfs-ng").ok_or("built-in pmxcfs-ng binary not found")?);
    }
    if with_delay && !daemons.iter().any(|d| d.name == "pmxcfs-ng-delay") {
        daemons.push(
            DaemonSpec::builtin("pmxcfs-ng-delay").ok_or("built-in pmxcfs-ng binary not found")?,
        );
    }
    if workloads.is_empty() {
        workloads = ALL_WORKLOADS.to_vec();
    }
    if let Some(g) = &golden {
        if !g.is_file() {
            return Err(format!(
                "database '{}' not found (--db FILE, or --db none for an empty one)",
                g.display()
            ));
        }
    }
    let (dc, dg, di) = if quick {
        (20, 100, 6.0)
    } else {
        (200, 1000, 60.0)
    };
    let params = Params {
        ha_count: count.unwrap_or(dc),
        guest_count: guests.unwrap_or(dg),
        rewrite_count: count.unwrap_or(dc),
        idle_secs: idle.unwrap_or(di),
    };
    Ok(Some(Config {
        daemons,
        workloads,
        reps: reps.unwrap_or(if quick { 1 } else { 3 }),
        params,
        json,
        svg,
        base_dir: base,
        shm_dir: PathBuf::from("/dev/shm"),
        golden,
    }))
}

// ---------------------------------------------------------------------------------------------

fn rep_json(r: &Rep) -> Value {
    json!({
        "logical_bytes": r.logical,
        "write_bytes": r.written,
        "cancelled_write_bytes": r.cancelled,
        "wchar": r.wchar,
        "ratio": r.written as f64 / r.logical.max(1) as f64,
        "ops": r.ops,
        "elapsed_s": r.elapsed,
        "ops_per_s": r.ops as f64 / r.elapsed.max(1e-9),
        "sqlite_transactions": r.txns,
        "wal_syncs": r.wal_syncs,
        "settle_s": r.settle,
        "checkpoint_debt_bytes": r.ckpt,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench")
        && !args
            .iter()
            .any(|a| a == "--help" || a == "-h" || a == "--list")
    {
        // `cargo test --all-targets` runs harness=false benches without --bench: do nothing.
        println!("write_amplification: run with `cargo bench --bench write_amplification` (or pass --bench)");
        return;
    }
    let cfg = match parse_args(args) {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => {
            eprintln!("write_amplification: {e}");
            std::process::exit(2);
        }
    };
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("write_amplification: needs root (FUSE mounts, mount and network namespaces)");
        std::process::exit(2);
    }
    install_signal_handlers();
    let m = machine(&cfg.base_dir);
    if m.fs.contains("tmpfs") {
        eprintln!(
            "warning: {} is tmpfs: write_bytes stays 0 there; use --dir on a disk filesystem",
            cfg.base_dir.display()
        );
    }
    eprintln!(
        "write_amplification: {} | {} cores ({}) | Linux {} | instances in {}",
        m.date, m.cores, m.cpu, m.kernel, m.fs
    );
    for d in &cfg.daemons {
        eprintln!(
            "  daemon {:<16} {}{}{}",
            d.name,
            d.command_line(),
            if d.isolated {
                "  [isolated: private mount+net+uts namespaces]"
            } else {
                ""
            },
            if d.has_stats {
                "  [stats: SQLite transactions counted]"
            } else {
                "  [no stats: settles on write_bytes]"
            }
        );
    }
    for w in &cfg.workloads {
        eprintln!("  workload {:<15} {}", w.name(), w.describe(&cfg.params));
    }

    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    for &w in &cfg.workloads {
        if ABORT.load(Ordering::SeqCst) {
            break;
        }
        let mut wrows: Vec<Row> = cfg
            .daemons
            .iter()
            .map(|d| Row {
                workload: w,
                daemon: d.name.clone(),
                reps: Vec::new(),
                errors: Vec::new(),
            })
            .collect();
        let report =
            |d: &DaemonSpec, rep: usize, r: &io::Result<Rep>| match r {
                Ok(r) => eprintln!(
                "[{:>6.1}s] {:<15} {:<16} rep {}: wrote {} for {} ({}), {} ops in {:.2} s, txns {}",
                started.elapsed().as_secs_f64(),
                w.name(),
                d.name,
                rep + 1,
                fmt_bytes(r.written as f64),
                fmt_bytes(r.logical as f64),
                fmt_ratio(r.written as f64 / r.logical.max(1) as f64, "x"),
                r.ops,
                r.elapsed,
                r.txns.map(|t| t.to_string()).unwrap_or_else(|| "n/a".into())
            ),
                Err(e) => eprintln!(
                    "[{:>6.1}s] {:<15} {:<16} rep {}: FAILED: {e}",
                    started.elapsed().as_secs_f64(),
                    w.name(),
                    d.name,
                    rep + 1
                ),
            };
        if w.paced() {
            // Mostly sleeping: run every daemon × repetition at the same time.
            let results: Vec<(usize, usize, io::Result<Rep>)> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..cfg.reps)
                    .flat_map(|rep| {
                        cfg.daemons
                            .iter()
                            .enumerate()
                            .map(move |(di, d)| (rep, di, d))
                    })
                    .map(|(rep, di, d)| {
                        let cfg = &cfg;
                        (rep, di, s.spawn(move || run_rep(d, w, cfg)))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|(rep, di, h)| {
                        (
                            rep,
                            di,
                            h.join()
                                .unwrap_or_else(|_| Err(other("benchmark thread panicked"))),
                        )
                    })
                    .collect()
            });
            for (rep, di, r) in results {
                report(&cfg.daemons[di], rep, &r);
                match r {
                    Ok(r) => wrows[di].reps.push(r),
                    Err(e) => wrows[di].errors.push(e.to_string()),
                }
            }
        } else {
            // Interleave daemons within each repetition so slow drifts hit all alike.
            'reps: for rep in 0..cfg.reps {
                for (di, d) in cfg.daemons.iter().enumerate() {
                    if ABORT.load(Ordering::SeqCst) {
                        break 'reps;
                    }
                    let r = run_rep(d, w, &cfg);
                    report(d, rep, &r);
                    match r {
                        Ok(r) => wrows[di].reps.push(r),
                        Err(e) => wrows[di].errors.push(e.to_string()),
                    }
                }
            }
        }
        rows.extend(wrows);
    }

    let p = &cfg.params;
    println!();
    println!(
        "write amplification — {} — {} cores ({}), Linux {}, instances on {} — median of {} rep(s), {:.0} s",
        m.date,
        m.cores,
        m.cpu,
        m.kernel,
        m.fs,
        cfg.reps,
        started.elapsed().as_secs_f64()
    );
    print!("{}", table(&rows, p));
    println!("written = daemon write_bytes delta (/proc/PID/io, whole process); ratio = written / logical; txns = SQLite transactions;");
    println!("+ckpt = written later by a checkpoint of the WAL frames left at the end (measured separately, not in `written`)");

    let results: Vec<Value> = rows
        .iter()
        .map(|r| {
            let s = r.summary(p);
            json!({
                "workload": r.workload.name(),
                "daemon": r.daemon,
                "median": s.as_ref().map(|s| json!({
                    "logical_bytes": s.logical,
                    "write_bytes": s.written,
                    "ratio": s.ratio,
                    "write_bytes_per_op": s.per_op,
                    "ops_per_s": s.ops_per_s,
                    "sqlite_transactions": s.txns,
                    "wal_syncs": s.wal_syncs,
                    "write_bytes_per_day": s.per_day,
                    "checkpoint_debt_bytes": s.ckpt,
                })),
                "reps": r.reps.iter().map(rep_json).collect::<Vec<_>>(),
                "errors": r.errors,
            })
        })
        .collect();
    let doc = json!({
        "benchmark": "write_amplification",
        "date": m.date,
        "machine": { "cores": m.cores, "cpu": m.cpu, "kernel": m.kernel, "instance_fs": m.fs },
        "settings": {
            "reps": cfg.reps,
            "ha_status_count": p.ha_count,
            "guest_configs": p.guest_count,
            "rewrite_4k_count": p.rewrite_count,
            "idle_seconds": p.idle_secs,
            "database": cfg.golden.as_ref().map(|g| g.display().to_string()),
        },
        "daemons": cfg.daemons.iter().map(|d| json!({
            "name": d.name, "command": d.command_line(), "isolated": d.isolated, "stats": d.has_stats,
        })).collect::<Vec<_>>(),
        "workloads": cfg.workloads.iter().map(|w| json!({"name": w.name(), "description": w.describe(p)})).collect::<Vec<_>>(),
        "results": results,
    });
    let write_out = |path: &Path, text: String| {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = fs::create_dir_all(dir);
        }
        match fs::write(path, text) {
            Ok(()) => println!("wrote {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
    };
    write_out(
        &cfg.json,
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n",
    );
    write_out(&cfg.svg, svg(&rows, &cfg, &m));
    if ABORT.load(Ordering::SeqCst) {
        eprintln!("interrupted");
        std::process::exit(130);
    }
    if rows.iter().any(|r| !r.errors.is_empty()) {
        std::process::exit(1);
    }
}
