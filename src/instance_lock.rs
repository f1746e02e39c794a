//! One daemon per database: an exclusive flock on `.pmxcfs.lockfile`, tried 11 times over
//! about 10 s like the original, held until the process exits.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::Duration;

use tracing::warn;

/// Takes the lock or explains why not.
pub fn acquire(path: &Path, attempts: u32) -> Result<File, String> {
    let f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("unable to open lock file '{}': {e}", path.display()))?;
    for i in 0..attempts {
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(f);
        }
        if i == 0 {
            warn!(target: "main", "unable to acquire pmxcfs lock - trying again");
        }
        if i + 1 < attempts {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    Err(format!("unable to acquire pmxcfs lock '{}' - is another instance running?", path.display()))
}
