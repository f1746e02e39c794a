//! A small in-memory replicated key/value application for tests and the simulator; it
//! exercises the DFSM core and is neither dcdb nor kvstore.
//!
//! A small in-memory application for tests and the simulator: a replicated
//! key/value map that syncs like dcdb (leader = highest version, then
//! highest mtime, then lowest member; members with a byte-identical state
//! are synced; the leader sends a snapshot UPDATE and UPDATE_COMPLETE). It
//! is not the real dcdb or kvstore; it exercises the DFSM core.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::app::{AppError, Application, Context, Delivered, NormalMessage, SyncMember};
use crate::types::MemberId;

/// Set `key` to `value`; payload `key NUL value`. Result 0.
pub const OP_SET: u16 = 1;
/// Delete `key`; payload `key`. Result 0 or -2 (ENOENT).
pub const OP_DELETE: u16 = 2;

/// The replicated data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvDb {
    /// Bumped once per successful operation.
    pub version: u64,
    /// Sender time of the last successful operation.
    pub mtime: u32,
    pub entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl KvDb {
    /// Serialized snapshot (UPDATE payload).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.mtime.to_le_bytes());
        for (k, v) in &self.entries {
            for s in [k, v] {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s);
            }
        }
        out
    }

    /// Parse a snapshot; `None` if malformed.
    pub fn decode(mut b: &[u8]) -> Option<Self> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if b.len() < n {
                return None;
            }
            let (h, t) = b.split_at(n);
            *b = t;
            Some(h)
        }
        fn len(b: &mut &[u8]) -> Option<usize> {
            Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?) as usize)
        }
        let version = u64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?);
        let mtime = u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?);
        let mut entries = BTreeMap::new();
        while !b.is_empty() {
            let n = len(&mut b)?;
            let k = take(&mut b, n)?.to_vec();
            let n = len(&mut b)?;
            let v = take(&mut b, n)?.to_vec();
            entries.insert(k, v);
        }
        Some(KvDb {
            version,
            mtime,
            entries,
        })
    }

    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }

    /// STATE payload: version(8) ‖ mtime(4) ‖ digest(32).
    pub fn state(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(44);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.mtime.to_le_bytes());
        out.extend_from_slice(&self.digest());
        out
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries.get(key.as_bytes()).map(Vec::as_slice)
    }
}

/// `OP_SET` payload.
pub fn set_payload(key: &str, value: &str) -> Vec<u8> {
    let mut p = key.as_bytes().to_vec();
    p.push(0);
    p.extend_from_slice(value.as_bytes());
    p
}

/// One applied message, for assertions on order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub sender: MemberId,
    pub count: u64,
    pub subtype: u16,
    pub result: i32,
}

/// The test application.
#[derive(Debug, Clone, Default)]
pub struct TestApp {
    pub db: KvDb,
    /// Every message applied, in order.
    pub applied: Vec<Applied>,
    /// How often `synced` was called.
    pub synced_calls: usize,
    /// Memberships seen by `confchg`.
    pub confchgs: Vec<Vec<MemberId>>,
    /// Sent (fire-and-forget) whenever the mode becomes SYNCED, like the
    /// kvstore's `nodeip`.
    pub announce_on_synced: Option<(u16, Vec<u8>)>,
    /// Report a wrong checksum for VERIFY (simulates silent divergence).
    pub corrupt_checksum: bool,
    leader_state: Option<Vec<u8>>,
    pending: Option<KvDb>,
}

impl TestApp {
    pub fn new() -> Self {
        Self::default()
    }

    /// Start from existing data (e.g. a DB that survived a restart).
    pub fn with_db(db: KvDb) -> Self {
        TestApp {
            db,
            ..Self::default()
        }
    }

    fn apply(&mut self, msg: &NormalMessage<'_>) -> Delivered {
        match msg.subtype {
            OP_SET => {
                let Some(nul) = msg.payload.iter().position(|&b| b == 0) else {
                    return Delivered {
                        result: -22,
                        status: Err(AppError::Leave("malformed SET".into())),
                    };
                };
                self.db.version += 1;
                self.db.mtime = msg.time;
                self.db
                    .entries
                    .insert(msg.payload[..nul].to_vec(), msg.payload[nul + 1..].to_vec());
                Delivered::ok(0)
            }
            OP_DELETE => {
                if self.db.entries.remove(msg.payload).is_some() {
                    self.db.version += 1;
                    self.db.mtime = msg.time;
                    Delivered::ok(0)
                } else {
                    Delivered::ok(-2)
                }
            }
            other => Delivered {
                result: -1,
                status: Err(AppError::Leave(format!("unknown message type {other}"))),
            },
        }
    }
}

/// dcdb-style leader choice over states `version ‖ mtime ‖ …`.
fn select_leader(members: &[SyncMember]) -> Option<usize> {
    let key = |m: &SyncMember| -> Option<(u64, u32)> {
        let s = m.state.as_deref()?;
        Some((
            u64::from_le_bytes(s.get(..8)?.try_into().ok()?),
            u32::from_le_bytes(s.get(8..12)?.try_into().ok()?),
        ))
    };
    let mut leader = 0;
    let mut best = key(members.first()?)?;
    for (i, m) in members.iter().enumerate().skip(1) {
        let k = key(m)?;
        if k.0 > best.0 || (k.0 == best.0 && k.1 > best.1) {
            leader = i;
            best = k;
        }
    }
    Some(leader)
}

impl Application for TestApp {
    type Effect = std::convert::Infallible;

    fn deliver(&mut self, _ctx: &mut Context<'_>, msg: &NormalMessage<'_>) -> Delivered {
        let d = self.apply(msg);
        self.applied.push(Applied {
            sender: msg.sender,
            count: msg.count,
            subtype: msg.subtype,
            result: d.result,
        });
        d
    }

    fn get_state(&mut self, _ctx: &mut Context<'_>) -> Result<Vec<u8>, AppError> {
        Ok(self.db.state())
    }

    fn process_state_update(
        &mut self,
        ctx: &mut Context<'_>,
        members: &mut [SyncMember],
    ) -> Result<(), AppError> {
        let leader =
            select_leader(members).ok_or_else(|| AppError::Leave("malformed state".into()))?;
        let leader_state = members[leader].state.clone();
        for m in members.iter_mut() {
            m.synced = m.state == leader_state;
        }
        self.leader_state = leader_state;
        if members[leader].id == ctx.local() {
            if members.iter().any(|m| !m.synced) {
                ctx.send_update(&self.db.encode());
            }
            ctx.send_update_complete();
        }
        Ok(())
    }

    fn process_update(
        &mut self,
        _ctx: &mut Context<'_>,
        _sender: MemberId,
        payload: &[u8],
    ) -> Result<(), AppError> {
        let db = KvDb::decode(payload).ok_or_else(|| AppError::Leave("bad update".into()))?;
        self.pending = Some(db);
        Ok(())
    }

    fn finish_resync(&mut self, _ctx: &mut Context<'_>, _members: &[SyncMember]) -> Result<(), AppError> {
        let db = self
            .pending
            .take()
            .ok_or_else(|| AppError::Leave("commit without update".into()))?;
        if Some(db.state()) != self.leader_state {
            return Err(AppError::Leave(
                "state differs from leader after commit".into(),
            ));
        }
        self.db = db;
        Ok(())
    }

    fn cleanup(&mut self) {
        self.pending = None;
    }

    fn supports_verify(&self) -> bool {
        true
    }

    fn checksum(&mut self) -> Result<[u8; 32], AppError> {
        let mut c = self.db.digest();
        if self.corrupt_checksum {
            c[0] ^= 1;
        }
        Ok(c)
    }

    fn synced(&mut self, ctx: &mut Context<'_>) {
        self.synced_calls += 1;
        if let Some((subtype, payload)) = &self.announce_on_synced {
            ctx.send_normal(*subtype, payload);
        }
    }

    fn confchg(&mut self, _ctx: &mut Context<'_>, members: &[MemberId]) {
        self.confchgs.push(members.to_vec());
    }
}
