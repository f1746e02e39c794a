//! The node's status besides the file tree: start time, quorum, cluster info (from cmap),
//! the cluster log ring and the kv/RRD tables (crate `pmxcfs-status`), behind one mutex like
//! the original's `status.c`. Shared by the virtual files, IPC and the kvstore group.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use pmxcfs_status::clusterlog::ClusterLog;
use pmxcfs_status::kvstore::KvSet;
use pmxcfs_status::rrd::{RrdTool, RrdUpdatePlan, RrdUpdater};
use pmxcfs_status::{SetOutcome, StatusStore};
use tracing::warn;

/// syslog priority `LOG_INFO`.
pub const LOG_INFO: u8 = 6;

/// One node of the cluster configuration (cmap `nodelist.node.N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    pub name: String,
    pub nodeid: u32,
    pub votes: u32,
    /// Member of the kvstore CPG group right now.
    pub online: bool,
}

/// Cluster name, config version and nodes, as read from corosync's cmap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    pub name: String,
    pub config_version: u64,
    pub nodes: Vec<ClusterNode>,
}

impl ClusterInfo {
    pub fn node_by_id(&self, nodeid: u32) -> Option<&ClusterNode> {
        self.nodes.iter().find(|n| n.nodeid == nodeid)
    }
}

/// Mutable status tables.
pub struct StatusTables {
    pub clusterlog: ClusterLog,
    pub store: StatusStore,
    /// `clinfo` version: bumped on cluster-info, membership and node-IP changes.
    pub clinfo_version: u32,
    /// None in local mode and until cmap was read.
    pub cluster: Option<ClusterInfo>,
}

/// Status of this node.
pub struct Status {
    pub nodename: String,
    pub start_time: u64,
    pub quorate: Arc<AtomicBool>,
    pub tables: Mutex<StatusTables>,
    rrd: Mutex<RrdUpdater<RrdTool>>,
}

fn now() -> i64 {
    pmxcfs_backend::now_secs() as i64
}

impl Status {
    /// Fresh status with the first cluster-log entry ("starting cluster log").
    pub fn new(nodename: &str, rrd_dir: &Path, rrdcached_socket: Option<PathBuf>, start_time: u64) -> Status {
        let mut clusterlog = ClusterLog::new();
        if let Err(e) = clusterlog.add(nodename.as_bytes(), b"root", b"cluster", std::process::id(), start_time as u32, LOG_INFO, b"starting cluster log") {
            warn!(target: "status", "unable to add first cluster log entry: {e}");
        }
        Status {
            nodename: nodename.to_string(),
            start_time,
            quorate: Arc::new(AtomicBool::new(true)),
            tables: Mutex::new(StatusTables { clusterlog, store: StatusStore::new(nodename, rrd_dir), clinfo_version: 0, cluster: None }),
            rrd: Mutex::new(RrdUpdater::new(RrdTool::new(rrdcached_socket, "rrdtool".into()))),
        }
    }

    pub fn quorate(&self) -> bool {
        self.quorate.load(Ordering::SeqCst)
    }

    fn after_set(&self, outcome: SetOutcome) {
        match outcome {
            SetOutcome::Kv(KvSet::NodeIp { changed: true }) => self.tables.lock().clinfo_version += 1,
            SetOutcome::Rrd { plan: Some(plan) } => self.update_rrd(&plan),
            _ => {}
        }
    }

    fn update_rrd(&self, plan: &RrdUpdatePlan) {
        if let Err(e) = self.rrd.lock().apply(plan, now()) {
            warn!(target: "status", "RRD update error: {e}");
        }
    }

    /// IPC SET_STATUS from a local client; returns the errno on refusal.
    pub fn set_local(&self, key: &str, data: &[u8]) -> Result<(), i32> {
        let outcome = self.tables.lock().store.set_local(key, data, now()).map_err(|e| e.errno())?;
        self.after_set(outcome);
        Ok(())
    }

    /// A kvstore UPDATE from cluster node `nodeid`; ignored for nodes not in the nodelist.
    pub fn set_remote(&self, nodeid: u32, key: &str, data: &[u8]) {
        let result = {
            let mut t = self.tables.lock();
            let Some(node) = t.cluster.as_ref().and_then(|c| c.node_by_id(nodeid)).map(|n| n.name.clone()) else {
                return;
            };
            t.store.set_remote(&node, key, data, now())
        };
        match result {
            Ok(outcome) => self.after_set(outcome),
            Err(e) => warn!(target: "status", "ignoring update of '{key}' from node {nodeid}: {e}"),
        }
    }

    /// Installs new cluster info from cmap, keeping the online flags.
    pub fn set_cluster_info(&self, mut info: ClusterInfo) {
        let mut t = self.tables.lock();
        if let Some(old) = &t.cluster {
            for n in info.nodes.iter_mut() {
                n.online = old.node_by_id(n.nodeid).is_some_and(|o| o.online);
            }
        }
        let names: Vec<String> = info.nodes.iter().map(|n| n.name.clone()).collect();
        t.store.kv.retain_nodes(|n| names.iter().any(|x| x == n));
        t.cluster = Some(info);
        t.clinfo_version += 1;
    }

    /// Marks the nodes whose nodeids are kvstore members online (`dfsm_confchg`).
    pub fn set_online(&self, member_nodeids: &[u32]) {
        let mut t = self.tables.lock();
        if let Some(c) = t.cluster.as_mut() {
            for n in c.nodes.iter_mut() {
                n.online = member_nodeids.contains(&n.nodeid);
            }
        }
        t.clinfo_version += 1;
    }

    /// `.members` / GET_CLUSTER_INFO (spec §5.3).
    pub fn members_text(&self) -> String {
        let t = self.tables.lock();
        let mut s = format!("{{\n\"nodename\": \"{}\",\n\"version\": {}", self.nodename, t.clinfo_version);
        match &t.cluster {
            Some(c) if !c.nodes.is_empty() => {
                s.push_str(",\n");
                s.push_str(&format!(
                    "\"cluster\": {{ \"name\": \"{}\", \"version\": {}, \"nodes\": {}, \"quorate\": {} }},\n",
                    c.name,
                    c.config_version,
                    c.nodes.len(),
                    u8::from(self.quorate())
                ));
                s.push_str("\"nodelist\": {\n");
                let lines: Vec<String> = c
                    .nodes
                    .iter()
                    .map(|n| {
                        let ip = t.store.kv.node_ip(&n.name).map(|ip| format!(", \"ip\": \"{ip}\"")).unwrap_or_default();
                        format!("  \"{}\": {{ \"id\": {}, \"online\": {}{ip}}}", n.name, n.nodeid, u8::from(n.online))
                    })
                    .collect();
                s.push_str(&lines.join(",\n"));
                s.push_str("\n  }\n");
            }
            _ => s.push('\n'),
        }
        s.push_str("}\n");
        s
    }

    /// The kvstore part of `.version` (local table, then the cluster nodes' tables).
    pub fn kvstore_version_text(&self) -> String {
        let t = self.tables.lock();
        let nodes: Vec<&str> = t.cluster.as_ref().map(|c| c.nodes.iter().map(|n| n.name.as_str()).collect()).unwrap_or_default();
        t.store.kv.version_text(&nodes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_text_matches_the_originals_shapes() {
        let s = Status::new("pve1", Path::new("/nonexistent"), None, 0);
        assert_eq!(s.members_text(), "{\n\"nodename\": \"pve1\",\n\"version\": 0\n}\n");
        s.set_cluster_info(ClusterInfo {
            name: "mycluster".into(),
            config_version: 3,
            nodes: vec![
                ClusterNode { name: "pve1".into(), nodeid: 1, votes: 1, online: false },
                ClusterNode { name: "pve2".into(), nodeid: 2, votes: 1, online: false },
            ],
        });
        s.set_online(&[1]);
        s.tables.lock().store.kv.set_local("nodeip", b"192.0.2.1\0").unwrap();
        s.tables.lock().clinfo_version = 7;
        assert_eq!(
            s.members_text(),
            "{\n\"nodename\": \"pve1\",\n\"version\": 7,\n\"cluster\": { \"name\": \"mycluster\", \"version\": 3, \"nodes\": 2, \"quorate\": 1 },\n\"nodelist\": {\n  \"pve1\": { \"id\": 1, \"online\": 1, \"ip\": \"192.0.2.1\"},\n  \"pve2\": { \"id\": 2, \"online\": 0}\n  }\n}\n"
        );
    }
}
