//! How a daemon instance is set up: its command line, its directories (state directory on
//! its own loop device, run directory on tmpfs) and, for daemons with hard-coded paths, the
//! private namespaces that put those directories where the daemon expects them.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::accounting::LoopDisk;

/// Marker string only pmxcfs-ng binaries contain: such daemons write a stats file on SIGUSR1.
const STATS_MARKER: &[u8] = b"pmxcfs-ng.stats";
/// pmxcfs-ng's default sync interval W (ms), for the trade-off table.
pub(crate) const DEFAULT_W_MS: u64 = 30_000;

#[derive(Clone, Debug)]
pub(crate) struct DaemonSpec {
    pub(crate) name: String,
    /// Command line; `{root}` and `{node}` are replaced per instance.
    pub(crate) argv: Vec<String>,
    /// No `{root}` in the command: the daemon uses the real paths and runs in private
    /// mount/network/UTS namespaces with temporary directories bound over them.
    pub(crate) isolated: bool,
    /// A pmxcfs-ng build: writes its stats file on SIGUSR1 (commit counters, dirty flag).
    pub(crate) has_stats: bool,
    /// The sync interval W this instance runs with, when known (pmxcfs-ng built-ins).
    pub(crate) sync_interval_ms: Option<u64>,
}

pub(crate) fn which(prog: &str) -> Option<PathBuf> {
    if prog.contains('/') {
        return Some(PathBuf::from(prog));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(prog))
            .find(|p| p.is_file())
    })
}

pub(crate) fn file_contains(path: &Path, needle: &[u8]) -> bool {
    let Ok(data) = fs::read(path) else {
        return false;
    };
    data.windows(needle.len()).any(|w| w == needle)
}

impl DaemonSpec {
    pub(crate) fn parse(name: &str, cmd: &str) -> Result<DaemonSpec, String> {
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
            sync_interval_ms: None,
        })
    }

    /// pmxcfs-ng at its default W, or `ng-wMS` at `--sync-interval MS`.
    pub(crate) fn builtin(name: &str) -> Option<DaemonSpec> {
        let bin = env!("CARGO_BIN_EXE_pmxcfs");
        // the benchmark's own checkpoint opens config.db: back to exclusive 2 s after it
        let base = format!("{bin} -f -l --root {{root}} --nodename {{node}} --shared-db-hold 2");
        let (cmd, w) = match name {
            "pmxcfs-ng" => (base, DEFAULT_W_MS),
            "ng-shared" => (format!("{base} --shared-db"), DEFAULT_W_MS),
            _ => {
                let ms: u64 = name.strip_prefix("ng-w")?.parse().ok()?;
                (format!("{base} --sync-interval {ms}"), ms)
            }
        };
        let mut spec = DaemonSpec::parse(name, &cmd).ok()?;
        spec.sync_interval_ms = Some(w);
        Some(spec)
    }

    pub(crate) fn command_line(&self) -> String {
        self.argv.join(" ")
    }
}

/// Per-instance directories: one on the disk under test (database, mount point, overlay
/// layers) — with device accounting an ext4 of its own on a loop device — and one on tmpfs
/// (the run directory: crash record, pid and stats files, as /run on a node).
pub(crate) struct InstanceDirs {
    pub(crate) disk: PathBuf,
    pub(crate) shm: PathBuf,
    /// Dropped after the directories' contents are removed: unmounts and detaches.
    loop_disk: Option<LoopDisk>,
}

static INSTANCE_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl InstanceDirs {
    pub(crate) fn new(base: &Path, shm_base: &Path, device: bool) -> io::Result<InstanceDirs> {
        let tag = format!("pmxcfs-bench-{}-{}", std::process::id(), INSTANCE_COUNTER.fetch_add(1, Ordering::SeqCst));
        let disk = base.join(&tag);
        let shm = shm_base.join(&tag);
        fs::create_dir_all(&disk)?;
        fs::create_dir_all(shm.join("run/pve-cluster"))?;
        let loop_disk = if device { Some(LoopDisk::create(&shm.join("disk.img"), &disk)?) } else { None };
        let dirs = InstanceDirs { disk, shm, loop_disk };
        fs::create_dir_all(dirs.disk.join("etc/pve"))?;
        fs::create_dir_all(dirs.disk.join("var/lib/pve-cluster"))?;
        std::os::unix::fs::symlink(dirs.shm.join("run"), dirs.disk.join("run"))?;
        Ok(dirs)
    }

    pub(crate) fn db_dir(&self) -> PathBuf {
        self.disk.join("var/lib/pve-cluster")
    }

    pub(crate) fn run_dir(&self) -> PathBuf {
        self.shm.join("run/pve-cluster")
    }

    /// Syncs the instance's filesystem and returns the bytes its device has written so far
    /// (None without device accounting).
    pub(crate) fn device_bytes(&self) -> io::Result<Option<u64>> {
        self.loop_disk.as_ref().map(|d| d.synced_bytes_written()).transpose()
    }
}

impl Drop for InstanceDirs {
    fn drop(&mut self) {
        // remove_dir_all does not follow the run symlink; a mount point itself stays (EBUSY)
        // until the loop disk is unmounted when the field is dropped.
        if self.loop_disk.is_some() {
            if let Ok(rd) = fs::read_dir(&self.disk) {
                for e in rd.flatten() {
                    let p = e.path();
                    let _ = if p.is_dir() && !p.is_symlink() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
                }
            }
            self.loop_disk = None;
        }
        let _ = fs::remove_dir_all(&self.disk);
        let _ = fs::remove_dir_all(&self.shm);
    }
}

pub(crate) fn cstr(p: impl AsRef<std::ffi::OsStr>) -> CString {
    CString::new(p.as_ref().as_bytes()).expect("path without NUL")
}

/// What the child does between fork and exec to isolate a daemon with hard-coded paths.
pub(crate) struct Isolation {
    /// (parent dir, overlay options, missing target to create inside the overlay)
    pub(crate) overlays: Vec<(CString, CString, CString)>,
    /// (source, target) bind mounts
    pub(crate) binds: Vec<(CString, CString)>,
    pub(crate) hostname: CString,
}

/// Runs in the forked child before exec: only system calls, no allocation.
pub(crate) fn isolate(iso: &Isolation) -> io::Result<()> {
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

