//! The node's status besides the file tree: start time, cluster-info version, the cluster
//! log ring and the kv/RRD tables (crate `pmxcfs-status`), behind one mutex like the
//! original's `status.c`. Shared by the virtual files and (later) IPC and kvstore.

use std::path::Path;

use parking_lot::Mutex;
use pmxcfs_status::clusterlog::ClusterLog;
use pmxcfs_status::StatusStore;

/// syslog priority `LOG_INFO`.
const LOG_INFO: u8 = 6;

/// Mutable status tables.
pub struct StatusTables {
    pub clusterlog: ClusterLog,
    pub store: StatusStore,
    /// `clinfo` version: bumped on cluster-info changes (0 in local mode).
    pub clinfo_version: u32,
}

/// Status of this node.
pub struct Status {
    pub nodename: String,
    pub start_time: u64,
    pub tables: Mutex<StatusTables>,
}

impl Status {
    /// Fresh status with the first cluster-log entry ("starting cluster log").
    pub fn new(nodename: &str, rrd_dir: &Path, start_time: u64) -> Status {
        let mut clusterlog = ClusterLog::new();
        if let Err(e) = clusterlog.add(
            nodename.as_bytes(),
            b"root",
            b"cluster",
            std::process::id(),
            start_time as u32,
            LOG_INFO,
            b"starting cluster log",
        ) {
            tracing::warn!(target: "status", "unable to add first cluster log entry: {e}");
        }
        Status {
            nodename: nodename.to_string(),
            start_time,
            tables: Mutex::new(StatusTables { clusterlog, store: StatusStore::new(nodename, rrd_dir), clinfo_version: 0 }),
        }
    }
}
