//! The cluster log of a node, byte-compatible with the original's (`logger.c`): its ring,
//! entries, dedup and the merge of member logs.
//!
//! The cluster log: a fixed-size ring buffer of log entries with the byte layout of the
//! original pmxcfs (`logger.c`/`logger.h`), so that it can be exchanged with C nodes as the
//! kvstore STATE payload and single entries as kvstore LOG messages.
//!
//! Layout (all integers little-endian):
//!
//! * Ring (`clog_base_t`): `size u32` @0 (whole buffer incl. header), `cpos u32` @4 (offset of
//!   the newest entry, 0 = empty), entries from offset 8, each at an 8-byte aligned offset.
//! * Entry (`clog_entry_t`, 48 bytes + strings): `prev`, `next`, `uid`, `time` (u32 each),
//!   `node_digest`, `ident_digest` (u64, FNV-1a-64 including the NUL), `pid` u32,
//!   `priority`, `node_len`, `ident_len`, `tag_len` (u8 each), `msg_len` u32, then
//!   `node\0ident\0tag\0msg\0` from offset 44, followed by 4 slack bytes.
//!
//! The local log is kept as the raw buffer (including the stale bytes the original leaves
//! behind after a wrap-around), so `get_state` produces the same bytes as the C daemon.
//! Rings received from other nodes are validated before use ([`ClogRing::from_state`]): a
//! corrupt ring is a typed error, never a panic or an endless walk.
//!
//! Locking is left to the caller (wrap [`ClusterLog`] in a mutex).
//!
//! * [`entry`]: one entry ([`LogEntry`]); the byte layout itself is
//!   `pmxcfs_dfsm::wire::kvstore::ClogHeader`, the one codec of the format;
//! * [`ring`]: the ring buffer ([`ClogRing`]);
//! * [`escape`]: the message escaping ([`utf8_to_ascii`]);
//! * this module: the node's log ([`ClusterLog`]: uids, dedup, merge of member logs).
//!
//! The IPC request payloads of the cluster-log calls are parsed in [`crate::requests`].

pub mod entry;
pub mod escape;
pub mod ring;

use std::collections::{BTreeMap, HashMap};

use pmxcfs_dfsm::wire::kvstore;

pub use entry::LogEntry;
pub use escape::utf8_to_ascii;
pub use ring::ClogRing;

/// Total size of the ring buffer the original uses (`CLOG_DEFAULT_SIZE`).
pub const CLOG_DEFAULT_SIZE: u32 = kvstore::CLOG_DEFAULT_SIZE as u32;
/// Maximum size of one entry including its 48-byte header (`CLOG_MAX_ENTRY_SIZE`).
pub const CLOG_MAX_ENTRY_SIZE: u32 = kvstore::CLOG_MAX_ENTRY_SIZE as u32;
/// Smallest ring size the original accepts when creating a ring.
pub const CLOG_MIN_SIZE: u32 = CLOG_MAX_ENTRY_SIZE * 10;
/// Size of the ring header (`size`, `cpos`).
pub const CLOG_HEADER_SIZE: u32 = 8;
/// `sizeof(clog_entry_t)`: the fixed part of an entry, including the 4 slack bytes.
pub const ENTRY_HEADER_SIZE: usize = kvstore::CLOG_ENTRY_HEADER_LEN;
/// Offset of the string data inside an entry.
pub const ENTRY_DATA_OFFSET: usize = kvstore::ClogHeader::LEN;
/// Default number of entries in `.clusterlog` and for `GET_CLUSTER_LOG` with `max_entries == 0`.
pub const DEFAULT_DUMP_MAX: u32 = 50;

/// Errors of the cluster-log module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClogError {
    #[error("log entry too short ({0} < 48 bytes)")]
    EntryTooShort(usize),
    #[error("log entry has {actual} bytes but its lengths say {expected}")]
    EntryLengthMismatch { actual: usize, expected: u64 },
    #[error("log entry of {0} bytes exceeds the {CLOG_MAX_ENTRY_SIZE}-byte limit")]
    EntryTooLarge(u64),
    #[error("unterminated {0} string in log entry")]
    Unterminated(&'static str),
    #[error("log priority {0} out of range (must be < 8)")]
    InvalidPriority(u8),
    #[error("invalid ring size {0}")]
    InvalidRingSize(u64),
    #[error("ring state too short ({0} bytes)")]
    RingTooShort(usize),
    #[error("ring size field {field} does not match the state length {len}")]
    RingSizeMismatch { field: u32, len: usize },
    #[error("ring entry at offset {offset} is corrupt: {reason}")]
    RingBadEntry { offset: u32, reason: &'static str },
    #[error("ring prev links loop back to offset {0}")]
    RingCycle(u32),
    #[error("merge needs at least 2 logs and a local index inside them")]
    BadMergeInput,
}

impl ClogError {
    /// The errno an IPC caller gets for this error (all are invalid input).
    pub fn errno(&self) -> i32 {
        libc::EINVAL
    }
}

/// The cluster log of one node: ring buffer, per-node dedup table and uid counter
/// (`clusterlog_t` plus `logger.c`'s `uid_counter`).
#[derive(Debug, Clone)]
pub struct ClusterLog {
    ring: ClogRing,
    /// node_digest → newest (time, uid) accepted.
    dedup: HashMap<u64, (u32, u32)>,
    uid_counter: u32,
}

impl Default for ClusterLog {
    fn default() -> Self {
        Self::new()
    }
}

/// Record `e` in a dedup table; true when it is strictly newer than what was seen for its node.
fn dedup_check(dedup: &mut HashMap<u64, (u32, u32)>, e: &LogEntry) -> bool {
    match dedup.get_mut(&e.meta.node_digest) {
        None => {
            dedup.insert(e.meta.node_digest, (e.meta.time, e.meta.uid));
            true
        }
        Some(last) => {
            if e.meta.time > last.0 || (e.meta.time == last.0 && e.meta.uid > last.1) {
                *last = (e.meta.time, e.meta.uid);
                true
            } else {
                false
            }
        }
    }
}

impl ClusterLog {
    pub fn new() -> ClusterLog {
        ClusterLog {
            ring: ClogRing::new(),
            dedup: HashMap::new(),
            uid_counter: 0,
        }
    }

    /// The current ring buffer.
    pub fn ring(&self) -> &ClogRing {
        &self.ring
    }

    /// Entries newest first.
    pub fn entries(&self) -> Vec<LogEntry> {
        self.ring.entries()
    }

    /// Insert with dedup (`clusterlog_insert`): only entries strictly newer by `(time, uid)`
    /// than the last one accepted for the same node digest go in. Returns whether it did.
    pub fn insert(&mut self, e: &LogEntry) -> bool {
        if dedup_check(&mut self.dedup, e) {
            self.ring.append(e);
            true
        } else {
            tracing::info!("ignore insert of duplicate cluster log");
            false
        }
    }

    /// Pack a local entry with the next uid (1, 2, ...) and insert it (`clusterlog_add`);
    /// returns the entry so that the caller can multicast it (only IPC-logged entries are
    /// sent to the cluster). The uid is only consumed when the priority is valid.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        node: &[u8],
        ident: &[u8],
        tag: &[u8],
        pid: u32,
        time: u32,
        priority: u8,
        msg: &[u8],
    ) -> Result<LogEntry, ClogError> {
        if priority >= 8 {
            return Err(ClogError::InvalidPriority(priority));
        }
        self.uid_counter = self.uid_counter.wrapping_add(1);
        let e = LogEntry::pack(node, ident, tag, pid, time, priority, msg, self.uid_counter)?;
        self.insert(&e);
        Ok(e)
    }

    /// JSON dump, see [`ClogRing::dump_json`].
    pub fn dump_json(&self, ident: Option<&[u8]>, max_entries: u32) -> Vec<u8> {
        self.ring.dump_json(ident, max_entries)
    }

    /// The kvstore STATE payload (`clusterlog_get_state`): the log is re-sorted in place
    /// first, then the whole buffer is returned.
    pub fn get_state(&mut self) -> Vec<u8> {
        if let Some(sorted) = self.ring.sorted() {
            self.ring = sorted;
        }
        self.ring.as_bytes().to_vec()
    }

    /// Merge the logs of all members after a kvstore sync (`clusterlog_merge`).
    ///
    /// `logs[local_index]` is ignored: the live local ring is used in its place. `None`
    /// stands for a member whose state was unusable. Repeatedly the newest entry (largest
    /// `time`, first log on ties, time 0 never) across all cursors is taken and put into a set
    /// keyed by `(time, node_digest, uid)` unless present; the merge stops once the slots of
    /// the taken entries reach `131072 - 8 - 4096` bytes. The set is written oldest first into
    /// a fresh default-size ring that replaces the local one; a dedup table rebuilt from the
    /// taken entries replaces the old one.
    pub fn merge(
        &mut self,
        logs: &[Option<&ClogRing>],
        local_index: usize,
    ) -> Result<(), ClogError> {
        if logs.len() < 2 || local_index >= logs.len() {
            return Err(ClogError::BadMergeInput);
        }
        let rings: Vec<Option<&ClogRing>> = logs
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if i == local_index {
                    Some(&self.ring)
                } else {
                    *l
                }
            })
            .collect();
        // each log's entries newest first, exactly the sequence the original's cursor visits
        let lists: Vec<Vec<LogEntry>> = rings
            .iter()
            .map(|r| r.map(|r| r.entries()).unwrap_or_default())
            .collect();
        let mut cursor = vec![0usize; lists.len()];
        let mut tree: BTreeMap<(u32, u64, u32), &LogEntry> = BTreeMap::new();
        let mut dedup = HashMap::new();
        let maxsize = (CLOG_DEFAULT_SIZE - CLOG_HEADER_SIZE - CLOG_MAX_ENTRY_SIZE) as usize;
        let mut logsize = 0usize;
        loop {
            let mut found = None;
            let mut last = 0u32;
            for (i, l) in lists.iter().enumerate() {
                if let Some(e) = l.get(cursor[i]) {
                    if e.meta.time > last {
                        last = e.meta.time;
                        found = Some(i);
                    }
                }
            }
            let Some(i) = found else { break };
            let e = &lists[i][cursor[i]];
            if let std::collections::btree_map::Entry::Vacant(v) = tree.entry(e.key()) {
                v.insert(e);
                dedup_check(&mut dedup, e);
                logsize += ring::align8(e.size());
                if logsize >= maxsize {
                    break;
                }
            }
            cursor[i] += 1;
        }
        let mut res = ClogRing::new();
        for e in tree.values() {
            res.append(e);
        }
        self.ring = res;
        self.dedup = dedup;
        Ok(())
    }

    /// [`ClusterLog::merge`] on raw STATE payloads. Unusable states are logged and treated
    /// as missing (like the original); the errors are returned per index for the caller.
    pub fn merge_states(
        &mut self,
        states: &[Option<&[u8]>],
        local_index: usize,
    ) -> Result<Vec<Option<ClogError>>, ClogError> {
        if states.len() < 2 || local_index >= states.len() {
            return Err(ClogError::BadMergeInput);
        }
        let mut errors = vec![None; states.len()];
        let mut rings = Vec::with_capacity(states.len());
        for (i, s) in states.iter().enumerate() {
            if i == local_index {
                rings.push(None);
                continue;
            }
            match s.map(ClogRing::from_state) {
                Some(Ok(r)) => rings.push(Some(r)),
                Some(Err(e)) => {
                    tracing::error!("received unusable cluster log state from member {i}: {e}");
                    errors[i] = Some(e);
                    rings.push(None);
                }
                None => rings.push(None),
            }
        }
        let refs: Vec<Option<&ClogRing>> = rings.iter().map(Option::as_ref).collect();
        self.merge(&refs, local_index)?;
        Ok(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_empty_and_one() {
        let mut cl = ClusterLog::new();
        assert_eq!(cl.dump_json(None, 50), b"{\n\"data\": [\n]\n}\n");
        cl.add(
            b"testnode",
            b"root",
            b"cluster",
            12418,
            1795345923,
            6,
            b"starting cluster log",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(cl.dump_json(None, 50)).unwrap(),
            "{\n\"data\": [\n{\"uid\": 1, \"time\": 1795345923, \"pri\": 6, \"tag\": \"cluster\", \
             \"pid\": 12418, \"node\": \"testnode\", \"user\": \"root\", \"msg\": \"starting cluster log\"}\n]\n}\n"
        );
    }
}
