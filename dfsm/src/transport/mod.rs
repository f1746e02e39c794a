//! The real corosync transport of the DFSM: libcpg, libquorum and libcmap wrappers and the
//! [`GroupRunner`] thread.
//!
//! The real Corosync transport: thin wrappers around libcpg, libquorum and
//! libcmap, and a [`GroupRunner`] thread that drives one [`crate::Dfsm`]
//! over a CPG group.
//!
//! * [`cpg`]: one CPG handle (`cpg_initialize` with deliver + confchg
//!   callbacks, the old non-model API like the original), join/leave by
//!   name with the trailing NUL counted in the name length, AGREED
//!   multicast, dispatch into [`cpg::CpgEvent`]s.
//! * [`group`]: [`GroupRunner`], a thread owning a `Dfsm<A>` and its CPG
//!   handle, with a cloneable handle to send messages and inspect the app.
//! * [`quorum`]: [`QuorumTracker`], the quorate flag with change tracking.
//! * [`cmap`]: [`CmapTracker`] and [`ClusterInfo`], the cluster name,
//!   config version and nodelist.
//! * `service`: the reconnecting thread both trackers run on.
//!
//! Every thread here reconnects by itself when corosync goes away.
//! Logging uses `tracing` targets `dfsm`, `cpg`, `quorum` and `confdb`.
//!
//! A host (the pmxcfs daemon) typically does:
//!
//! ```no_run
//! use pmxcfs_dfsm::testapp::{set_payload, TestApp, OP_SET};
//! use pmxcfs_dfsm::transport::{CmapTracker, GroupConfig, GroupRunner, QuorumTracker, SendError};
//!
//! let quorum = QuorumTracker::spawn(None).unwrap();
//! let cmap = CmapTracker::spawn(None).unwrap();
//! // one runner per group: GroupConfig::dcdb() / GroupConfig::kvstore(), each with the host
//! // that performs its application's effects after every step
//! let dcdb = GroupRunner::spawn(GroupConfig::dcdb(), TestApp::new(), pmxcfs_dfsm::NoEffects).unwrap();
//! if quorum.quorate() {
//!     match dcdb.send(OP_SET, set_payload("k", "v")) {
//!         Ok(result) => println!("applied locally, result {result}"),
//!         Err(SendError::Aborted) => println!("-EBUSY"),
//!         Err(SendError::NotConnected) => println!("not joined"),
//!     }
//! }
//! let n = dcdb.with_app(|app| app.db.entries.len()).unwrap();
//! println!("{n} entries, mode {:?}, nodes {:?}", dcdb.mode(), cmap.info());
//! dcdb.shutdown();
//! ```

pub mod cmap;
pub mod cpg;
pub mod group;
pub mod quorum;
mod service;

pub use cmap::{ClusterInfo, CmapTracker, NodeInfo};
pub use cpg::{CpgEvent, CpgHandle, CsError, GroupName, DCDB_GROUP, KVSTORE_GROUP};
pub use group::{GroupConfig, GroupRunner, SendError};
pub use quorum::QuorumTracker;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Unix seconds as the DFSM core and the wire headers want them.
pub(crate) fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// An eventfd used to wake a thread blocked in `poll`.
#[derive(Debug)]
pub(crate) struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the returned fd is owned by us.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor.
        Ok(Waker {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            );
        }
    }

    pub(crate) fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a valid u64; non-blocking.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            );
        }
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// `poll(2)` on up to two fds until `deadline`; returns which are readable
/// (or in error/hangup). EINTR counts as a timeout.
pub(crate) fn poll2(a: RawFd, b: Option<RawFd>, deadline: Option<Instant>) -> (bool, bool) {
    let timeout_ms: libc::c_int = match deadline {
        None => -1,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            // round up so we do not spin just before the deadline
            let ms = left.as_micros().div_ceil(1000);
            ms.min(60_000) as libc::c_int
        }
    };
    let mut fds = [
        libc::pollfd {
            fd: a,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let n = if b.is_some() { 2 } else { 1 };
    // SAFETY: fds points to `n` valid pollfd structs.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
    if rc <= 0 {
        return (false, false);
    }
    let ready = |p: &libc::pollfd| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
    (ready(&fds[0]), b.is_some() && ready(&fds[1]))
}

/// Lets a repeating error message through at most once per `every`.
#[derive(Debug)]
pub(crate) struct LogThrottle {
    last: Option<Instant>,
    every: Duration,
}

impl LogThrottle {
    pub(crate) fn new(every: Duration) -> Self {
        LogThrottle { last: None, every }
    }
    pub(crate) fn ready(&mut self) -> bool {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.every => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
    pub(crate) fn reset(&mut self) {
        self.last = None;
    }
}
