//! Starts and stops everything cluster mode needs: quorum and cmap tracking, the dcdb and
//! kvstore groups, and the [`ClusterSink`] the FUSE layer sends changes to.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pmxcfs_backend::Database;
use pmxcfs_dfsm::transport::{CmapTracker, GroupConfig, GroupRunner, QuorumTracker};
use tracing::{info, warn};

use crate::dcdb::{DcdbApp, DcdbHost};
use crate::kvstore::{KvstoreApp, KvstoreHost};
use crate::sink::ClusterSink;
use crate::corosync_conf;
use pmxcfs_status::node::{ClusterInfo, ClusterNode, Status};

/// The running cluster services.
pub struct ClusterServices {
    pub sink: Arc<ClusterSink>,
    pub kvstore: GroupRunner<KvstoreApp>,
    quorum: QuorumTracker,
    cmap: CmapTracker,
}

/// First non-loopback address of `nodename` (the original's `lookup_node_ip`).
pub fn lookup_node_ip(nodename: &str) -> Option<String> {
    let addrs = (nodename, 0).to_socket_addrs().ok()?;
    addrs.map(|a| a.ip()).find(|ip| !ip.is_loopback()).map(|ip| ip.to_string())
}

/// Settings of cluster mode.
pub struct ClusterOptions {
    pub host_corosync_conf: PathBuf,
    /// dcdb VERIFY_REQUEST period (the original: 3600 s).
    pub verify_interval: u32,
    /// Test hook: the first cmap answer is installed this much later.
    pub cmap_delay: Duration,
    /// Published `nodeip` instead of the node name's address.
    pub node_ip: Option<String>,
}

impl ClusterServices {
    pub fn start(db: Arc<Database>, status: Arc<Status>, opts: ClusterOptions) -> std::io::Result<ClusterServices> {
        let quorate = status.quorate.clone();
        let quorum = QuorumTracker::spawn_with_flag(quorate.clone(), None)?;
        let st = status.clone();
        let first = AtomicBool::new(true);
        let delay = opts.cmap_delay;
        let cmap = CmapTracker::spawn(Some(Box::new(move |info| {
            if first.swap(false, Ordering::SeqCst) && !delay.is_zero() {
                std::thread::sleep(delay);
            }
            st.set_cluster_info(ClusterInfo {
                name: info.cluster_name.clone(),
                config_version: info.config_version,
                nodes: info.nodes.iter().map(|n| ClusterNode { name: n.name.clone(), nodeid: n.nodeid, votes: n.votes, online: false }).collect(),
            });
            info!(target: "status", "update cluster info (cluster name  {}, version = {})", info.cluster_name, info.config_version);
        })))?;
        corosync_conf::sync(&db, &opts.host_corosync_conf);
        let dcdb_cfg = GroupConfig { verify_interval: Some(opts.verify_interval), ..GroupConfig::dcdb() };
        let dcdb_host = DcdbHost { db: db.clone(), host_corosync_conf: Some(opts.host_corosync_conf.clone()) };
        let dcdb = GroupRunner::spawn(dcdb_cfg, DcdbApp::new(db.clone(), quorate.clone()), dcdb_host)?;
        let ip = opts.node_ip.clone().or_else(|| lookup_node_ip(&status.nodename)).unwrap_or_else(|| {
            warn!(target: "main", "unable to resolve node name '{}' to a non-loopback IP address - not publishing nodeip", status.nodename);
            String::new()
        });
        let kvstore = GroupRunner::spawn(GroupConfig::kvstore(), KvstoreApp::new(status.clone(), ip), KvstoreHost { status })?;
        Ok(ClusterServices { sink: Arc::new(ClusterSink { db, dcdb, quorate }), kvstore, quorum, cmap })
    }

    /// Leaves both groups and stops the trackers.
    pub fn shutdown(&self) {
        self.sink.dcdb.shutdown();
        self.kvstore.shutdown();
        self.quorum.shutdown();
        self.cmap.shutdown();
    }
}
