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
use std::sync::Arc;

use rust_corosync::quorum;
use rust_corosync::{DispatchFlags, NodeId, TrackFlags};
use tracing::{error, info};

use super::cpg::CsError;
use super::service::{Conn, ServiceClient, ServiceThread};

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

/// Tracks corosync's quorate flag in a background thread.
pub struct QuorumTracker {
    quorate: Arc<AtomicBool>,
    thread: ServiceThread,
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
        let client = QuorumClient {
            quorate: Arc::clone(&quorate),
            on_change,
        };
        Ok(QuorumTracker {
            quorate,
            thread: ServiceThread::spawn("quorum", client)?,
        })
    }

    /// The current flag.
    pub fn quorate(&self) -> bool {
        self.quorate.load(Ordering::Acquire)
    }

    /// The shared flag (stays valid after shutdown, then false).
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.quorate)
    }

    /// Finalize and join the thread; the flag becomes false. Idempotent.
    pub fn shutdown(&self) {
        self.thread.shutdown();
    }
}

impl Drop for QuorumTracker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The tracker thread's side: the flag it writes and whom it tells.
struct QuorumClient {
    quorate: Arc<AtomicBool>,
    on_change: Option<QuorumCallback>,
}

impl QuorumClient {
    fn set(&self, q: bool) {
        let old = self.quorate.swap(q, Ordering::AcqRel);
        if old != q {
            if q {
                info!(target: "quorum", "node has quorum");
            } else {
                info!(target: "quorum", "node lost quorum");
            }
            if let Some(cb) = &self.on_change {
                cb(q);
            }
        }
    }
}

impl ServiceClient for QuorumClient {
    type Handle = quorum::Handle;

    fn connect(&mut self) -> Result<Conn<quorum::Handle>, CsError> {
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
        self.set(q);
        Ok(Conn { handle, fd })
    }

    fn connect_failed(&mut self, e: CsError, report: bool) {
        if report {
            error!(target: "quorum", "quorum_initialize failed: {e}");
        }
        self.set(false);
    }

    fn dispatch(&mut self, conn: &Conn<quorum::Handle>) -> Result<(), CsError> {
        NOTIFIED.with(|n| n.set(None));
        let res = quorum::dispatch(&conn.handle, DispatchFlags::All);
        if let Some(q) = NOTIFIED.with(|n| n.take()) {
            self.set(q);
        }
        res.map_err(CsError::from)
    }

    fn dispatch_failed(&mut self, e: CsError) {
        error!(target: "quorum", "quorum_dispatch failed: {e}");
        self.set(false);
    }

    fn stopped(&mut self) {
        self.set(false);
    }
}
