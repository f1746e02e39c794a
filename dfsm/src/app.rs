//! The application side of the DFSM: the trait dcdb and kvstore implement (like the
//! original's callback table), the [`Context`] their callbacks use, and the [`EffectHost`]
//! that performs their effects after a step. Nothing here does I/O; sends become
//! [`Action::Multicast`], persistence and file writes become effects.

use crate::types::{Action, MemberId, MessageStream};
use crate::wire::frame::{encode_normal, encode_state};
use crate::wire::{Epoch, MessageType};

/// How an application callback failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// Leave the group and resync later (the original's `res < 0`).
    #[error("leave and resync: {0}")]
    Leave(String),
    /// Permanent failure: mode ERROR, no restart (`dfsm_set_errormode`).
    #[error("fatal: {0}")]
    Fatal(String),
}

/// One member of the current sync round (`dfsm_node_info_t`), in ascending
/// `(nodeid, pid)` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncMember {
    pub id: MemberId,
    /// The STATE payload received from this member in this round.
    pub state: Option<Vec<u8>>,
    /// Set by [`Application::process_state_update`] for members that need
    /// no updates; all set on UPDATE_COMPLETE.
    pub synced: bool,
}

/// A NORMAL message handed to the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormalMessage<'a> {
    pub sender: MemberId,
    /// Application message type (header subtype).
    pub subtype: u16,
    /// Sender's clock at send (header time).
    pub time: u32,
    /// Sender's message counter.
    pub count: u64,
    pub payload: &'a [u8],
}

/// Result of applying one NORMAL message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Result reported to the waiting caller if the message is our own.
    pub result: i32,
    /// `Err` makes the node leave (or go to ERROR).
    pub status: Result<(), AppError>,
}

impl Delivered {
    pub fn ok(result: i32) -> Self {
        Delivered {
            result,
            status: Ok(()),
        }
    }
}

/// Sending state shared between the core and application callbacks.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    pub(crate) local: MemberId,
    pub(crate) protocol_version: u32,
    pub(crate) now: u32,
    pub(crate) msgcount: u64,
    pub(crate) sync_epoch: Epoch,
    pub(crate) lowest_nodeid: u32,
    pub(crate) actions: Vec<Action>,
}

impl Outbox {
    pub(crate) fn send_normal(&mut self, subtype: u16, payload: &[u8]) -> u64 {
        self.msgcount += 1;
        let count = self.msgcount;
        let bytes = encode_normal(self.protocol_version, subtype, self.now, count, payload);
        self.actions.push(Action::Multicast {
            bytes,
            count: Some(count),
        });
        count
    }

    pub(crate) fn send_state(&mut self, kind: MessageType, payload: &[u8]) {
        let bytes = encode_state(
            self.protocol_version,
            kind,
            self.now,
            self.sync_epoch,
            payload,
        );
        self.actions.push(Action::Multicast { bytes, count: None });
    }

    /// STATE messages of `kind` around `payloads`, encoded lazily with this step's header
    /// fields (time, sync epoch).
    pub(crate) fn send_state_stream(&mut self, kind: MessageType, payloads: impl Iterator<Item = Vec<u8>> + Send + 'static) {
        let (version, now, epoch) = (self.protocol_version, self.now, self.sync_epoch);
        let stream = MessageStream::new(payloads.map(move |p| encode_state(version, kind, now, epoch, &p)));
        self.actions.push(Action::MulticastStream(stream));
    }
}

/// Handed to every application callback.
pub struct Context<'a> {
    pub(crate) out: &'a mut Outbox,
}

impl Context<'_> {
    /// This process.
    pub fn local(&self) -> MemberId {
        self.out.local
    }
    /// The host's clock (Unix seconds) of the current step.
    pub fn now(&self) -> u32 {
        self.out.now
    }
    /// True if this node has the lowest nodeid of the current membership
    /// (`dfsm_lowest_nodeid`): it coordinates syncs and answers unlocks.
    pub fn is_lowest_nodeid(&self) -> bool {
        self.out.lowest_nodeid != 0 && self.out.lowest_nodeid == self.out.local.nodeid
    }
    /// Fire-and-forget NORMAL message (consumes a count); returns the count.
    pub fn send_normal(&mut self, subtype: u16, payload: &[u8]) -> u64 {
        self.out.send_normal(subtype, payload)
    }
    /// Data leader: send one UPDATE with the current sync epoch.
    pub fn send_update(&mut self, payload: &[u8]) {
        self.out.send_state(MessageType::Update, payload);
    }
    /// Data leader: send one UPDATE per payload, each made (and encoded) only when the host
    /// gets to send it, so a full sync never sits in memory encoded. Ordered before
    /// everything sent after this call.
    pub fn send_updates(&mut self, payloads: impl Iterator<Item = Vec<u8>> + Send + 'static) {
        self.out.send_state_stream(MessageType::Update, payloads);
    }
    /// Data leader: send UPDATE_COMPLETE with the current sync epoch.
    pub fn send_update_complete(&mut self) {
        self.out.send_state(MessageType::UpdateComplete, &[]);
    }
}

/// An application replicated by the DFSM (the original's `dfsm_callbacks_t`).
///
/// Callbacks change the application's state in memory and queue what must then be done
/// outside the step (persist, write a file) as [`Application::Effect`]s; the host takes them
/// with [`Application::take_effects`] after every step and performs them with its
/// [`EffectHost`] before it carries out the step's actions (like raft-rs' `Ready`).
pub trait Application {
    /// What a step leaves for the host to do (`Infallible` for an application without any).
    type Effect: Send + 'static;

    /// The effects queued since the last call, in order (see [`EffectHost`]).
    fn take_effects(&mut self) -> Vec<Self::Effect> {
        Vec::new()
    }

    /// Apply a NORMAL message (in SYNCED mode, in total order).
    fn deliver(&mut self, ctx: &mut Context<'_>, msg: &NormalMessage<'_>) -> Delivered;

    /// The STATE payload to send in reply to SYNC_START (must be non-empty).
    fn get_state(&mut self, ctx: &mut Context<'_>) -> Result<Vec<u8>, AppError>;

    /// All states are in: mark `synced` members; the data leader sends its
    /// UPDATEs and UPDATE_COMPLETE through `ctx`.
    fn process_state_update(
        &mut self,
        ctx: &mut Context<'_>,
        members: &mut [SyncMember],
    ) -> Result<(), AppError>;

    /// One UPDATE from the leader (UPDATE mode only).
    fn process_update(
        &mut self,
        ctx: &mut Context<'_>,
        sender: MemberId,
        payload: &[u8],
    ) -> Result<(), AppError>;

    /// UPDATE_COMPLETE received in UPDATE mode: make the received updates live (the end of a
    /// resync; the original's `dfsm_commit_fn`).
    fn finish_resync(&mut self, ctx: &mut Context<'_>, members: &[SyncMember]) -> Result<(), AppError>;

    /// Drop any per-round sync data (may be called when there is none).
    fn cleanup(&mut self) {}

    /// Whether [`Application::checksum`] is implemented (periodic verify).
    fn supports_verify(&self) -> bool {
        false
    }

    /// Checksum of the current data for VERIFY.
    fn checksum(&mut self) -> Result<[u8; 32], AppError> {
        Err(AppError::Leave("checksum not supported".into()))
    }

    /// The mode changed into SYNCED.
    fn synced(&mut self, _ctx: &mut Context<'_>) {}

    /// A membership change was processed (not called when leaving).
    fn confchg(&mut self, _ctx: &mut Context<'_>, _members: &[MemberId]) {}
}

/// Performs an application's effects after each step, on the host's thread (the
/// [`crate::transport::GroupRunner`], the [`crate::sim::Sim`]). An `Err` makes the node leave
/// (or go to ERROR) as if the step's callback had failed ([`crate::Dfsm::host_failed`]).
pub trait EffectHost<E>: Send {
    fn perform(&mut self, effects: Vec<E>) -> Result<(), AppError>;
}

/// The host of an application without effects.
pub struct NoEffects;

impl EffectHost<std::convert::Infallible> for NoEffects {
    fn perform(&mut self, _effects: Vec<std::convert::Infallible>) -> Result<(), AppError> {
        Ok(())
    }
}
