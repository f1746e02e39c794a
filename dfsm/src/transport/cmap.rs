//! The cmap ("confdb") service: cluster name, config version and node list, kept current.
//!
//! The cmap ("confdb") service (spec §1.5, `confdb.c`): reads
//! `totem.cluster_name` (required), `totem.config_version` (0 if missing)
//! and the nodelist into a [`ClusterInfo`], tracks `nodelist.node.`
//! (prefix) and `totem.config_version`, and re-reads on every change. On
//! errors the handle is finalized and init retried every second.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rust_corosync::cmap::{self, Data, TrackType};
use rust_corosync::DispatchFlags;
use tracing::{error, info};

use super::cpg::CsError;
use super::service::{Conn, ServiceClient, ServiceThread};

/// One `nodelist.node.<n>` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub nodeid: u32,
    /// `quorum_votes`, 0 if absent (as the original's zero-filled struct).
    pub votes: u32,
    /// `name`, or `ring0_addr` if there is no `name`.
    pub name: String,
}

/// What the original's `cmap_read_config` produces (`cfs_clinfo_t`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterInfo {
    pub cluster_name: String,
    pub config_version: u64,
    /// Nodes with a name and a nonzero nodeid, by nodelist index order.
    pub nodes: Vec<NodeInfo>,
}

impl ClusterInfo {
    pub fn node_by_id(&self, nodeid: u32) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.nodeid == nodeid)
    }
}

fn as_u64(d: &Data) -> Option<u64> {
    Some(match *d {
        Data::UInt8(v) => v.into(),
        Data::UInt16(v) => v.into(),
        Data::UInt32(v) => v.into(),
        Data::UInt64(v) => v,
        Data::Int8(v) => u64::try_from(v).ok()?,
        Data::Int16(v) => u64::try_from(v).ok()?,
        Data::Int32(v) => u64::try_from(v).ok()?,
        Data::Int64(v) => u64::try_from(v).ok()?,
        Data::String(ref s) => s.trim().parse().ok()?,
        _ => return None,
    })
}

fn as_string(d: &Data) -> Option<String> {
    match d {
        Data::String(s) => Some(s.clone()),
        Data::Binary(b) => Some(
            String::from_utf8_lossy(b)
                .trim_end_matches('\0')
                .to_string(),
        ),
        _ => None,
    }
}

#[derive(Default)]
struct RawNode {
    nodeid: Option<u32>,
    votes: Option<u32>,
    name: Option<String>,
    ring0: Option<String>,
}

/// Build the nodelist from `(key, value)` pairs under `nodelist.node.`.
/// Exposed for tests; [`read_cluster_info`] feeds it from cmap.
pub fn nodes_from_keys<'a>(keys: impl IntoIterator<Item = (&'a str, &'a Data)>) -> Vec<NodeInfo> {
    let mut raw: BTreeMap<u32, RawNode> = BTreeMap::new();
    for (key, data) in keys {
        let Some(rest) = key.strip_prefix("nodelist.node.") else {
            continue;
        };
        let Some((idx, sub)) = rest.split_once('.') else {
            continue;
        };
        let Ok(idx) = idx.parse::<u32>() else {
            continue;
        };
        let e = raw.entry(idx).or_default();
        match sub {
            "nodeid" => e.nodeid = as_u64(data).and_then(|v| u32::try_from(v).ok()),
            "quorum_votes" => e.votes = as_u64(data).and_then(|v| u32::try_from(v).ok()),
            "name" => e.name = as_string(data),
            "ring0_addr" => e.ring0 = as_string(data),
            _ => {}
        }
    }
    raw.into_values()
        .filter_map(|n| {
            let nodeid = n.nodeid.filter(|&id| id != 0)?;
            let name = n.name.or(n.ring0)?;
            Some(NodeInfo {
                nodeid,
                votes: n.votes.unwrap_or(0),
                name,
            })
        })
        .collect()
}

/// Read the cluster information once (`cmap_read_config`).
pub fn read_cluster_info(h: &cmap::Handle) -> Result<ClusterInfo, CsError> {
    let config_version = match cmap::get(h, "totem.config_version") {
        Ok(d) => as_u64(&d).unwrap_or(0),
        Err(rust_corosync::CsError::CsErrNotExist) => 0,
        Err(e) => return Err(e.into()),
    };
    let cluster_name = match cmap::get(h, "totem.cluster_name") {
        Ok(d) => as_string(&d).ok_or(CsError::INVALID_PARAM)?,
        Err(e) => {
            error!(target: "confdb", "cmap_get totem.cluster_name failed: {}", CsError::from(e));
            return Err(e.into());
        }
    };
    let iter = cmap::CmapIterStart::new(h, "nodelist.node.").map_err(CsError::from)?;
    let items: Vec<(String, Data)> = iter
        .into_iter()
        .map(|it| (it.key_name().to_string(), clone_data(it.data())))
        .collect();
    let nodes = nodes_from_keys(items.iter().map(|(k, d)| (k.as_str(), d)));
    Ok(ClusterInfo {
        cluster_name,
        config_version,
        nodes,
    })
}

fn clone_data(d: &Data) -> Data {
    match d {
        Data::Int8(v) => Data::Int8(*v),
        Data::UInt8(v) => Data::UInt8(*v),
        Data::Int16(v) => Data::Int16(*v),
        Data::UInt16(v) => Data::UInt16(*v),
        Data::Int32(v) => Data::Int32(*v),
        Data::UInt32(v) => Data::UInt32(*v),
        Data::Int64(v) => Data::Int64(*v),
        Data::UInt64(v) => Data::UInt64(*v),
        Data::Float(v) => Data::Float(*v),
        Data::Double(v) => Data::Double(*v),
        Data::String(s) => Data::String(s.clone()),
        Data::Binary(b) => Data::Binary(b.clone()),
        Data::Unknown => Data::Unknown,
    }
}

/// Called on the tracker thread with the new information after each read.
pub type CmapCallback = Box<dyn Fn(&ClusterInfo) + Send + 'static>;

thread_local! {
    static CHANGED: Cell<bool> = const { Cell::new(false) };
}

fn notify_fn(
    _h: &cmap::Handle,
    _t: &cmap::TrackHandle,
    _event: TrackType,
    _key: &str,
    _new: &Data,
    _old: &Data,
    _user: u64,
) {
    CHANGED.with(|c| c.set(true));
}

/// What the tracker thread keeps current for the tracker's readers.
struct Current {
    info: Mutex<Option<ClusterInfo>>,
    version: AtomicU64,
}

/// Keeps a current [`ClusterInfo`] in a background thread.
pub struct CmapTracker {
    current: Arc<Current>,
    thread: ServiceThread,
}

impl fmt::Debug for CmapTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CmapTracker")
            .field("version", &self.version())
            .finish()
    }
}

impl CmapTracker {
    /// Start tracking; `on_change` runs on the tracker thread after every
    /// successful (re-)read. Succeeds without corosync (retries).
    pub fn spawn(on_change: Option<CmapCallback>) -> io::Result<Self> {
        let current = Arc::new(Current {
            info: Mutex::new(None),
            version: AtomicU64::new(0),
        });
        let client = CmapClient {
            current: Arc::clone(&current),
            on_change,
        };
        Ok(CmapTracker {
            current,
            thread: ServiceThread::spawn("confdb", client)?,
        })
    }

    /// The last successful read, `None` before the first one.
    pub fn info(&self) -> Option<ClusterInfo> {
        self.current
            .info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Bumped after every successful read (0 = none yet).
    pub fn version(&self) -> u64 {
        self.current.version.load(Ordering::Acquire)
    }

    /// Finalize and join the thread. Idempotent.
    pub fn shutdown(&self) {
        self.thread.shutdown();
    }
}

impl Drop for CmapTracker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The tracker thread's side: where it stores each read and whom it tells.
struct CmapClient {
    current: Arc<Current>,
    on_change: Option<CmapCallback>,
}

impl CmapClient {
    fn store(&self, info: ClusterInfo) {
        info!(
            target: "confdb",
            "cluster '{}' config version {}: {} nodes",
            info.cluster_name,
            info.config_version,
            info.nodes.len()
        );
        if let Some(cb) = &self.on_change {
            cb(&info);
        }
        *self.current.info.lock().unwrap_or_else(|e| e.into_inner()) = Some(info);
        self.current.version.fetch_add(1, Ordering::AcqRel);
    }
}

impl ServiceClient for CmapClient {
    type Handle = cmap::Handle;

    fn connect(&mut self) -> Result<Conn<cmap::Handle>, CsError> {
        let handle = cmap::initialize(cmap::Map::Icmap).map_err(CsError::from)?;
        let cb = cmap::NotifyCallback {
            notify_fn: Some(notify_fn),
        };
        cmap::track_add(
            &handle,
            "nodelist.node.",
            TrackType::PREFIX | TrackType::ADD | TrackType::DELETE | TrackType::MODIFY,
            &cb,
            0,
        )
        .map_err(CsError::from)?;
        cmap::track_add(
            &handle,
            "totem.config_version",
            TrackType::ADD | TrackType::DELETE | TrackType::MODIFY,
            &cb,
            0,
        )
        .map_err(CsError::from)?;
        let fd = cmap::fd_get(&handle).map_err(CsError::from)?;
        let info = read_cluster_info(&handle)?;
        self.store(info);
        Ok(Conn { handle, fd })
    }

    fn connect_failed(&mut self, e: CsError, report: bool) {
        if report {
            error!(target: "confdb", "cmap_initialize failed: {e}");
        }
    }

    fn dispatch(&mut self, conn: &Conn<cmap::Handle>) -> Result<(), CsError> {
        CHANGED.with(|f| f.set(false));
        let res = cmap::dispatch(&conn.handle, DispatchFlags::All);
        let changed = CHANGED.with(|f| f.replace(false));
        res.map_err(CsError::from)?;
        if changed {
            self.store(read_cluster_info(&conn.handle)?);
        }
        Ok(())
    }

    fn dispatch_failed(&mut self, e: CsError) {
        error!(target: "confdb", "cmap_dispatch failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodelist_prefers_name_and_needs_name_and_nonzero_nodeid() {
        let kv = vec![
            ("nodelist.node.0.name", Data::String("node1".into())),
            ("nodelist.node.0.nodeid", Data::UInt32(1)),
            ("nodelist.node.0.quorum_votes", Data::UInt32(1)),
            (
                "nodelist.node.0.ring0_addr",
                Data::String("10.0.0.1".into()),
            ),
            (
                "nodelist.node.1.ring0_addr",
                Data::String("10.0.0.2".into()),
            ),
            ("nodelist.node.1.nodeid", Data::UInt32(2)),
            ("nodelist.node.2.name", Data::String("noid".into())),
            ("nodelist.node.3.nodeid", Data::UInt32(4)),
            ("nodelist.node.4.name", Data::String("zero".into())),
            ("nodelist.node.4.nodeid", Data::UInt32(0)),
            ("nodelist.node.10.name", Data::String("node11".into())),
            ("nodelist.node.10.nodeid", Data::String("11".into())),
        ];
        let nodes = nodes_from_keys(kv.iter().map(|(k, d)| (*k, d)));
        assert_eq!(
            nodes,
            vec![
                NodeInfo {
                    nodeid: 1,
                    votes: 1,
                    name: "node1".into()
                },
                NodeInfo {
                    nodeid: 2,
                    votes: 0,
                    name: "10.0.0.2".into()
                },
                NodeInfo {
                    nodeid: 11,
                    votes: 0,
                    name: "node11".into()
                },
            ]
        );
    }
}
