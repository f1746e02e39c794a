//! Per-node key/value status tables (`status.c`: `kventry_hash_set`, `cfs_status_set`,
//! `cfs_kvstore_node_set`, `cfs_create_status_msg`, `dump_kvstore_versions`).
//!
//! * The local node's table is written by IPC `SET_STATUS`; every other node's table by
//!   kvstore UPDATE messages from that node.
//! * A new key starts at version 0, replacing its data increments the version (even with
//!   identical data), an empty value deletes the key.
//! * `nodeip` is not a table entry: it sets the node's IP string (`0 < len < 256`, ending in
//!   NUL). The caller bumps its `clinfo_version` when [`KvSet::NodeIp`] reports a change.
//! * `rrd/...` keys belong to the RRD store ([`crate::rrd`]); [`StatusKey::classify`] tells
//!   them apart and [`crate::StatusStore`] dispatches.
//!
//! Also here: the kvstore UPDATE payload (`name[256]` + value) as the tables see it, on top of
//! its one codec `pmxcfs_dfsm::wire::kvstore::KvUpdate`. The IPC `SET_STATUS` / `GET_STATUS`
//! payloads are parsed in [`crate::requests`]. Locking is left to the caller.

use std::collections::{BTreeMap, HashMap};

use pmxcfs_dfsm::wire::kvstore::{KvUpdate, KV_KEY_FIELD_LEN};
use pmxcfs_dfsm::wire::{cstr_prefix, WireError};


/// Largest value a local `SET_STATUS` accepts (`CFS_MAX_STATUS_SIZE`).
pub const CFS_MAX_STATUS_SIZE: usize = 32 * 1024;
/// Size of the fixed key field in UPDATE messages and IPC requests.
pub const KEY_FIELD_SIZE: usize = KV_KEY_FIELD_LEN;
/// The key that carries a node's IP address.
pub const NODEIP_KEY: &str = "nodeip";
/// Prefix of RRD status keys.
pub const RRD_KEY_PREFIX: &str = "rrd/";

/// Errors of the kvstore module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("status value too large ({0} > {CFS_MAX_STATUS_SIZE} bytes)")]
    TooLarge(usize),
    #[error("invalid nodeip value (need 0 < len < 256 and a trailing NUL)")]
    InvalidNodeIp,
    #[error("status key not found")]
    NotFound,
    #[error("invalid status key: {0}")]
    InvalidKey(&'static str),
    #[error("invalid kvstore request or message: {0}")]
    InvalidMessage(&'static str),
}

impl KvError {
    /// errno as the original reports it: EFBIG for oversize values, ENOMEM when the
    /// setter rejects the data (invalid nodeip), ENOENT for a missing key, EINVAL otherwise.
    pub fn errno(&self) -> i32 {
        match self {
            KvError::TooLarge(_) => libc::EFBIG,
            KvError::InvalidNodeIp => libc::ENOMEM,
            KvError::NotFound => libc::ENOENT,
            KvError::InvalidKey(_) | KvError::InvalidMessage(_) => libc::EINVAL,
        }
    }
}

/// What a status key addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKey<'a> {
    /// `rrd/<rest>`: RRD data under key `<rest>`.
    Rrd(&'a str),
    /// `nodeip`.
    NodeIp,
    /// Anything else: a kv table entry.
    Kv(&'a str),
}

impl<'a> StatusKey<'a> {
    pub fn classify(key: &'a str) -> StatusKey<'a> {
        if let Some(rest) = key.strip_prefix(RRD_KEY_PREFIX) {
            StatusKey::Rrd(rest)
        } else if key == NODEIP_KEY {
            StatusKey::NodeIp
        } else {
            StatusKey::Kv(key)
        }
    }
}

/// One kv entry: value bytes as stored (Perl includes the trailing NUL) and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub data: Vec<u8>,
    pub version: u32,
}

/// Outcome of a successful set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvSet {
    /// The key now holds the value with this version (0 for a new key).
    Stored { version: u32 },
    /// An empty value removed the key (or it did not exist).
    Deleted,
    /// A `nodeip` update; `changed` tells whether the stored IP differs from before.
    NodeIp { changed: bool },
}

/// One node's key/value table, ordered by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvTable {
    entries: BTreeMap<String, KvEntry>,
}

impl KvTable {
    pub fn new() -> KvTable {
        KvTable::default()
    }

    /// `kventry_hash_set`: empty data deletes, replace increments the version, new starts at 0.
    pub fn set(&mut self, key: &str, data: &[u8]) -> KvSet {
        if data.is_empty() {
            self.entries.remove(key);
            return KvSet::Deleted;
        }
        match self.entries.get_mut(key) {
            Some(e) => {
                e.data = data.to_vec();
                e.version = e.version.wrapping_add(1);
                KvSet::Stored { version: e.version }
            }
            None => {
                self.entries.insert(
                    key.to_string(),
                    KvEntry {
                        data: data.to_vec(),
                        version: 0,
                    },
                );
                KvSet::Stored { version: 0 }
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&KvEntry> {
        self.entries.get(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &KvEntry)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The `.version` block of one node: `"<node>": {\n` + `"<key>": <version>` joined by
    /// `,\n` + `}\n`.
    pub fn version_block(&self, node: &str) -> String {
        let body: Vec<String> = self
            .iter()
            .map(|(k, e)| format!("\"{k}\": {}", e.version))
            .collect();
        format!("\"{node}\": {{\n{}}}\n", body.join(",\n"))
    }
}

/// Validate a `nodeip` value and return the IP text (before the NUL).
fn parse_nodeip(data: &[u8]) -> Result<String, KvError> {
    if data.is_empty() || data.len() >= 256 || data[data.len() - 1] != 0 {
        return Err(KvError::InvalidNodeIp);
    }
    Ok(String::from_utf8_lossy(cstr_prefix(data)).into_owned())
}

/// The kv tables of the local node and of every other node that sent updates, plus the
/// node IP table.
#[derive(Debug, Clone)]
pub struct KvStore {
    local_node: String,
    local: KvTable,
    remote: HashMap<String, KvTable>,
    ips: HashMap<String, String>,
}

impl KvStore {
    pub fn new(local_node: &str) -> KvStore {
        KvStore {
            local_node: local_node.to_string(),
            local: KvTable::new(),
            remote: HashMap::new(),
            ips: HashMap::new(),
        }
    }

    pub fn local_node(&self) -> &str {
        &self.local_node
    }

    /// The local table (its entries are re-sent after every kvstore resync).
    pub fn local_table(&self) -> &KvTable {
        &self.local
    }

    /// Another node's table, if it ever sent an update.
    pub fn remote_table(&self, node: &str) -> Option<&KvTable> {
        self.remote.get(node)
    }

    /// Names of the nodes that have a remote table, sorted.
    pub fn remote_nodes(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.remote.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Local `SET_STATUS` for a non-RRD key (`cfs_status_set`): `len > 32768` → EFBIG,
    /// `nodeip` sets the local IP, anything else the local table. `rrd/` keys are refused
    /// here (see [`crate::StatusStore::set_local`]).
    pub fn set_local(&mut self, key: &str, data: &[u8]) -> Result<KvSet, KvError> {
        if data.len() > CFS_MAX_STATUS_SIZE {
            return Err(KvError::TooLarge(data.len()));
        }
        match StatusKey::classify(key) {
            StatusKey::Rrd(_) => Err(KvError::InvalidKey("rrd/ keys belong to the RRD store")),
            StatusKey::NodeIp => {
                let node = self.local_node.clone();
                self.set_ip(&node, data)
            }
            StatusKey::Kv(k) => Ok(self.local.set(k, data)),
        }
    }

    /// An UPDATE from another node (`cfs_kvstore_node_set`; the caller has checked that the
    /// sender is in the cluster node list and resolved its name). No size limit applies.
    pub fn set_remote(&mut self, node: &str, key: &str, data: &[u8]) -> Result<KvSet, KvError> {
        match StatusKey::classify(key) {
            StatusKey::Rrd(_) => Err(KvError::InvalidKey("rrd/ keys belong to the RRD store")),
            StatusKey::NodeIp => self.set_ip(node, data),
            StatusKey::Kv(k) => Ok(self
                .remote
                .entry(node.to_string())
                .or_default()
                .set(k, data)),
        }
    }

    fn set_ip(&mut self, node: &str, data: &[u8]) -> Result<KvSet, KvError> {
        let ip = parse_nodeip(data)?;
        let changed = self.ips.get(node) != Some(&ip);
        if changed {
            self.ips.insert(node.to_string(), ip);
        }
        Ok(KvSet::NodeIp { changed })
    }

    /// The IP last published for `node` (for `.members`).
    pub fn node_ip(&self, node: &str) -> Option<&str> {
        self.ips.get(node).map(String::as_str)
    }

    /// `GET_STATUS` (`cfs_create_status_msg`): an empty `nodename` or the local name reads
    /// the local table, otherwise that node's table; the stored bytes are returned verbatim.
    /// A missing key (or table) → ENOENT. `nodeip` and `rrd/` keys are not in the tables.
    pub fn get(&self, nodename: &str, key: &str) -> Result<&[u8], KvError> {
        let table = if nodename.is_empty() || nodename == self.local_node {
            Some(&self.local)
        } else {
            self.remote.get(nodename)
        };
        table
            .and_then(|t| t.get(key))
            .map(|e| e.data.as_slice())
            .ok_or(KvError::NotFound)
    }

    /// Forget a node's table and IP (it left the cluster configuration).
    pub fn remove_node(&mut self, node: &str) {
        self.remote.remove(node);
        self.ips.remove(node);
    }

    /// Keep only the remote tables and IPs of nodes for which `keep` is true
    /// (the local node's IP is always kept).
    pub fn retain_nodes(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.remote.retain(|n, _| keep(n));
        let local = self.local_node.clone();
        self.ips.retain(|n, _| *n == local || keep(n));
    }

    /// The kvstore part of `.version`: `"kvstore": {\n`, the local block, then for each
    /// name in `cluster_nodes` (the caller's cluster node order) that has a table, `,\n` and
    /// its block, then `}\n`. The caller closes the document with its own `}\n`.
    pub fn version_text(&self, cluster_nodes: &[&str]) -> String {
        let mut s = String::from("\"kvstore\": {\n");
        s.push_str(&self.local.version_block(&self.local_node));
        for n in cluster_nodes {
            if let Some(t) = self.remote.get(*n) {
                s.push_str(",\n");
                s.push_str(&t.version_block(n));
            }
        }
        s.push_str("}\n");
        s
    }
}

/// Encode a kvstore UPDATE payload: the key NUL-terminated in a zero-filled 256-byte field,
/// then the value. Keys longer than 255 bytes or containing NUL are refused.
pub fn encode_update(key: &str, data: &[u8]) -> Result<Vec<u8>, KvError> {
    let update = KvUpdate { key: key.as_bytes(), value: data };
    update.encode().map_err(|e| match e {
        WireError::Unencodable { why: "contains NUL", .. } => KvError::InvalidKey("key contains NUL"),
        _ => KvError::InvalidKey("key longer than 255 bytes"),
    })
}

/// Decode a kvstore UPDATE payload (`kvstore_parse_update_message`): at least 256 bytes, a
/// NUL inside the key field (bytes after it are ignored: the C sender leaves stack garbage
/// there); the value is the rest (possibly empty). The key must be UTF-8.
pub fn decode_update(payload: &[u8]) -> Result<(&str, &[u8]), KvError> {
    let update = KvUpdate::decode(payload).map_err(|e| match e {
        WireError::TooShort { .. } => KvError::InvalidMessage("short kvstore update (< 256 bytes)"),
        _ => KvError::InvalidMessage("kvstore update key not NUL-terminated"),
    })?;
    let key = std::str::from_utf8(update.key).map_err(|_| KvError::InvalidKey("key is not UTF-8"))?;
    Ok((key, update.value))
}
