//! pmxcfs status subsystem pieces that are independent of FUSE, IPC transport and CPG:
//!
//! * [`clusterlog`]: the cluster-log ring buffer (byte-compatible with the C daemon), its JSON
//!   dump, LOG-message entries and the merge of member logs on kvstore sync;
//! * [`kvstore`]: per-node key/value status tables, `nodeip`, `GET_STATUS` lookups and the
//!   kvstore part of `.version`;
//! * [`node`]: the node's [`node::Status`] behind one mutex (quorum, cluster info,
//!   `.members`), shared by the virtual files, IPC and the kvstore group;
//! * [`rrd`]: RRD status keys, the `.rrd` dump with its 2-second cache, RRD file definitions
//!   and the updater that talks to rrdcached or runs `rrdtool`.
//!
//! [`StatusStore`] ties the kv tables and the RRD table together behind the single
//! `SET_STATUS` entry point of the original (`status.c:cfs_status_set`). Nothing here locks;
//! the caller keeps these values behind its status mutex.

pub mod clusterlog;
pub mod kvstore;
pub mod node;
pub mod rrd;

use std::path::{Path, PathBuf};

use kvstore::{KvError, KvSet, KvStore, StatusKey, CFS_MAX_STATUS_SIZE};
use rrd::{plan_update, RrdError, RrdStore, RrdUpdatePlan};

/// Error of a status set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error(transparent)]
    Rrd(#[from] RrdError),
}

impl StatusError {
    /// errno for IPC `SET_STATUS`: EFBIG for values over 32 KiB, ENOMEM for data the
    /// setter rejects (nodeip, RRD), as the original reports.
    pub fn errno(&self) -> i32 {
        match self {
            StatusError::Kv(e) => e.errno(),
            StatusError::Rrd(e) => e.errno(),
        }
    }
}

/// What a successful set did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOutcome {
    /// A kv table entry or `nodeip` was set (see [`KvSet`]; bump `clinfo_version` on
    /// `KvSet::NodeIp { changed: true }`).
    Kv(KvSet),
    /// An RRD value was stored. `plan` is the file update to apply with
    /// [`rrd::RrdUpdater`]; `None` when the key is unknown/wrong (logged; the value is
    /// still stored and dumped, as in the original).
    Rrd { plan: Option<RrdUpdatePlan> },
}

/// kv tables + RRD table with the original's key dispatch.
#[derive(Debug, Clone)]
pub struct StatusStore {
    pub kv: KvStore,
    pub rrd: RrdStore,
    rrd_base: PathBuf,
}

impl StatusStore {
    /// `rrd_base`: directory for RRD files (the original: [`rrd::RRD_DEFAULT_DIR`]).
    pub fn new(local_node: &str, rrd_base: &Path) -> StatusStore {
        StatusStore {
            kv: KvStore::new(local_node),
            rrd: RrdStore::new(),
            rrd_base: rrd_base.to_path_buf(),
        }
    }

    pub fn rrd_base(&self) -> &Path {
        &self.rrd_base
    }

    /// IPC `SET_STATUS` (`cfs_status_set`): `len > 32768` → EFBIG; `rrd/<key>` → RRD table;
    /// `nodeip` → local IP; else the local kv table. The caller multicasts the UPDATE in
    /// cluster mode (the original does so even when the local set failed).
    pub fn set_local(
        &mut self,
        key: &str,
        data: &[u8],
        now: i64,
    ) -> Result<SetOutcome, StatusError> {
        if data.len() > CFS_MAX_STATUS_SIZE {
            return Err(KvError::TooLarge(data.len()).into());
        }
        match StatusKey::classify(key) {
            StatusKey::Rrd(rkey) => self.set_rrd(rkey, data, now),
            _ => Ok(SetOutcome::Kv(self.kv.set_local(key, data)?)),
        }
    }

    /// A kvstore UPDATE from cluster node `node` (`cfs_kvstore_node_set`; the caller ignores
    /// senders that are not in the cluster node list). Errors are for logging only.
    pub fn set_remote(
        &mut self,
        node: &str,
        key: &str,
        data: &[u8],
        now: i64,
    ) -> Result<SetOutcome, StatusError> {
        match StatusKey::classify(key) {
            StatusKey::Rrd(rkey) => self.set_rrd(rkey, data, now),
            _ => Ok(SetOutcome::Kv(self.kv.set_remote(node, key, data)?)),
        }
    }

    fn set_rrd(&mut self, rkey: &str, data: &[u8], now: i64) -> Result<SetOutcome, StatusError> {
        self.rrd.set(rkey, data, now)?;
        let plan = match plan_update(&self.rrd_base, rkey, data) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!("{e}");
                None
            }
        };
        Ok(SetOutcome::Rrd { plan })
    }

    /// IPC `GET_STATUS`, see [`KvStore::get`].
    pub fn get(&self, nodename: &str, key: &str) -> Result<&[u8], KvError> {
        self.kv.get(nodename, key)
    }
}
