//! Backgrounding like the original: the parent waits until the child reports that the
//! filesystem is mounted ('1' on a pipe), writes the pid file and exits 0; if the child dies
//! first, the parent exits with an error.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

/// The child's end: call [`ReadySignal::ready`] once serving.
pub struct ReadySignal {
    pipe: Option<File>,
}

impl ReadySignal {
    /// Foreground mode: nothing to signal.
    pub fn none() -> ReadySignal {
        ReadySignal { pipe: None }
    }

    /// Tells the waiting parent that the daemon is ready.
    pub fn ready(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(b"1");
        }
    }
}

/// Writes `pid\n` to the pid file through a temp file and rename.
pub fn write_pid_file(path: &Path, pid: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{pid}\n"))?;
    std::fs::rename(&tmp, path)
}

/// Forks. Returns in the child only (with its ready signal); the parent exits.
pub fn daemonize(pid_file: &Path) -> ReadySignal {
    let mut fds = [0i32; 2];
    // SAFETY: pipe() fills two fds we then own.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        eprintln!("[main] crit: pipe failed: {}", std::io::Error::last_os_error());
        std::process::exit(255);
    }
    // SAFETY: fds come from pipe() above.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: called before any thread is started, so the child is a faithful copy.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        eprintln!("[main] crit: fork failed: {}", std::io::Error::last_os_error());
        std::process::exit(255);
    }
    if pid > 0 {
        drop(wr);
        let mut rd = File::from(rd);
        let mut b = [0u8; 1];
        let ok = matches!(rd.read(&mut b), Ok(1) if b[0] == b'1');
        if !ok {
            eprintln!("[main] crit: child failed to send '1'");
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            std::process::exit(255);
        }
        if let Err(e) = write_pid_file(pid_file, pid as u32) {
            eprintln!("[main] crit: unable to write pid file '{}': {e}", pid_file.display());
        }
        // SAFETY: leave without running the child's destructors in the parent.
        unsafe { libc::_exit(0) };
    }
    drop(rd);
    // SAFETY: plain syscalls in the single-threaded child.
    unsafe {
        libc::setsid();
    }
    ReadySignal { pipe: Some(File::from(wr)) }
}

/// Points stdin/stdout/stderr at /dev/null (after the child is ready).
pub fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        use std::os::unix::io::AsRawFd;
        for fd in 0..3 {
            // SAFETY: duplicating a valid fd onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}
