//! Small value types shared by the DFSM core, the application trait and the
//! simulator: process identity, modes, request outcomes and actions.

use std::fmt;
use std::sync::{Arc, Mutex};

/// A CPG process: `(nodeid, pid)`. Ordered by nodeid, then pid, which is the
/// order the original sorts its sync members in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId {
    pub nodeid: u32,
    pub pid: u32,
}

impl MemberId {
    pub const fn new(nodeid: u32, pid: u32) -> Self {
        MemberId { nodeid, pid }
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.nodeid, self.pid)
    }
}

/// DFSM mode, with the original's numeric values (`dfsm_mode_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Mode {
    /// Initialized, waiting for the first confchg.
    Start = 0,
    /// Confchg seen; collecting states; normal messages are queued.
    StartSync = 1,
    /// In sync; normal messages are applied on delivery.
    Synced = 2,
    /// Waiting for the data leader's UPDATEs and UPDATE_COMPLETE.
    Update = 3,
    /// Left the group; restartable.
    Leave = 253,
    /// A newer protocol version was seen; permanent.
    VersionError = 254,
    /// Internal error; permanent.
    Error = 255,
}

impl Mode {
    /// Modes ≥ 128 are error modes: the host must leave the CPG group.
    pub fn is_error(self) -> bool {
        self as u8 >= 128
    }

    /// Whether a host may re-initialize and rejoin after this mode.
    pub fn is_restartable(self) -> bool {
        !matches!(self, Mode::Error | Mode::VersionError)
    }
}

/// What a waiting local caller gets back for one of its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The node applied its own delivered copy; the application's result.
    Applied(i32),
    /// The message was never applied locally (send failure, re-init,
    /// shutdown); the original returns its preset result (dcdb: -EBUSY).
    Aborted,
}

/// Something the host must do after stepping the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `cpg_mcast_joined(CPG_TYPE_AGREED)` these bytes. `count` is set for
    /// NORMAL messages (the sender's counter value in the header).
    Multicast { bytes: Vec<u8>, count: Option<u64> },
    /// `cpg_mcast_joined(CPG_TYPE_AGREED)` each message the stream yields, in order,
    /// before anything queued after it: a data leader's UPDATEs, encoded one at a time
    /// while they are sent instead of all up front.
    MulticastStream(MessageStream),
    /// Wake the local caller that waits for message `count`.
    Answer { count: u64, outcome: Outcome },
    /// The mode entered the error class: the host must `cpg_leave` the
    /// group, and later call [`crate::Dfsm::restart`] and rejoin if
    /// [`crate::Dfsm::restartable`] (the original waits > 5 s).
    Leave,
    /// The mode changed (informational, e.g. for read-only decisions).
    ModeChanged(Mode),
}

/// Messages made one at a time, as the host sends them (see [`Action::MulticastStream`]).
/// Clones share the stream; equality is identity.
#[derive(Clone)]
pub struct MessageStream(Arc<Mutex<Box<dyn Iterator<Item = Vec<u8>> + Send>>>);

impl MessageStream {
    pub fn new(messages: impl Iterator<Item = Vec<u8>> + Send + 'static) -> MessageStream {
        MessageStream(Arc::new(Mutex::new(Box::new(messages))))
    }

    /// The next encoded message; None once the stream is exhausted.
    pub fn next_message(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).next()
    }
}

impl fmt::Debug for MessageStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MessageStream")
    }
}

impl PartialEq for MessageStream {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for MessageStream {}
