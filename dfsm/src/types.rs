//! Small value types shared by the DFSM core, the application trait and the
//! simulator: process identity, modes, request outcomes and actions.

use std::fmt;

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
    /// Wake the local caller that waits for message `count`.
    Answer { count: u64, outcome: Outcome },
    /// The mode entered the error class: the host must `cpg_leave` the
    /// group, and later call [`crate::Dfsm::restart`] and rejoin if
    /// [`crate::Dfsm::restartable`] (the original waits > 5 s).
    Leave,
    /// The mode changed (informational, e.g. for read-only decisions).
    ModeChanged(Mode),
}
