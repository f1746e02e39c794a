//! The sans-I/O DFSM core: stepped with CPG events, ticks and send requests, it returns
//! [`Action`]s for the host to carry out.
//!
//! The sans-I/O DFSM core: a value stepped with CPG events (confchg,
//! deliver), timer ticks and local send requests, returning [`Action`]s for
//! the host to carry out. It reproduces the original's modes, epochs, sync
//! rounds (SYNC_START / STATE / UPDATE / UPDATE_COMPLETE), queues, resend
//! after a membership change, verify requests and result matching (spec §2,
//! §3). No corosync, threads, clocks or I/O in here: time comes in as `now`.

use std::collections::BTreeSet;

use tracing::{debug, info, warn};

use crate::app::{AppError, Application, Context, NormalMessage, Outbox, SyncMember};
use crate::queue::{MsgQueue, Queued};
use crate::types::{Action, MemberId, Mode, Outcome};
use crate::wire::frame::{
    decode_verify, decode_verify_request, encode_verify, encode_verify_request, split_state,
    NORMAL_HEADER_LEN,
};
use crate::wire::{BaseHeader, Epoch, Frame, MessageType};

/// Static configuration of one DFSM instance (one CPG group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// This process: nodeid from `cpg_local_get`, pid = `getpid()`.
    pub local: MemberId,
    /// 1 for dcdb, 0 for kvstore.
    pub protocol_version: u32,
    /// Period of VERIFY_REQUEST (dcdb: 3600 s); `None` disables it.
    pub verify_interval: Option<u32>,
}

/// The distributed state machine of one group, owning its application.
pub struct Dfsm<A> {
    app: A,
    cfg: Config,
    out: Outbox,
    mode: Mode,
    /// `sync_info` exists (a confchg was seen); never dropped, as in C.
    have_sync_info: bool,
    members: Vec<SyncMember>,
    we_are_member: bool,
    local_epoch_counter: u32,
    msg_queue: MsgQueue,
    sync_queue: Vec<Queued>,
    waiting: BTreeSet<u64>,
    csum: [u8; 32],
    csum_epoch: Epoch,
    csum_id: u64,
    csum_counter: u64,
    last_verify: Option<u32>,
}

/// `dfsm_set_mode`: any normal mode may always be set; within the error
/// modes a node only moves upward (LEAVE → VERSION_ERROR → ERROR).
fn mode_change_allowed(old: Mode, new: Mode) -> bool {
    old != new && (!new.is_error() || !old.is_error() || new >= old)
}

/// Internal: the "goto leave" of the original.
struct LeaveGroup;

type Step = Result<(), LeaveGroup>;

impl<A: Application> Dfsm<A> {
    /// A new instance in mode START.
    pub fn new(cfg: Config, app: A) -> Self {
        Dfsm {
            app,
            cfg,
            out: Outbox {
                local: cfg.local,
                protocol_version: cfg.protocol_version,
                now: 0,
                msgcount: 0,
                sync_epoch: Epoch::default(),
                lowest_nodeid: 0,
                actions: Vec::new(),
            },
            mode: Mode::Start,
            have_sync_info: false,
            members: Vec::new(),
            we_are_member: false,
            local_epoch_counter: 0,
            msg_queue: MsgQueue::default(),
            sync_queue: Vec::new(),
            waiting: BTreeSet::new(),
            csum: [0; 32],
            csum_epoch: Epoch::default(),
            csum_id: 0,
            csum_counter: 0,
            last_verify: None,
        }
    }

    pub fn app(&self) -> &A {
        &self.app
    }
    pub fn app_mut(&mut self) -> &mut A {
        &mut self.app
    }
    pub fn into_app(self) -> A {
        self.app
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// False after ERROR or VERSION_ERROR: never rejoin.
    pub fn restartable(&self) -> bool {
        self.mode.is_restartable()
    }
    /// Whether the last confchg listed this process.
    pub fn is_member(&self) -> bool {
        self.we_are_member
    }
    /// True if this node has the lowest nodeid of the current membership.
    pub fn is_lowest_nodeid(&self) -> bool {
        self.out.lowest_nodeid != 0 && self.out.lowest_nodeid == self.cfg.local.nodeid
    }
    /// The current sync epoch.
    pub fn sync_epoch(&self) -> Epoch {
        self.out.sync_epoch
    }
    /// Members of the current view with their synced flags.
    pub fn members(&self) -> &[SyncMember] {
        &self.members
    }
    /// Number of messages in queue 1 and queue 2.
    pub fn queued(&self) -> (usize, usize) {
        (self.msg_queue.len(), self.sync_queue.len())
    }
    /// Last NORMAL count used by this process.
    pub fn msgcount(&self) -> u64 {
        self.out.msgcount
    }

    // ----- host entry points -------------------------------------------

    /// (Re)initialize before joining (`dfsm_initialize`): drop queue 1,
    /// abort waiting callers, mode START. Refused (returns `None`) after
    /// ERROR or VERSION_ERROR.
    pub fn restart(&mut self, now: u32) -> Option<Vec<Action>> {
        if !self.restartable() {
            return None;
        }
        self.out.now = now;
        self.msg_queue.clear();
        self.abort_waiters();
        self.we_are_member = false;
        self.set_mode(Mode::Start);
        Some(self.take_actions())
    }

    /// Shutting down or the CPG connection is gone (`dfsm_finalize`):
    /// abort waiting callers.
    pub fn finalize(&mut self) -> Vec<Action> {
        self.abort_waiters();
        self.we_are_member = false;
        self.take_actions()
    }

    /// Send an application message. With `wait`, an [`Action::Answer`] for
    /// the returned count follows once this node has applied its own copy
    /// (or the wait was aborted).
    pub fn send_message(
        &mut self,
        now: u32,
        subtype: u16,
        payload: &[u8],
        wait: bool,
    ) -> (u64, Vec<Action>) {
        self.out.now = now;
        let count = self.out.send_normal(subtype, payload);
        if wait {
            self.waiting.insert(count);
        }
        (count, self.take_actions())
    }

    /// The host could not multicast a message it was given. For a NORMAL
    /// message the waiting caller (if any) is aborted; a failed state
    /// message makes the node leave, as in the original.
    pub fn send_failed(&mut self, count: Option<u64>) -> Vec<Action> {
        match count {
            Some(c) => {
                if self.waiting.remove(&c) {
                    self.out.actions.push(Action::Answer {
                        count: c,
                        outcome: Outcome::Aborted,
                    });
                }
            }
            None => self.leave(),
        }
        self.take_actions()
    }

    /// Timer: sends VERIFY_REQUEST every `verify_interval` seconds if this
    /// node is the lowest nodeid and SYNCED. The first tick starts the clock.
    pub fn tick(&mut self, now: u32) -> Vec<Action> {
        self.out.now = now;
        if let Some(interval) = self.cfg.verify_interval {
            match self.last_verify {
                None => self.last_verify = Some(now),
                Some(last) if now.wrapping_sub(last) >= interval => {
                    self.last_verify = Some(now);
                    self.verify_request_inner();
                }
                Some(_) => {}
            }
        }
        self.take_actions()
    }

    /// Send a VERIFY_REQUEST now if allowed (`dfsm_verify_request`).
    pub fn verify_request(&mut self, now: u32) -> Vec<Action> {
        self.out.now = now;
        self.verify_request_inner();
        self.take_actions()
    }

    /// A CPG configuration change of our group.
    pub fn confchg(
        &mut self,
        now: u32,
        members: &[MemberId],
        left: &[MemberId],
        joined: &[MemberId],
    ) -> Vec<Action> {
        self.out.now = now;
        debug!(?members, ?left, ?joined, "confchg");
        if self.confchg_inner(members, joined).is_err() {
            self.set_mode(Mode::Leave);
        }
        self.take_actions()
    }

    /// A message delivered by CPG from `sender`.
    pub fn deliver(&mut self, now: u32, sender: MemberId, bytes: &[u8]) -> Vec<Action> {
        self.out.now = now;
        self.deliver_inner(sender, bytes);
        self.take_actions()
    }

    /// The application's effects queued by the last step, for the host to perform before
    /// it carries out the step's actions (see [`crate::EffectHost`]).
    pub fn take_effects(&mut self) -> Vec<A::Effect> {
        self.app.take_effects()
    }

    /// The host could not perform the effects of the last step (e.g. a resync's store
    /// transaction failed): leave, or go to ERROR for [`AppError::Fatal`], as if the
    /// callback that queued them had failed.
    pub fn host_failed(&mut self, e: AppError) -> Vec<Action> {
        if !self.mode.is_error() {
            let _ = self.apply_app_error(e);
            self.leave();
        }
        self.take_actions()
    }

    // ----- internals ---------------------------------------------------

    fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.out.actions)
    }

    fn ctx(&mut self) -> (&mut A, Context<'_>) {
        (&mut self.app, Context { out: &mut self.out })
    }

    fn abort_waiters(&mut self) {
        for count in std::mem::take(&mut self.waiting) {
            self.out.actions.push(Action::Answer {
                count,
                outcome: Outcome::Aborted,
            });
        }
    }

    fn set_mode(&mut self, new: Mode) {
        let old = self.mode;
        if old == new {
            return;
        }
        if !mode_change_allowed(old, new) {
            return;
        }
        self.mode = new;
        info!(?old, ?new, "dfsm mode change");
        self.out.actions.push(Action::ModeChanged(new));
        if new.is_error() && !old.is_error() {
            self.out.actions.push(Action::Leave);
        }
        if new == Mode::Synced {
            let (app, mut ctx) = self.ctx();
            app.synced(&mut ctx);
        }
    }

    fn leave(&mut self) {
        self.set_mode(Mode::Leave);
        self.release_sync_resources();
    }

    fn apply_app_error(&mut self, e: AppError) -> LeaveGroup {
        warn!(error = %e, "application error");
        if let AppError::Fatal(_) = e {
            self.set_mode(Mode::Error);
        }
        LeaveGroup
    }

    /// Drop the app's per-round data and all received states.
    fn release_sync_resources(&mut self) {
        self.app.cleanup();
        for m in &mut self.members {
            m.state = None;
        }
    }

    fn member_index(&self, id: MemberId) -> Option<usize> {
        self.members.binary_search_by(|m| m.id.cmp(&id)).ok()
    }

    fn confchg_inner(&mut self, members: &[MemberId], joined: &[MemberId]) -> Step {
        let local = self.cfg.local;
        self.we_are_member = false;
        self.local_epoch_counter = self.local_epoch_counter.wrapping_add(1);
        self.out.sync_epoch = Epoch {
            epoch: self.local_epoch_counter,
            time: self.out.now,
            nodeid: local.nodeid,
            pid: local.pid,
        };
        self.csum_id = self.csum_counter;
        self.csum_epoch = Epoch::default();
        self.sync_queue.clear();
        if self.mode.is_error() {
            return Ok(());
        }
        self.out.lowest_nodeid = members.iter().map(|m| m.nodeid).min().unwrap_or(0);
        self.we_are_member = members.contains(&local);

        self.release_sync_resources();
        let mut sorted: Vec<MemberId> = members.to_vec();
        sorted.sort();
        self.members = sorted
            .into_iter()
            .map(|id| SyncMember {
                id,
                state: None,
                synced: false,
            })
            .collect();
        self.have_sync_info = true;

        if !self.we_are_member {
            if self.mode == Mode::Start {
                return Ok(());
            }
            info!("we ({local}) left the process group");
            return Err(LeaveGroup);
        }

        if members.len() > 1 {
            if !joined.is_empty() && !self.msg_queue.is_empty() {
                info!(len = self.msg_queue.len(), "queue not empty - resending");
                for q in self.msg_queue.take() {
                    if q.sender == local {
                        self.out.actions.push(Action::Multicast {
                            bytes: q.bytes,
                            count: Some(q.count),
                        });
                    }
                }
            }
            self.set_mode(Mode::StartSync);
            if self.out.lowest_nodeid == local.nodeid {
                self.out.send_state(MessageType::SyncStart, &[]);
            }
        } else {
            self.set_mode(Mode::Synced);
            if let Some(i) = self.member_index(local) {
                self.members[i].synced = true;
            }
            self.deliver_queue()?;
        }
        let ids: Vec<MemberId> = self.members.iter().map(|m| m.id).collect();
        let (app, mut ctx) = self.ctx();
        app.confchg(&mut ctx, &ids);
        Ok(())
    }

    fn deliver_inner(&mut self, sender: MemberId, msg: &[u8]) {
        if self.deliver_checked(sender, msg).is_err() {
            self.leave();
        }
    }

    fn deliver_checked(&mut self, sender: MemberId, msg: &[u8]) -> Step {
        if self.mode.is_error() {
            return Err(LeaveGroup);
        }
        if !self.have_sync_info {
            warn!("no sync info - internal error");
            return Err(LeaveGroup);
        }
        let Ok(header) = BaseHeader::decode(msg) else {
            warn!(len = msg.len(), "received short message");
            return Err(LeaveGroup);
        };
        if header.protocol_version > self.cfg.protocol_version {
            warn!(
                version = header.protocol_version,
                "received message with newer protocol version"
            );
            self.set_mode(Mode::VersionError);
            return Ok(());
        }
        if header.protocol_version < self.cfg.protocol_version {
            info!(
                version = header.protocol_version,
                "ignore message with older protocol version"
            );
            return Ok(());
        }
        if header.msg_type == MessageType::Normal as u16 {
            self.deliver_normal(sender, msg)
        } else {
            self.deliver_state(sender, header, msg)
        }
    }

    fn deliver_normal(&mut self, sender: MemberId, msg: &[u8]) -> Step {
        let Ok(Frame::Normal {
            header,
            count,
            payload,
        }) = Frame::decode(msg)
        else {
            warn!(len = msg.len(), "received short normal message");
            return Err(LeaveGroup);
        };
        debug_assert!(msg.len() >= NORMAL_HEADER_LEN);
        if self.mode != Mode::Synced {
            let Some(i) = self.member_index(sender) else {
                warn!("queue message from non-member {sender}");
                return Err(LeaveGroup);
            };
            let q = Queued {
                sender,
                count,
                bytes: msg.to_vec(),
            };
            if self.mode == Mode::Update && self.members[i].synced {
                self.sync_queue.push(q);
            } else {
                self.msg_queue.insert(q);
            }
            return Ok(());
        }
        let nm = NormalMessage {
            sender,
            subtype: header.subtype,
            time: header.time,
            count,
            payload,
        };
        let (app, mut ctx) = self.ctx();
        let d = app.deliver(&mut ctx, &nm);
        if sender == self.cfg.local {
            self.record_local_result(count, d.result);
        }
        d.status.map_err(|e| self.apply_app_error(e))
    }

    /// Our own message `count` was applied: answer its caller, and release
    /// any older waiters (they can no longer be applied).
    fn record_local_result(&mut self, count: u64, result: i32) {
        let older: Vec<u64> = self.waiting.range(..count).copied().collect();
        for c in older {
            self.waiting.remove(&c);
            self.out.actions.push(Action::Answer {
                count: c,
                outcome: Outcome::Aborted,
            });
        }
        if self.waiting.remove(&count) {
            self.out.actions.push(Action::Answer {
                count,
                outcome: Outcome::Applied(result),
            });
        }
    }

    fn deliver_state(&mut self, sender: MemberId, header: BaseHeader, msg: &[u8]) -> Step {
        let Ok((_, epoch, payload)) = split_state(msg) else {
            warn!(len = msg.len(), "received short state message");
            return Err(LeaveGroup);
        };
        let kind = MessageType::from_u16(header.msg_type);
        if kind != Some(MessageType::SyncStart) && epoch != self.out.sync_epoch {
            debug!(?kind, ?epoch, "ignore state message with wrong epoch");
            return Ok(());
        }
        match (self.mode, kind) {
            (Mode::Synced, Some(MessageType::UpdateComplete)) => {
                for m in &mut self.members {
                    m.synced = true;
                }
                self.deliver_queue()
            }
            (Mode::Synced, Some(MessageType::VerifyRequest)) => {
                self.on_verify_request(sender, epoch, payload)
            }
            (Mode::Synced, Some(MessageType::Verify)) => self.on_verify(epoch, payload),
            (Mode::Synced, _) => Ok(()),
            (Mode::StartSync, Some(MessageType::SyncStart)) => self.on_sync_start(sender, epoch),
            (Mode::StartSync, Some(MessageType::State)) => self.on_state(sender, payload),
            (Mode::Update, Some(MessageType::Update)) => {
                let (app, mut ctx) = self.ctx();
                app.process_update(&mut ctx, sender, payload)
                    .map_err(|e| self.apply_app_error(e))
            }
            (Mode::Update, Some(MessageType::UpdateComplete)) => self.on_update_complete(),
            (Mode::StartSync | Mode::Update, Some(MessageType::VerifyRequest))
            | (Mode::StartSync | Mode::Update, Some(MessageType::Verify)) => {
                debug!("ignore verify message while not synced");
                Ok(())
            }
            (mode, kind) => {
                warn!(
                    ?mode,
                    ?kind,
                    raw = header.msg_type,
                    "unexpected state message"
                );
                Err(LeaveGroup)
            }
        }
    }

    fn on_sync_start(&mut self, sender: MemberId, epoch: Epoch) -> Step {
        if sender.nodeid != self.out.lowest_nodeid {
            warn!("sync request from wrong member {sender} (processed anyway)");
        }
        self.out.sync_epoch = epoch;
        self.release_sync_resources();
        let (app, mut ctx) = self.ctx();
        let state = app
            .get_state(&mut ctx)
            .map_err(|e| self.apply_app_error(e))?;
        if state.is_empty() {
            warn!("get_state returned no state");
            return Err(LeaveGroup);
        }
        self.out.send_state(MessageType::State, &state);
        Ok(())
    }

    fn on_state(&mut self, sender: MemberId, payload: &[u8]) -> Step {
        let Some(i) = self.member_index(sender) else {
            warn!("received state for non-member {sender}");
            return Err(LeaveGroup);
        };
        if self.members[i].state.is_some() {
            warn!("received duplicate state for member {sender}");
            return Err(LeaveGroup);
        }
        self.members[i].state = Some(payload.to_vec());
        if self.members.iter().any(|m| m.state.is_none()) {
            return Ok(());
        }
        info!("received all states");
        let mut members = std::mem::take(&mut self.members);
        let (app, mut ctx) = self.ctx();
        let res = app.process_state_update(&mut ctx, &mut members);
        self.members = members;
        res.map_err(|e| self.apply_app_error(e))?;
        let local_synced = self
            .member_index(self.cfg.local)
            .is_some_and(|i| self.members[i].synced);
        if local_synced {
            self.set_mode(Mode::Synced);
            self.release_sync_resources();
        } else {
            self.set_mode(Mode::Update);
        }
        self.deliver_queue()
    }

    fn on_update_complete(&mut self) -> Step {
        let members = std::mem::take(&mut self.members);
        let (app, mut ctx) = self.ctx();
        let res = app.finish_resync(&mut ctx, &members);
        self.members = members;
        res.map_err(|e| self.apply_app_error(e))?;
        for m in &mut self.members {
            m.synced = true;
        }
        self.set_mode(Mode::Synced);
        self.deliver_sync_queue()?;
        self.deliver_queue()?;
        self.release_sync_resources();
        Ok(())
    }

    fn on_verify_request(&mut self, sender: MemberId, epoch: Epoch, payload: &[u8]) -> Step {
        let Ok(csum_id) = decode_verify_request(payload) else {
            warn!(
                len = payload.len(),
                "verify request with wrong length from {sender}"
            );
            return Err(LeaveGroup);
        };
        if !self.app.supports_verify() {
            return Ok(());
        }
        self.csum = self.app.checksum().map_err(|e| self.apply_app_error(e))?;
        self.csum_epoch = epoch;
        self.csum_id = csum_id;
        if sender == self.cfg.local {
            let p = encode_verify(self.csum_id, &self.csum);
            self.out.send_state(MessageType::Verify, &p);
        }
        Ok(())
    }

    fn on_verify(&mut self, epoch: Epoch, payload: &[u8]) -> Step {
        if !self.app.supports_verify() {
            return Ok(());
        }
        let Ok((csum_id, csum)) = decode_verify(payload) else {
            warn!(len = payload.len(), "verify message with wrong length");
            return Err(LeaveGroup);
        };
        if self.csum_id == csum_id && self.csum_epoch == epoch {
            if csum != self.csum {
                warn!("wrong checksum - restarting");
                return Err(LeaveGroup);
            }
            info!("data verification successful");
        } else {
            info!("skip verification - no checksum saved");
        }
        Ok(())
    }

    fn verify_request_inner(&mut self) {
        if !self.is_lowest_nodeid() || self.mode != Mode::Synced {
            return;
        }
        if self.csum_counter != self.csum_id {
            info!(id = self.csum_counter + 1, "delay verify request");
            return;
        }
        self.csum_counter += 1;
        let p = encode_verify_request(self.csum_counter);
        self.out.send_state(MessageType::VerifyRequest, &p);
    }

    /// `dfsm_deliver_queue`: deliver (SYNCED) or move to queue 2 (UPDATE)
    /// the messages of synced senders; drop those of non-members.
    fn deliver_queue(&mut self) -> Step {
        if self.msg_queue.is_empty() {
            return Ok(());
        }
        let mut kept = Vec::new();
        let mut items = self.msg_queue.take().into_iter();
        let mut res = Ok(());
        for q in items.by_ref() {
            let Some(i) = self.member_index(q.sender) else {
                debug!("remove message from non-member {}", q.sender);
                continue;
            };
            let synced = self.members[i].synced;
            match self.mode {
                Mode::Synced if synced => self.deliver_inner(q.sender, &q.bytes),
                Mode::Update if synced => self.sync_queue.push(q),
                Mode::Synced | Mode::Update => kept.push(q),
                _ => {
                    kept.push(q);
                    res = Err(LeaveGroup);
                    break;
                }
            }
        }
        kept.extend(items);
        self.msg_queue.restore(kept);
        res
    }

    /// `dfsm_deliver_sync_queue`: deliver queue 2 in arrival order.
    fn deliver_sync_queue(&mut self) -> Step {
        let mut res = Ok(());
        for q in std::mem::take(&mut self.sync_queue) {
            if res.is_ok() && self.mode == Mode::Synced {
                self.deliver_inner(q.sender, &q.bytes);
            } else {
                res = Err(LeaveGroup);
            }
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_modes_only_move_upward() {
        use Mode::*;
        assert!(mode_change_allowed(Leave, Error));
        assert!(mode_change_allowed(Leave, VersionError));
        assert!(!mode_change_allowed(Error, Leave));
        assert!(!mode_change_allowed(VersionError, Leave));
        assert!(mode_change_allowed(Error, Start));
        assert!(mode_change_allowed(Synced, Leave));
        assert!(!mode_change_allowed(Leave, Leave));
    }
}
