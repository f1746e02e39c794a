//! The dcdb application: the file tree replicated through the `pve_dcdb_v1` CPG group.
//!
//! Delivered fuse-op messages become [`Op`]s applied through [`Database::apply`] — the same
//! path local mode uses — with writer = sender nodeid and mtime = the sender's clock. On a
//! membership change the tree's memdb index is the DFSM state; the data leader (highest
//! version, then mtime, then lowest member) sends the entries others lack, and followers
//! take them only if the rebuilt index equals the leader's byte for byte.
//!
//! A step changes only the tree in RAM (the truth, and the order of changes must be the
//! delivery order); what needs I/O is queued as a [`DcdbEffect`] and done by [`DcdbHost`]
//! after the step: acknowledgements (crash record, store), the resync's store transaction,
//! the host's corosync.conf.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pmxcfs_backend::{path as tree_path, Content, Database, Durability, Entry, Name, Op, Stamp};
use pmxcfs_dfsm::wire::dcdb::{DcdbMessage, DcdbSubtype, FuseOp, Unlock};
use pmxcfs_dfsm::wire::index::MemdbIndex;
use pmxcfs_dfsm::wire::update::{InodeRecord, DT_DIR};
use pmxcfs_dfsm::{AppError, Application, Context, Delivered, EffectHost, MemberId, NormalMessage, SyncMember};
use tracing::{info, warn};

use crate::corosync_conf;

/// What a dcdb step leaves for the host, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DcdbEffect {
    /// Acknowledge every change applied so far ([`Database::acknowledge`]): an UNLOCK.
    Acknowledge,
    /// A resync replaced the tree in RAM: write it as one durable store transaction
    /// ([`Database::persist_resync`]).
    PersistResync,
    /// The tree's corosync.conf may have changed: bring the host's copy in step
    /// ([`corosync_conf::sync`]).
    SyncCorosyncConf,
}

/// The replicated file tree.
pub struct DcdbApp {
    db: Arc<Database>,
    quorate: Arc<AtomicBool>,
    /// Effects of the current step, taken by the host after it.
    effects: Vec<DcdbEffect>,
    /// Leader's index of the current sync round.
    leader_index: Option<Vec<u8>>,
    /// Entries received from the leader in this round.
    updates: Vec<Entry>,
}

/// Performs [`DcdbEffect`]s after each step (on the group's thread).
pub struct DcdbHost {
    pub db: Arc<Database>,
    /// The host's corosync.conf; None = not kept in step (simulations).
    pub host_corosync_conf: Option<PathBuf>,
}

impl EffectHost<DcdbEffect> for DcdbHost {
    fn perform(&mut self, effects: Vec<DcdbEffect>) -> Result<(), AppError> {
        for effect in effects {
            match effect {
                DcdbEffect::Acknowledge => {
                    if let Err(e) = self.db.acknowledge() {
                        warn!(target: "dcdb", "unable to acknowledge: {e}");
                    }
                }
                DcdbEffect::PersistResync => self.db.persist_resync().map_err(|e| {
                    warn!(target: "dcdb", "commit failed: {e}");
                    AppError::Leave(e)
                })?,
                DcdbEffect::SyncCorosyncConf => {
                    if let Some(host) = &self.host_corosync_conf {
                        corosync_conf::sync(&self.db, host);
                    }
                }
            }
        }
        Ok(())
    }
}

fn leave(why: impl Into<String>) -> Delivered {
    Delivered { result: -libc::EINVAL, status: Err(AppError::Leave(why.into())) }
}

fn utf8(b: &[u8]) -> Option<String> {
    Some(tree_path::normalize(&pmxcfs_backend::name_bytes::decode(b)))
}

/// Encodes a fuse-op message for `op`: (subtype, payload).
pub fn encode_op(op: &Op) -> Result<(u16, Vec<u8>), String> {
    use pmxcfs_backend::name_bytes::encode as raw;
    let (subtype, path, to, offset, flags, data): (DcdbSubtype, &str, Option<&str>, u32, u32, &[u8]) = match op {
        Op::Write { path, offset, data, truncate } => (DcdbSubtype::Write, path, None, *offset as u32, u32::from(*truncate), data),
        Op::Mkdir { path } => (DcdbSubtype::Mkdir, path, None, 0, 0, &[]),
        Op::Create { path } => (DcdbSubtype::Create, path, None, 0, 0, &[]),
        Op::Delete { path } => (DcdbSubtype::Delete, path, None, 0, 0, &[]),
        Op::Rename { from, to } => (DcdbSubtype::Rename, from, Some(to.as_str()), 0, 0, &[]),
        Op::SetMtime { path, mtime } => (DcdbSubtype::Mtime, path, None, *mtime, 0, &[]),
        Op::Unlock { path, csum } => return Ok((DcdbSubtype::Unlock as u16, Unlock { csum: *csum, path: &raw(path) }.encode())),
    };
    let path = raw(path);
    let to = to.map(raw);
    let fop = FuseOp { offset, flags, path: Some(&path), to: to.as_deref(), data };
    fop.encode().map(|p| (subtype as u16, p)).map_err(|e| e.to_string())
}

/// Payload of an UNLOCK_REQUEST / UNLOCK for `path` with checksum `csum`.
pub fn encode_unlock(path: &str, csum: [u8; 32]) -> Vec<u8> {
    Unlock { csum, path: &pmxcfs_backend::name_bytes::encode(path) }.encode()
}

/// An inode record (UPDATE payload) → tree entry.
pub fn entry_from_record(r: &InodeRecord<'_>) -> Result<Entry, String> {
    let name = pmxcfs_backend::name_bytes::decode(r.name);
    let content = if r.entry_type == DT_DIR { Content::Dir(Default::default()) } else { Content::File(Arc::from(r.data)) };
    Ok(Entry { inode: r.inode, parent: r.parent, version: r.version, writer: r.writer, mtime: r.mtime, name: Name::from(name.as_ref()), content })
}

/// An entry without its children table (what an UPDATE carries); file bytes are shared.
fn entry_header(e: &Entry) -> Entry {
    let content = match &e.content {
        Content::File(d) => Content::File(d.clone()),
        Content::Dir(_) => Content::Dir(Default::default()),
    };
    Entry { inode: e.inode, parent: e.parent, version: e.version, writer: e.writer, mtime: e.mtime, name: e.name.clone(), content }
}

/// The UPDATE record of `e`; `name` is its raw name ([`pmxcfs_backend::name_bytes::encode`]).
fn record_of<'a>(e: &'a Entry, name: &'a [u8]) -> InodeRecord<'a> {
    InodeRecord {
        parent: e.parent,
        inode: e.inode,
        version: e.version,
        writer: e.writer,
        mtime: e.mtime,
        entry_type: e.kind(),
        name,
        data: e.data(),
    }
}

/// `dcdb_select_leader`: highest version, then highest mtime, then the first member.
fn select_leader(indexes: &[MemdbIndex]) -> usize {
    let mut leader = 0;
    for (i, idx) in indexes.iter().enumerate().skip(1) {
        let l = &indexes[leader];
        if idx.version > l.version || (idx.version == l.version && idx.mtime > l.mtime) {
            leader = i;
        }
    }
    leader
}

impl DcdbApp {
    pub fn new(db: Arc<Database>, quorate: Arc<AtomicBool>) -> DcdbApp {
        DcdbApp { db, quorate, effects: Vec::new(), leader_index: None, updates: Vec::new() }
    }

    fn apply_fuse(&mut self, local: MemberId, subtype: DcdbSubtype, f: &FuseOp<'_>, msg: &NormalMessage<'_>) -> Delivered {
        let Some(path) = f.path.and_then(utf8) else { return leave("fuse message without a valid path") };
        // Nothing is committed on this (the group's only) thread: the writer waiting for its
        // own message commits right after the answer, before its syscall returns
        // (ClusterSink::submit), so concurrent writers share transactions; a node's own create
        // is folded into the writer's close. Changes from other nodes, which their originator
        // already holds, are group-committed within 1 s — and so is an own change whose
        // writer stopped waiting.
        let durability = match subtype {
            DcdbSubtype::Create if msg.sender == local => Durability::Deferred,
            _ => Durability::Soon,
        };
        let op = match subtype {
            DcdbSubtype::Write => Op::Write { path: path.clone(), offset: f.offset as u64, data: f.data.to_vec(), truncate: f.flags & 1 != 0 },
            DcdbSubtype::Mkdir => Op::Mkdir { path: path.clone() },
            DcdbSubtype::Delete => Op::Delete { path: path.clone() },
            DcdbSubtype::Create => Op::Create { path: path.clone() },
            DcdbSubtype::Mtime => Op::SetMtime { path: path.clone(), mtime: f.offset },
            DcdbSubtype::Rename => match f.to.and_then(utf8) {
                Some(to) => Op::Rename { from: path.clone(), to },
                None => return leave("rename without a valid target"),
            },
            _ => return leave("unexpected fuse message type"),
        };
        let stamp = Stamp { writer: msg.sender.nodeid, mtime: msg.time };
        let result = match self.db.apply(&op, stamp, durability) {
            // WRITE answers with the byte count, everything else with 0
            Ok(n) if subtype == DcdbSubtype::Write => n as i32,
            Ok(_) => 0,
            Err(e) => -e.errno(),
        };
        if self.db.failed() {
            return Delivered { result, status: Err(AppError::Fatal("database error".into())) };
        }
        let touches_conf = match &op {
            Op::Write { path, .. } | Op::Create { path } => path == "corosync.conf",
            Op::Rename { to, .. } => to == "corosync.conf",
            _ => false,
        };
        if result >= 0 && touches_conf {
            self.effects.push(DcdbEffect::SyncCorosyncConf);
        }
        Delivered::ok(result)
    }

    fn apply_unlock(&mut self, ctx: &mut Context<'_>, request: bool, u: &Unlock<'_>, msg: &NormalMessage<'_>) -> Delivered {
        let Some(path) = utf8(u.path) else { return leave("unlock without a valid path") };
        let current = self.db.tree().lock_csum(&path);
        if current != Some(u.csum) || !tree_path::is_lock_dir_path(&path) {
            return Delivered::ok(0);
        }
        if request {
            if ctx.is_lowest_nodeid() {
                let expired = self.db.with_tree_mut(|t| t.lock_expired(&path, &u.csum, ctx.now()));
                if expired {
                    info!(target: "dcdb", "sending unlock for expired lock '{path}'");
                    ctx.send_normal(DcdbSubtype::Unlock as u16, &encode_unlock(&path, u.csum));
                }
            }
            return Delivered::ok(0);
        }
        let stamp = Stamp { writer: msg.sender.nodeid, mtime: msg.time };
        // acknowledged by the host right after this step
        let result = match self.db.apply(&Op::Unlock { path, csum: u.csum }, stamp, Durability::Deferred) {
            Ok(_) => {
                self.effects.push(DcdbEffect::Acknowledge);
                0
            }
            Err(e) => -e.errno(),
        };
        Delivered::ok(result)
    }
}

impl Application for DcdbApp {
    type Effect = DcdbEffect;

    fn take_effects(&mut self) -> Vec<DcdbEffect> {
        std::mem::take(&mut self.effects)
    }

    fn deliver(&mut self, ctx: &mut Context<'_>, msg: &NormalMessage<'_>) -> Delivered {
        if !self.quorate.load(Ordering::SeqCst) {
            warn!(target: "dcdb", "received message while not quorate - leaving");
            return Delivered { result: -libc::EACCES, status: Err(AppError::Leave("not quorate".into())) };
        }
        let Some(subtype) = DcdbSubtype::from_u16(msg.subtype) else {
            return leave(format!("unknown message type {}", msg.subtype));
        };
        match DcdbMessage::decode(msg.subtype, msg.payload) {
            Ok(DcdbMessage::Fuse(_, f)) => self.apply_fuse(ctx.local(), subtype, &f, msg),
            Ok(DcdbMessage::Unlock(_, u)) => self.apply_unlock(ctx, subtype == DcdbSubtype::UnlockRequest, &u, msg),
            Err(e) => leave(format!("unable to parse message: {e}")),
        }
    }

    fn get_state(&mut self, _ctx: &mut Context<'_>) -> Result<Vec<u8>, AppError> {
        Ok(self.db.tree().encode_index())
    }

    fn process_state_update(&mut self, ctx: &mut Context<'_>, members: &mut [SyncMember]) -> Result<(), AppError> {
        let mut indexes = Vec::with_capacity(members.len());
        for m in members.iter() {
            let state = m.state.as_deref().ok_or_else(|| AppError::Leave(format!("no state from {}", m.id)))?;
            let idx = MemdbIndex::decode(state).map_err(|e| AppError::Leave(format!("bad index from {}: {e}", m.id)))?;
            indexes.push(idx);
        }
        let leader = select_leader(&indexes);
        let leader_state = members[leader].state.clone();
        for m in members.iter_mut() {
            m.synced = m.state == leader_state;
        }
        self.leader_index = leader_state;
        self.updates.clear();
        if members[leader].id != ctx.local() {
            return Ok(());
        }
        info!(target: "dcdb", "we (member {}) are the data leader", ctx.local());
        // Inodes whose digest differs for some unsynced member: binary searches in their
        // (sorted) indexes, no per-member tables; an unsorted index gets a table.
        let mut inodes: Vec<u64> = Vec::new();
        for (i, m) in members.iter().enumerate() {
            if m.synced {
                continue;
            }
            let theirs = &indexes[i];
            let table: Option<HashMap<u64, [u8; 32]>> = (!theirs.is_sorted()).then(|| theirs.entries.iter().map(|e| (e.inode, e.digest)).collect());
            for e in &indexes[leader].entries {
                let digest = match &table {
                    Some(t) => t.get(&e.inode),
                    None => theirs.digest_of(e.inode),
                };
                if digest != Some(&e.digest) {
                    inodes.push(e.inode);
                }
            }
        }
        inodes.sort_unstable();
        inodes.dedup();
        // A snapshot of the entries to send (file bytes shared, not copied; no children
        // tables), encoded one at a time while the transport sends them: the tree may move on
        // once this node is synced, the updates must be the state the index described.
        let snapshot: Vec<Entry> = {
            let tree = self.db.tree();
            inodes.iter().filter_map(|ino| tree.get(*ino)).map(entry_header).collect()
        };
        ctx.send_updates(snapshot.into_iter().filter_map(|e| {
            let name = pmxcfs_backend::name_bytes::encode(&e.name);
            match record_of(&e, &name).encode() {
                Ok(payload) => Some(payload),
                Err(err) => {
                    warn!(target: "dcdb", "unable to encode inode {}: {err}", e.inode);
                    None
                }
            }
        }));
        ctx.send_update_complete();
        Ok(())
    }

    fn process_update(&mut self, _ctx: &mut Context<'_>, _sender: MemberId, payload: &[u8]) -> Result<(), AppError> {
        let r = InodeRecord::decode(payload).map_err(|e| AppError::Leave(format!("bad update: {e}")))?;
        let e = entry_from_record(&r).map_err(AppError::Leave)?;
        self.updates.push(e);
        Ok(())
    }

    fn finish_resync(&mut self, _ctx: &mut Context<'_>, _members: &[SyncMember]) -> Result<(), AppError> {
        let leader = self.leader_index.take().ok_or_else(|| AppError::Leave("commit without leader state".into()))?;
        MemdbIndex::decode(&leader).map_err(|e| AppError::Leave(e.to_string()))?;
        let updates = std::mem::take(&mut self.updates);
        info!(target: "dcdb", "update complete - trying to commit (got {} inode updates)", updates.len());
        self.db.resync_tree(&leader, updates).map_err(|e| {
            warn!(target: "dcdb", "commit failed: {e}");
            AppError::Leave(e)
        })?;
        self.effects.push(DcdbEffect::PersistResync);
        self.effects.push(DcdbEffect::SyncCorosyncConf);
        Ok(())
    }

    fn cleanup(&mut self) {
        self.updates.clear();
    }

    fn supports_verify(&self) -> bool {
        true
    }

    fn checksum(&mut self) -> Result<[u8; 32], AppError> {
        Ok(self.db.tree().checksum())
    }
}

#[cfg(test)]
mod name_bytes_tests {
    use super::*;
    use pmxcfs_backend::name_bytes::decode;

    #[test]
    fn a_non_utf8_path_goes_on_the_wire_as_its_raw_bytes() {
        let path = format!("nodes/{}", decode(b"caf\xe9"));
        let (subtype, payload) = encode_op(&Op::Create { path }).unwrap();
        assert_eq!(subtype, DcdbSubtype::Create as u16);
        assert!(payload.windows(5).any(|w| w == b"caf\xe9\0"), "raw bytes, NUL-terminated");
    }

    #[test]
    fn a_record_with_a_non_utf8_name_from_a_c_node_is_accepted_and_sent_back_identical() {
        let r = InodeRecord { parent: 0, inode: 7, version: 7, writer: 1, mtime: 1, entry_type: 8, name: b"x\xff", data: b"d" };
        let e = entry_from_record(&r).expect("accepted, no leave");
        let raw = pmxcfs_backend::name_bytes::encode(&e.name);
        assert_eq!(record_of(&e, &raw).encode().unwrap(), r.encode().unwrap());
    }
}
