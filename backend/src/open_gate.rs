//! Holds other processes' opens of `config.db` while the store locks it exclusively, until
//! the store has switched to shared locking: the opener never sees "database is locked", it
//! waits the milliseconds of the switch (fanotify `FAN_OPEN_PERM`).
//!
//! The fanotify listener runs in a helper process (`pmxcfs open-gate-helper DB PID`, started by
//! the daemon): every permission event hands the listener a descriptor of the file, and
//! closing a descriptor drops all of a process's POSIX locks on that file — SQLite's locks,
//! if the listener were the daemon. Protocol on the helper's stdin/stdout, one letter a line:
//! helper → daemon `R` (ready), `O` (another process opens the file: held while exclusive);
//! daemon → helper `E` (hold foreign opens), `S` (let them all go on).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::fanotify::{EventFFlags, Fanotify, FanotifyEvent, FanotifyResponse, InitFlags, MarkFlags, MaskFlags, Response};
use parking_lot::Mutex;

/// The longest the helper holds an open if the daemon never answers (a stuck daemon must
/// not hang an administrator's `cp config.db`).
const MAX_HOLD: Duration = Duration::from_secs(5);

/// The daemon's side: the helper process and what it reported.
#[derive(Debug)]
pub struct OpenGate {
    child: Mutex<Child>,
    to_helper: Mutex<ChildStdin>,
    foreign_opened: Arc<AtomicBool>,
}

impl OpenGate {
    /// Starts `helper open-gate-helper DB PID` and waits until its mark is in place.
    pub fn start(helper: &Path, db: &Path, exclusive: bool) -> std::io::Result<OpenGate> {
        let mut cmd = Command::new(helper);
        cmd.arg("open-gate-helper").arg(db).arg(std::process::id().to_string()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe; it only asks for SIGKILL when we die
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(std::io::Error::other("helper without pipes"));
        };
        let mut lines = BufReader::new(stdout);
        let mut first = String::new();
        if lines.read_line(&mut first).map_or(true, |n| n == 0) || first.trim() != "R" {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other("open-gate helper did not start"));
        }
        let foreign_opened = Arc::new(AtomicBool::new(false));
        let flag = foreign_opened.clone();
        std::thread::Builder::new().name("db-open-gate".into()).spawn(move || {
            for line in lines.lines() {
                match line {
                    Ok(l) if l == "O" => flag.store(true, Ordering::SeqCst),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        })?;
        let gate = OpenGate { child: Mutex::new(child), to_helper: Mutex::new(stdin), foreign_opened };
        gate.set_exclusive(exclusive);
        Ok(gate)
    }

    /// True if another process opened the file since the last call.
    pub fn foreign_opened(&self) -> bool {
        self.foreign_opened.swap(false, Ordering::SeqCst)
    }

    /// The store is about to become exclusive (hold foreign opens) or is shared now (let
    /// them go on).
    pub fn set_exclusive(&self, exclusive: bool) {
        let _ = self.to_helper.lock().write_all(if exclusive { b"E\n" } else { b"S\n" });
    }
}

impl Drop for OpenGate {
    fn drop(&mut self) {
        let mut child = self.child.lock();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The helper process: answers the kernel's permission questions for `db` until its stdin
/// closes. Returns the exit code.
pub fn run_helper(db: &Path, daemon_pid: i32) -> i32 {
    let fan = match Fanotify::init(InitFlags::FAN_CLASS_CONTENT | InitFlags::FAN_CLOEXEC, EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("open-gate-helper: fanotify: {e}");
            return 1;
        }
    };
    let root = match std::fs::File::open("/") {
        Ok(f) => f,
        Err(e) => {
            eprintln!("open-gate-helper: {e}");
            return 1;
        }
    };
    if let Err(e) = fan.mark(MarkFlags::FAN_MARK_ADD, MaskFlags::FAN_OPEN_PERM, root.as_fd(), Some(db)) {
        eprintln!("open-gate-helper: mark '{}': {e}", db.display());
        return 1;
    }
    let mut out = std::io::stdout().lock();
    if writeln!(out, "R").and_then(|_| out.flush()).is_err() {
        return 1;
    }
    let mut stdin = std::io::stdin().lock();
    let mut exclusive = true;
    let mut held: Vec<(FanotifyEvent, Instant)> = Vec::new();
    let allow = |e: &FanotifyEvent| {
        if let Some(fd) = e.fd() {
            let _ = fan.write_response(FanotifyResponse::new(fd, Response::FAN_ALLOW));
        }
    };
    loop {
        let (fan_ready, cmd_ready) = {
            let stdin_fd = std::io::stdin();
            let mut fds = [PollFd::new(fan.as_fd(), PollFlags::POLLIN), PollFd::new(stdin_fd.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(200u8)).is_err() {
                continue;
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if cmd_ready {
            let mut buf = [0u8; 64];
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return 0,
                Ok(n) => {
                    for &c in &buf[..n] {
                        match c {
                            b'E' => exclusive = true,
                            b'S' => exclusive = false,
                            _ => {}
                        }
                    }
                }
            }
            if !exclusive {
                held.drain(..).for_each(|(e, _)| allow(&e));
            }
        }
        if fan_ready {
            for event in fan.read_events().unwrap_or_default() {
                if !event.mask().contains(MaskFlags::FAN_OPEN_PERM) {
                    continue;
                }
                if event.pid() != daemon_pid {
                    let _ = writeln!(out, "O").and_then(|_| out.flush());
                    if exclusive {
                        held.push((event, Instant::now()));
                        continue;
                    }
                }
                allow(&event);
            }
        }
        let now = Instant::now();
        let (due, keep): (Vec<_>, Vec<_>) = held.drain(..).partition(|(_, since)| now >= *since + MAX_HOLD);
        held = keep;
        due.iter().for_each(|(e, _)| allow(e));
    }
}
