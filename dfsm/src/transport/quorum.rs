//! The quorum service (spec §1.4): tracks whether this node is quorate.
//!
//! The quorum service (spec §1.4, `quorum.c`): `quorum_initialize` (a
//! quorum provider must be configured: type `QUORUM_SET`), track changes,
//! dispatch all; the notification only stores the quorate flag. On any
//! error the flag drops to false, the handle is finalized and init is
//! retried every second.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rust_corosync::quorum;
use rust_corosync::{DispatchFlags, NodeId, TrackFlags};
use tracing::{error, info};

use super::cpg::CsError;
use super::{poll2, LogThrottle, Waker};

/// Called on the tracker thread whenever the quorate flag changes.
pub type QuorumCallback = Box<dyn Fn(bool) + Send + 'static>;

thread_local! {
    /// Quorate value reported by the last notification during a dispatch
    /// on this thread (callbacks run synchronously inside dispatch).
    static NOTIFIED: Cell<Option<bool>> = const { Cell::new(None) };
}

fn notification_fn(
    _h: &quorum::Handle,
    quorate: bool,
    _ring_id: quorum::RingId,
    _members: Vec<NodeId>,
) {
    NOTIFIED.with(|c| c.set(Some(quorate)));
}

struct Shared {
    quorate: Arc<AtomicBool>,
    stop: AtomicBool,
    waker: Waker,
}

/// Tracks corosync's quorate flag in a background thread.
pub struct QuorumTracker {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for QuorumTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuorumTracker")
            .field("quorate", &self.quorate())
            .finish()
    }
}

impl QuorumTracker {
    /// Start tracking; `on_change` (if any) runs on the tracker thread after
    /// each change of the flag. Succeeds without corosync (retries).
    pub fn spawn(on_change: Option<QuorumCallback>) -> io::Result<Self> {
        Self::spawn_with_flag(Arc::new(AtomicBool::new(false)), on_change)
    }

    /// Like [`QuorumTracker::spawn`], writing into an existing flag.
    pub fn spawn_with_flag(
        quorate: Arc<AtomicBool>,
        on_change: Option<QuorumCallback>,
    ) -> io::Result<Self> {
        quorate.store(false, Ordering::Release);
        let shared = Arc::new(Shared {
            quorate,
            stop: AtomicBool::new(false),
            waker: Waker::new()?,
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("quorum".into())
            .spawn(move || run(s, on_change))?;
        Ok(QuorumTracker {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The current flag.
    pub fn quorate(&self) -> bool {
        self.shared.quorate.load(Ordering::Acquire)
    }

    /// The shared flag (stays valid after shutdown, then false).
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.shared.quorate)
    }

    /// Finalize and join the thread; the flag becomes false. Idempotent.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.waker.wake();
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl Drop for QuorumTracker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Conn {
    handle: quorum::Handle,
    fd: i32,
}

fn init() -> Result<(Conn, bool), CsError> {
    let model = quorum::ModelData::ModelV1(quorum::Model1Data {
        flags: quorum::Model1Flags::None,
        quorum_notification_fn: Some(notification_fn),
        nodelist_notification_fn: None,
    });
    let (handle, qtype) = quorum::initialize(&model, 0).map_err(CsError::from)?;
    if !matches!(qtype, quorum::QuorumType::Set) {
        error!(target: "quorum", "quorum_initialize failed: quorum provider not configured");
        return Err(CsError::from(rust_corosync::CsError::CsErrNotSupported));
    }
    quorum::trackstart(&handle, TrackFlags::Changes).map_err(CsError::from)?;
    let fd = quorum::fd_get(&handle).map_err(CsError::from)?;
    let q = quorum::getquorate(&handle).map_err(CsError::from)?;
    Ok((Conn { handle, fd }, q))
}

fn run(shared: Arc<Shared>, on_change: Option<QuorumCallback>) {
    let mut conn: Option<Conn> = None;
    let mut next_init = Instant::now();
    let mut log = LogThrottle::new(Duration::from_secs(5));
    let set = |q: bool| {
        let old = shared.quorate.swap(q, Ordering::AcqRel);
        if old != q {
            if q {
                info!(target: "quorum", "node has quorum");
            } else {
                info!(target: "quorum", "node lost quorum");
            }
            if let Some(cb) = &on_change {
                cb(q);
            }
        }
    };
    while !shared.stop.load(Ordering::Acquire) {
        if conn.is_none() && Instant::now() >= next_init {
            next_init = Instant::now() + Duration::from_secs(1);
            match init() {
                Ok((c, q)) => {
                    log.reset();
                    conn = Some(c);
                    set(q);
                }
                Err(e) => {
                    if log.ready() {
                        error!(target: "quorum", "quorum_initialize failed: {e}");
                    }
                    set(false);
                }
            }
        }
        let deadline = if conn.is_some() {
            Instant::now() + Duration::from_secs(1)
        } else {
            next_init
        };
        let (wake, readable) = poll2(
            shared.waker.raw_fd(),
            conn.as_ref().map(|c| c.fd),
            Some(deadline),
        );
        if wake {
            shared.waker.drain();
        }
        if readable {
            if let Some(c) = conn.as_ref() {
                NOTIFIED.with(|n| n.set(None));
                let res = quorum::dispatch(&c.handle, DispatchFlags::All);
                if let Some(q) = NOTIFIED.with(|n| n.take()) {
                    set(q);
                }
                if let Err(e) = res {
                    if e != rust_corosync::CsError::CsErrTryAgain {
                        error!(target: "quorum", "quorum_dispatch failed: {}", CsError::from(e));
                        conn = None; // finalizes
                        set(false);
                        next_init = Instant::now() + Duration::from_secs(1);
                    }
                }
            }
        }
    }
    drop(conn);
    set(false);
}
