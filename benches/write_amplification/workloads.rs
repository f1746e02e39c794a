//! The workloads: what an application (or an idle Proxmox cluster) does to /etc/pve.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::IntoRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{check_abort, other, sleep_checked, Config};

/// The node the workloads write as (the golden database has pve1..pve3).
pub(crate) const NODE: &str = "pve1";
pub(crate) const NODES: [&str; 3] = ["pve1", "pve2", "pve3"];
const MIB: u64 = 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Workload {
    /// One new 1 MiB file written in writes of this many bytes.
    Dd(usize),
    HaStatus,
    GuestConfigs,
    Rewrite4k,
    HaIdle,
    /// The idle pattern on a database with 100,000 more files.
    HaIdle100k,
}

pub(crate) const ALL_WORKLOADS: [Workload; 9] = [
    Workload::Dd(512),
    Workload::Dd(4096),
    Workload::Dd(128 * 1024),
    Workload::Dd(1024 * 1024),
    Workload::HaStatus,
    Workload::GuestConfigs,
    Workload::Rewrite4k,
    Workload::HaIdle,
    Workload::HaIdle100k,
];

#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    pub(crate) ha_count: usize,
    pub(crate) guest_count: usize,
    pub(crate) rewrite_count: usize,
    pub(crate) idle_secs: f64,
}

/// What a workload did: bytes handed to write(2) and the number of operations.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RunOutput {
    pub(crate) logical: u64,
    pub(crate) ops: u64,
}

impl Workload {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Dd(512) => "dd-512",
            Workload::Dd(4096) => "dd-4k",
            Workload::Dd(131072) => "dd-128k",
            Workload::Dd(1048576) => "dd-1m",
            Workload::Dd(_) => "dd-?",
            Workload::HaStatus => "ha-status",
            Workload::GuestConfigs => "guest-configs",
            Workload::Rewrite4k => "rewrite-4k",
            Workload::HaIdle => "ha-idle",
            Workload::HaIdle100k => "ha-idle-100k",
        }
    }

    pub(crate) fn from_name(s: &str) -> Option<Workload> {
        ALL_WORKLOADS.iter().copied().find(|w| w.name() == s)
    }

    pub(crate) fn describe(self, p: &Params) -> String {
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
            Workload::HaIdle100k => format!(
                "the ha-idle pattern for {} s on the database with 100,000 more 200-byte files (bench/dNN/fNNNNN)",
                p.idle_secs
            ),
        }
    }

    /// The database the daemon starts on: the golden one, or one derived from it.
    pub(crate) fn database(self, cfg: &Config) -> io::Result<Option<PathBuf>> {
        match self {
            Workload::HaIdle100k => crate::bigdb::prepare(cfg.golden.as_deref(), &cfg.work_dir, 100_000).map(Some),
            _ => Ok(cfg.golden.clone()),
        }
    }

    /// Paced workloads mostly sleep; their instances run concurrently.
    pub(crate) fn paced(self) -> bool {
        matches!(self, Workload::HaIdle | Workload::HaIdle100k)
    }

    /// Unmeasured preparation (directories, the file to rewrite, stale locks).
    pub(crate) fn setup(self, mnt: &Path) -> io::Result<()> {
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
            Workload::HaIdle | Workload::HaIdle100k => {
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

    pub(crate) fn run(self, mnt: &Path, p: &Params) -> io::Result<RunOutput> {
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
            Workload::HaIdle | Workload::HaIdle100k => run_ha_idle(mnt, p.idle_secs),
        }
    }
}

pub(crate) const REWRITE_FILE: &str = "bench-rewrite-4k.cfg";
pub(crate) const IDLE_LOCKS: [&str; 2] = ["file-jobs_cfg", "file-replication_cfg"];

pub(crate) fn mkdirs(mnt: &Path, rel: &str) -> io::Result<()> {
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
pub(crate) fn close_checked(f: File) -> io::Result<()> {
    let fd = f.into_raw_fd();
    // SAFETY: fd is owned and closed exactly once.
    if unsafe { libc::close(fd) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Printable bytes, varying with `seed`.
pub(crate) fn payload(len: usize, seed: usize) -> Vec<u8> {
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

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The LRM's status update as pve-ha-lrm does it (PVE::Tools::file_set_contents): write a
/// temporary file, close, rename it onto lrm_status. Returns the bytes written (83).
pub(crate) fn write_lrm_status(mnt: &Path, node: &str, ts: u64) -> io::Result<u64> {
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
pub(crate) fn lock_cycle(mnt: &Path, lock: &str) -> io::Result<()> {
    let dir = mnt.join("priv/lock").join(lock);
    fs::create_dir(&dir).map_err(|e| other(format!("mkdir {}: {e}", dir.display())))?;
    let cfg = lock.trim_start_matches("file-").replace('_', ".");
    let _ = fs::read(mnt.join(cfg));
    fs::remove_dir(&dir).map_err(|e| other(format!("rmdir {}: {e}", dir.display())))
}

/// A ~500-byte qemu-server config.
pub(crate) fn guest_config(vmid: u32) -> String {
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
pub(crate) fn run_ha_idle(mnt: &Path, secs: f64) -> io::Result<RunOutput> {
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

