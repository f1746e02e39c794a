//! The kvstore application: node status key/values and the cluster log replicated through
//! the `pve_kvstore_v1` CPG group (DFSM protocol version 0).
//!
//! State = the cluster-log ring; on sync every member is synced at once after merging all
//! logs, then re-publishes its local kv entries; entering SYNCED stores and publishes `nodeip`. A
//! node's own messages are ignored on delivery (they were applied before sending).
//! A step changes the tables in RAM; RRD file updates are [`KvstoreEffect`]s done by
//! [`KvstoreHost`] after it.

use std::sync::Arc;

use pmxcfs_dfsm::wire::kvstore::{KVSTORE_MESSAGE_LOG as SUBTYPE_LOG, KVSTORE_MESSAGE_UPDATE as SUBTYPE_UPDATE};
use pmxcfs_dfsm::{AppError, Application, Context, Delivered, EffectHost, MemberId, NormalMessage, SyncMember};
use pmxcfs_status::clusterlog::LogEntry;
use pmxcfs_status::kvstore::{decode_update, encode_update};
use pmxcfs_status::node::Status;
use pmxcfs_status::rrd::RrdUpdatePlan;
use tracing::{debug, warn};

/// What a kvstore step leaves for the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvstoreEffect {
    /// An RRD value from another node: update its RRD file ([`Status::update_rrd`]).
    UpdateRrd(RrdUpdatePlan),
}

/// The replicated status.
pub struct KvstoreApp {
    status: Arc<Status>,
    /// This node's IP, published as `nodeip` when no local value was set.
    local_ip: String,
    /// Effects of the current step, taken by the host after it.
    effects: Vec<KvstoreEffect>,
}

impl KvstoreApp {
    pub fn new(status: Arc<Status>, local_ip: String) -> KvstoreApp {
        KvstoreApp { status, local_ip, effects: Vec::new() }
    }
}

/// Performs [`KvstoreEffect`]s after each step (on the group's thread).
pub struct KvstoreHost {
    pub status: Arc<Status>,
}

impl EffectHost<KvstoreEffect> for KvstoreHost {
    fn perform(&mut self, effects: Vec<KvstoreEffect>) -> Result<(), AppError> {
        for KvstoreEffect::UpdateRrd(plan) in effects {
            self.status.update_rrd(&plan);
        }
        Ok(())
    }
}

/// UPDATE payload for `key` = `data` (subtype [`SUBTYPE_UPDATE`]).
pub fn update_payload(key: &str, data: &[u8]) -> Option<Vec<u8>> {
    encode_update(key, data).ok()
}

impl Application for KvstoreApp {
    type Effect = KvstoreEffect;

    fn take_effects(&mut self) -> Vec<KvstoreEffect> {
        std::mem::take(&mut self.effects)
    }

    fn deliver(&mut self, ctx: &mut Context<'_>, msg: &NormalMessage<'_>) -> Delivered {
        if msg.sender == ctx.local() {
            return Delivered::ok(0);
        }
        match msg.subtype {
            SUBTYPE_UPDATE => match decode_update(msg.payload) {
                Ok((key, data)) => {
                    if let Some(plan) = self.status.store_remote(msg.sender.nodeid, key, data) {
                        self.effects.push(KvstoreEffect::UpdateRrd(plan));
                    }
                }
                Err(e) => warn!(target: "status", "unable to parse kvstore update from {}: {e}", msg.sender),
            },
            SUBTYPE_LOG => match LogEntry::decode(msg.payload) {
                Ok(e) => {
                    self.status.tables.lock().clusterlog.insert(&e);
                }
                Err(e) => warn!(target: "status", "unable to parse cluster log entry from {}: {e}", msg.sender),
            },
            other => {
                warn!(target: "status", "received unknown kvstore message type {other}");
                return Delivered::ok(-libc::EACCES);
            }
        }
        Delivered::ok(0)
    }

    fn get_state(&mut self, _ctx: &mut Context<'_>) -> Result<Vec<u8>, AppError> {
        Ok(self.status.tables.lock().clusterlog.get_state())
    }

    fn process_state_update(&mut self, ctx: &mut Context<'_>, members: &mut [SyncMember]) -> Result<(), AppError> {
        for m in members.iter_mut() {
            m.synced = true;
        }
        let local = ctx.local();
        let local_index = members.iter().position(|m| m.id == local);
        if let (Some(li), true) = (local_index, members.len() >= 2) {
            let states: Vec<Option<&[u8]>> = members.iter().map(|m| m.state.as_deref()).collect();
            if let Err(e) = self.status.tables.lock().clusterlog.merge_states(&states, li) {
                warn!(target: "status", "cluster log merge failed: {e}");
            }
        }
        // re-publish the local kv table (not RRD, not nodeip)
        let entries: Vec<(String, Vec<u8>)> =
            self.status.tables.lock().store.kv.local_table().iter().map(|(k, e)| (k.to_string(), e.data.clone())).collect();
        for (k, v) in entries {
            if let Some(p) = update_payload(&k, &v) {
                ctx.send_normal(SUBTYPE_UPDATE, &p);
            }
        }
        Ok(())
    }

    fn process_update(&mut self, _ctx: &mut Context<'_>, sender: MemberId, _payload: &[u8]) -> Result<(), AppError> {
        Err(AppError::Leave(format!("unexpected kvstore UPDATE from {sender}")))
    }

    fn finish_resync(&mut self, _ctx: &mut Context<'_>, _members: &[SyncMember]) -> Result<(), AppError> {
        Ok(())
    }

    fn synced(&mut self, ctx: &mut Context<'_>) {
        let ip = self.status.tables.lock().store.kv.node_ip(&self.status.nodename).map(str::to_string).unwrap_or_else(|| self.local_ip.clone());
        if ip.is_empty() {
            return;
        }
        let mut data = ip.into_bytes();
        data.push(0);
        // kept locally too (`cfs_status_set`), so this node's own `.members` shows its ip
        if let Err(e) = self.status.set_local("nodeip", &data) {
            warn!(target: "status", "unable to store nodeip: {}", std::io::Error::from_raw_os_error(e.errno()));
        }
        debug!(target: "status", "publishing nodeip");
        if let Some(p) = update_payload("nodeip", &data) {
            ctx.send_normal(SUBTYPE_UPDATE, &p);
        }
    }

    fn confchg(&mut self, _ctx: &mut Context<'_>, members: &[MemberId]) {
        let ids: Vec<u32> = members.iter().map(|m| m.nodeid).collect();
        self.status.set_online(&ids);
    }
}
