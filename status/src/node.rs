//! The node's status besides the file tree: start time, quorum, cluster info (from cmap),
//! the cluster log ring and the kv/RRD tables, behind one mutex like the original's
//! `status.c`. Shared by the virtual files, IPC and the kvstore group.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use crate::clusterlog::ClusterLog;
use crate::kvstore::KvSet;
use crate::rrd::{RrdTool, RrdUpdatePlan, RrdUpdater};
use crate::{SetOutcome, StatusError, StatusStore};
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
    /// Nodeids of the last kvstore membership (None until the first one). Kept apart from
    /// `cluster` so the online flags come out right whichever of cmap and CPG comes first.
    pub kvstore_members: Option<Vec<u32>>,
    /// kvstore UPDATEs that arrived before the first cmap read.
    before_cmap: EarlyUpdates,
}

/// The newest value per (nodeid, key) received before the nodelist was known; bounded.
#[derive(Default)]
struct EarlyUpdates(std::collections::BTreeMap<(u32, String), Vec<u8>>);

impl EarlyUpdates {
    /// More than a cluster's worth of status keys is not kept.
    const MAX: usize = 4096;

    fn keep(&mut self, nodeid: u32, key: &str, data: &[u8]) {
        let k = (nodeid, key.to_string());
        if self.0.len() < Self::MAX || self.0.contains_key(&k) {
            self.0.insert(k, data.to_vec());
        }
    }

    fn take(&mut self) -> std::collections::BTreeMap<(u32, String), Vec<u8>> {
        std::mem::take(&mut self.0)
    }
}

impl StatusTables {
    /// Recomputes every node's online flag from the last kvstore membership.
    fn refresh_online(&mut self) {
        let members = self.kvstore_members.as_deref();
        if let Some(c) = self.cluster.as_mut() {
            for n in c.nodes.iter_mut() {
                n.online = members.is_some_and(|m| m.contains(&n.nodeid));
            }
        }
    }
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
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as u32 as i64).unwrap_or(0)
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
            tables: Mutex::new(StatusTables { clusterlog, store: StatusStore::new(nodename, rrd_dir), clinfo_version: 0, cluster: None, kvstore_members: None, before_cmap: EarlyUpdates::default() }),
            rrd: Mutex::new(RrdUpdater::new(RrdTool::new(rrdcached_socket, "rrdtool".into()))),
        }
    }

    pub fn quorate(&self) -> bool {
        self.quorate.load(Ordering::SeqCst)
    }

    fn after_set(&self, outcome: SetOutcome) {
        if let Some(plan) = self.note_set(outcome) {
            self.update_rrd(&plan);
        }
    }

    /// The in-memory consequence of a set (a changed `nodeip` bumps `clinfo`); returns the
    /// RRD file update still to do.
    fn note_set(&self, outcome: SetOutcome) -> Option<RrdUpdatePlan> {
        match outcome {
            SetOutcome::Kv(KvSet::NodeIp { changed: true }) => {
                self.tables.lock().clinfo_version += 1;
                None
            }
            SetOutcome::Rrd { plan } => plan,
            _ => None,
        }
    }

    /// Applies an RRD file update (rrdcached or `rrdtool`: I/O); failures are logged.
    pub fn update_rrd(&self, plan: &RrdUpdatePlan) {
        if let Err(e) = self.rrd.lock().apply(plan, now()) {
            warn!(target: "status", "RRD update error: {e}");
        }
    }

    /// IPC SET_STATUS from a local client (the refusal's errno: [`StatusError::errno`]).
    pub fn set_local(&self, key: &str, data: &[u8]) -> Result<(), StatusError> {
        let outcome = self.tables.lock().store.set_local(key, data, now())?;
        self.after_set(outcome);
        Ok(())
    }

    /// A kvstore UPDATE from cluster node `nodeid`; ignored for nodes not in the nodelist.
    /// Before the first cmap read the nodelist is unknown: the newest value per node and key
    /// is kept and applied when cmap arrives.
    pub fn set_remote(&self, nodeid: u32, key: &str, data: &[u8]) {
        if let Some(plan) = self.store_remote(nodeid, key, data) {
            self.update_rrd(&plan);
        }
    }

    /// [`Status::set_remote`] without the I/O: the tables change, the RRD file update is
    /// returned for the caller to apply with [`Status::update_rrd`] (the kvstore group does
    /// so after its DFSM step).
    pub fn store_remote(&self, nodeid: u32, key: &str, data: &[u8]) -> Option<RrdUpdatePlan> {
        let result = {
            let mut t = self.tables.lock();
            if t.cluster.is_none() {
                t.before_cmap.keep(nodeid, key, data);
                return None;
            }
            let node = t.cluster.as_ref().and_then(|c| c.node_by_id(nodeid)).map(|n| n.name.clone())?;
            t.store.set_remote(&node, key, data, now())
        };
        match result {
            Ok(outcome) => self.note_set(outcome),
            Err(e) => {
                warn!(target: "status", "ignoring update of '{key}' from node {nodeid}: {e}");
                None
            }
        }
    }

    /// Installs new cluster info from cmap; online = member of the last kvstore membership
    /// (also when that membership arrived before this first cmap read).
    pub fn set_cluster_info(&self, info: ClusterInfo) {
        let mut t = self.tables.lock();
        let names: Vec<String> = info.nodes.iter().map(|n| n.name.clone()).collect();
        t.store.kv.retain_nodes(|n| names.iter().any(|x| x == n));
        t.cluster = Some(info);
        t.refresh_online();
        t.clinfo_version += 1;
        let early = t.before_cmap.take();
        drop(t);
        for ((nodeid, key), data) in early {
            self.set_remote(nodeid, &key, &data);
        }
    }

    /// A new kvstore membership (`dfsm_confchg`): its nodes are online, the others not.
    pub fn set_online(&self, member_nodeids: &[u32]) {
        let mut t = self.tables.lock();
        t.kvstore_members = Some(member_nodeids.to_vec());
        t.refresh_online();
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

    fn three_nodes(version: u64) -> ClusterInfo {
        let node = |name: &str, nodeid| ClusterNode { name: name.into(), nodeid, votes: 1, online: false };
        ClusterInfo { name: "c".into(), config_version: version, nodes: vec![node("n1", 1), node("n2", 2), node("n3", 3)] }
    }

    fn online(s: &Status) -> Vec<bool> {
        s.tables.lock().cluster.as_ref().unwrap().nodes.iter().map(|n| n.online).collect()
    }

    #[test]
    fn online_flags_are_right_whichever_of_cmap_and_membership_comes_first() {
        // cmap first, then the membership (the original's order)
        let early = Status::new("n1", Path::new("/nonexistent"), None, 0);
        early.set_cluster_info(three_nodes(1));
        early.set_online(&[1, 3]);
        assert_eq!(online(&early), [true, false, true]);
        // the membership first, cmap read late
        let late = Status::new("n1", Path::new("/nonexistent"), None, 0);
        late.set_online(&[1, 3]);
        late.set_remote(3, "nodeip", b"192.0.2.3\0");
        assert_eq!(late.members_text(), "{\n\"nodename\": \"n1\",\n\"version\": 1\n}\n");
        late.set_cluster_info(three_nodes(1));
        assert_eq!(online(&late), [true, false, true]);
        assert!(late.members_text().contains("\"n3\": { \"id\": 3, \"online\": 1, \"ip\": \"192.0.2.3\"}"), "{}", late.members_text());
        // a later cmap change (new config version) keeps them; a membership change moves them
        late.set_cluster_info(three_nodes(2));
        assert_eq!(online(&late), [true, false, true]);
        late.set_online(&[2]);
        assert_eq!(online(&late), [false, true, false]);
        assert!(late.members_text().contains("\"n2\": { \"id\": 2, \"online\": 1}"), "{}", late.members_text());
    }

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
