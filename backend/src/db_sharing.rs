//! When `config.db` is locked exclusively (WAL index in RAM: no `-shm` page reaches the
//! disk) and when it is shared: exclusive while no other process has it open; another
//! process opening it (held by the [`OpenGate`], or noticed by inotify where fanotify is not
//! allowed) switches the store to shared locking at once, and it stays shared until nobody
//! else had it open for the hold ([`SHARED_HOLD`] by default; `/proc/*/fd`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::open_gate::OpenGate;
use crate::store::Locking;

/// How long the database stays shared after another process last opened it (default).
pub const SHARED_HOLD: Duration = Duration::from_secs(600);

/// How often a shared database looks for other processes that still have it open (at most).
const ALONE_CHECK: Duration = Duration::from_secs(10);

/// How the daemon locks `config.db` while it is alone with it.
#[derive(Debug, Clone)]
pub struct SharingOptions {
    /// The daemon's own binary, run as `BIN open-gate-helper DB PID` to hold other
    /// processes' opens while the store leaves exclusive locking ([`OpenGate`]); None =
    /// notice them with inotify only.
    pub gate_helper: Option<PathBuf>,
    /// How long the database stays shared after another process last opened it.
    pub hold: Duration,
}

/// The locking policy of one database: what the store's locking should become now.
#[derive(Debug)]
pub struct Sharing {
    opens: ForeignOpens,
    hold: Duration,
    state: Mutex<SharingState>,
}

#[derive(Debug)]
struct SharingState {
    last_foreign_open: Option<Instant>,
    next_alone_check: Instant,
    /// Just switched to exclusive: make sure nobody opened the file during the switch.
    verify_alone: bool,
}

impl Sharing {
    /// Watches `path`, the database the store has open now with `locking`.
    pub fn watch(path: &Path, locking: Locking, how: &SharingOptions) -> std::io::Result<Sharing> {
        Ok(Sharing {
            opens: ForeignOpens::watch(path, locking, how.gate_helper.as_deref())?,
            hold: how.hold,
            state: Mutex::new(SharingState { last_foreign_open: None, next_alone_check: Instant::now(), verify_alone: false }),
        })
    }

    /// The locking the store should switch to now, with the reason to log; None = keep.
    pub fn decide(&self, current: Locking) -> Option<(Locking, &'static str)> {
        let now = Instant::now();
        let opened = self.opens.opened();
        let mut s = self.state.lock();
        if opened {
            s.last_foreign_open = Some(now);
        }
        match current {
            Locking::Exclusive if opened => Some((Locking::Shared, "another process opened the database - sharing it (WAL index in config.db-shm) while it is in use")),
            Locking::Exclusive if s.verify_alone => {
                s.verify_alone = false;
                self.opens.open_elsewhere().then_some((Locking::Shared, "another process has the database open - sharing it (WAL index in config.db-shm)"))
            }
            Locking::Exclusive => None,
            Locking::Shared => {
                let quiet = s.last_foreign_open.is_none_or(|t| now >= t + self.hold);
                if !quiet || now < s.next_alone_check {
                    return None;
                }
                s.next_alone_check = now + ALONE_CHECK.min(self.hold.max(Duration::from_millis(500)));
                (!self.opens.open_elsewhere()).then_some((Locking::Exclusive, "no other process has the database open - locking it exclusively again (WAL index in RAM)"))
            }
        }
    }

    /// Called right before the store reopens the database with `to`.
    pub fn reopening(&self, to: Locking) {
        self.opens.switching(to);
    }

    /// Called right after the store reopened the database: it has it open with `now`.
    pub fn reopened(&self, now: Locking) {
        self.opens.switched(now);
        if now == Locking::Exclusive {
            self.state.lock().verify_alone = true;
        }
    }
}

/// Tells of other processes opening one database file: through the [`OpenGate`] (their
/// open waits for the switch), or, where fanotify is not allowed, through inotify (their
/// first access may see "database is locked" unless it waits for the lock, as SQLite's
/// busy timeout of most clients does).
struct ForeignOpens {
    signal: Signal,
    path: PathBuf,
}

enum Signal {
    Gate(OpenGate),
    Notify(Inotify),
}

impl std::fmt::Debug for ForeignOpens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.signal {
            Signal::Gate(_) => "fanotify",
            Signal::Notify(_) => "inotify",
        };
        f.debug_struct("ForeignOpens").field("path", &self.path).field("via", &kind).finish()
    }
}

impl ForeignOpens {
    /// Starts watching `path` for opens; the store has it open with `locking` now.
    fn watch(path: &Path, locking: Locking, gate_helper: Option<&Path>) -> std::io::Result<ForeignOpens> {
        let gate = gate_helper.map(|h| OpenGate::start(h, path, locking == Locking::Exclusive));
        let signal = match gate {
            Some(Ok(gate)) => Signal::Gate(gate),
            other => {
                if let Some(Err(e)) = other {
                    tracing::warn!(target: "database", "unable to start the open gate for '{}' ({e}) - other processes opening it may see 'database is locked' once", path.display());
                }
                let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(std::io::Error::from)?;
                inotify.add_watch(path, AddWatchFlags::IN_OPEN).map_err(std::io::Error::from)?;
                Signal::Notify(inotify)
            }
        };
        Ok(ForeignOpens { signal, path: path.to_path_buf() })
    }

    /// True if the file was opened by another process since the last call (inotify: by
    /// anyone; [`ForeignOpens::switching`] discards what the store's own reopen caused).
    fn opened(&self) -> bool {
        match &self.signal {
            Signal::Gate(gate) => gate.foreign_opened(),
            Signal::Notify(inotify) => {
                let mut seen = false;
                while let Ok(events) = inotify.read_events() {
                    if events.is_empty() {
                        break;
                    }
                    seen |= events.iter().any(|e| e.mask.contains(AddWatchFlags::IN_OPEN));
                }
                seen
            }
        }
    }

    /// Before the store reopens with `to`.
    fn switching(&self, to: Locking) {
        if let Signal::Gate(gate) = &self.signal {
            if to == Locking::Exclusive {
                gate.set_exclusive(true);
            }
        }
    }

    /// After the store reopened: it has the database open with `now`.
    fn switched(&self, now: Locking) {
        match &self.signal {
            Signal::Gate(gate) => gate.set_exclusive(now == Locking::Exclusive),
            Signal::Notify(_) => {
                let _ = self.opened();
            }
        }
    }

    /// True if a process other than this one has the file open now.
    fn open_elsewhere(&self) -> bool {
        let Ok(meta) = std::fs::metadata(&self.path) else { return false };
        let (dev, ino) = (meta.dev(), meta.ino());
        let me = std::process::id().to_string();
        let Ok(procs) = std::fs::read_dir("/proc") else { return false };
        for p in procs.flatten() {
            let name = p.file_name();
            let Some(pid) = name.to_str() else { continue };
            if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else { continue };
            for fd in fds.flatten() {
                if std::fs::metadata(fd.path()).is_ok_and(|m| m.dev() == dev && m.ino() == ino) {
                    return true;
                }
            }
        }
        false
    }
}
