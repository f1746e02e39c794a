//! What the daemon wrote: its `/proc/PID/io`, this thread's checkpoint writes, and the
//! sectors written at an instance's own loop device (`/sys/block/loopN/stat`).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::other;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProcIo {
    pub(crate) write_bytes: u64,
    pub(crate) cancelled_write_bytes: u64,
    pub(crate) wchar: u64,
}

pub(crate) fn proc_io(pid: u32) -> io::Result<ProcIo> {
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
pub(crate) struct NgStats {
    pub(crate) commits: u64,
    pub(crate) store_transactions: u64,
    pub(crate) wal_syncs: u64,
    pub(crate) dirty: bool,
    pub(crate) failed: bool,
    /// config.db locked exclusively (None: shared all the time, or a build without the
    /// exclusive-when-alone store).
    pub(crate) db_exclusive: Option<bool>,
}

pub(crate) fn thread_write_bytes() -> io::Result<u64> {
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
pub(crate) fn checkpoint_debt(db: &Path) -> io::Result<u64> {
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


/// Size of each instance's loop device (sparse, backed by tmpfs so only the loop device's
/// own statistics see the writes).
const LOOP_DISK_BYTES: u64 = 1 << 30;

/// An ext4 filesystem on a loop device, mounted at the instance's state directory.
pub(crate) struct LoopDisk {
    image: PathBuf,
    device: String,
    mountpoint: PathBuf,
}

fn run(cmd: &mut Command) -> io::Result<String> {
    let out = cmd.output().map_err(|e| other(format!("{cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(other(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl LoopDisk {
    /// Creates the image, attaches it, makes an ext4 without lazy initialisation (which
    /// would write in the background during the measurement) and mounts it.
    pub(crate) fn create(image: &Path, mountpoint: &Path) -> io::Result<LoopDisk> {
        File::create(image)?.set_len(LOOP_DISK_BYTES)?;
        let device = run(Command::new("losetup").args(["-f", "--show"]).arg(image))?;
        let disk = LoopDisk { image: image.to_path_buf(), device, mountpoint: mountpoint.to_path_buf() };
        run(Command::new("mkfs.ext4").args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"]).arg(&disk.device))?;
        run(Command::new("mount").args(["-t", "ext4"]).arg(&disk.device).arg(mountpoint))?;
        Ok(disk)
    }

    fn stat_path(&self) -> PathBuf {
        let name = Path::new(&self.device).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        PathBuf::from(format!("/sys/block/{name}/stat"))
    }

    /// syncfs of the filesystem, then the device's sectors written × 512.
    pub(crate) fn synced_bytes_written(&self) -> io::Result<u64> {
        let dir = File::open(&self.mountpoint)?;
        // SAFETY: syncfs on an open descriptor.
        if unsafe { libc::syncfs(std::os::unix::io::AsRawFd::as_raw_fd(&dir)) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let stat = fs::read_to_string(self.stat_path())?;
        let sectors: u64 = stat.split_whitespace().nth(6).and_then(|v| v.parse().ok()).ok_or_else(|| other("bad /sys/block stat"))?;
        Ok(sectors * 512)
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let mp = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(self.mountpoint.as_os_str())).unwrap_or_default();
        // SAFETY: plain system calls on our own mount.
        if unsafe { libc::umount2(mp.as_ptr(), 0) } != 0 {
            std::thread::sleep(Duration::from_millis(200));
            // SAFETY: as above.
            unsafe { libc::umount2(mp.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.device).output();
        let _ = fs::remove_file(&self.image);
        let _ = fs::remove_dir(&self.mountpoint);
    }
}
