//! Answers the libqb IPC requests of Proxmox's Perl stack (`pmxcfs-ipc` does the transport,
//! framing and permission checks) from the tree and the status tables. In cluster mode,
//! SET_STATUS and LOG_CLUSTER_MSG are also multicast through the kvstore group.

use std::sync::Arc;

use pmxcfs_backend::Database;
use pmxcfs_dfsm::transport::GroupRunner;
use pmxcfs_dfsm::wire::kvstore::{KVSTORE_MESSAGE_LOG, KVSTORE_MESSAGE_UPDATE};
use pmxcfs_ipc::guest_props::{all_guests_json, single_guest_json};
use pmxcfs_ipc::protocol::token_cfg_contains;
use pmxcfs_ipc::{Client, IpcError, IpcHandler};
use tracing::warn;

use pmxcfs_cluster::kvstore::{update_payload, KvstoreApp};
use pmxcfs_status::node::Status;
use crate::status_files::StatusFiles;

/// Entries GET_CLUSTER_LOG returns when the client asks for 0.
const DEFAULT_LOG_ENTRIES: u32 = 50;

/// The daemon's IPC request handler.
pub struct DaemonIpc {
    pub files: Arc<StatusFiles>,
    pub status: Arc<Status>,
    pub db: Arc<Database>,
    /// The kvstore group in cluster mode.
    pub kvstore: Option<GroupRunner<KvstoreApp>>,
}

fn text(b: &[u8]) -> Result<&str, IpcError> {
    std::str::from_utf8(b).map_err(|_| IpcError::Invalid)
}

fn now() -> u32 {
    pmxcfs_backend::now_secs()
}

impl DaemonIpc {
    fn multicast(&self, subtype: u16, payload: Vec<u8>) {
        if let Some(k) = &self.kvstore {
            if let Err(e) = k.send_nowait(subtype, payload) {
                warn!(target: "ipcs", "kvstore message not sent: {e}");
            }
        }
    }

    fn guest_config(&self, vmid: u32) -> Option<Vec<u8>> {
        let t = self.db.tree();
        let e = t.vmlist.entries.get(&vmid)?;
        let path = format!("nodes/{}/{}/{vmid}.conf", e.node, e.vmtype.dir());
        t.read(&path).ok().map(|d| d.to_vec())
    }
}

impl IpcHandler for DaemonIpc {
    fn get_fs_version(&self, _c: &Client) -> Result<Vec<u8>, IpcError> {
        Ok(self.files.version_text().into_bytes())
    }

    fn get_cluster_info(&self, _c: &Client) -> Result<Vec<u8>, IpcError> {
        Ok(self.status.members_text().into_bytes())
    }

    fn get_guest_list(&self, _c: &Client) -> Result<Vec<u8>, IpcError> {
        Ok(self.db.tree().vmlist.to_json().into_bytes())
    }

    fn set_status(&self, _c: &Client, name: &[u8], data: &[u8]) -> Result<(), IpcError> {
        let key = text(name)?;
        let result = self.status.set_local(key, data).map_err(|e| IpcError::Errno(e.errno()));
        // the original multicasts the update whether or not the local set worked
        if !key.starts_with("rrd/") || result.is_ok() {
            if let Some(p) = update_payload(key, data) {
                self.multicast(KVSTORE_MESSAGE_UPDATE, p);
            }
        }
        result
    }

    fn get_status(&self, _c: &Client, name: &[u8], nodename: &[u8]) -> Result<Vec<u8>, IpcError> {
        let (key, node) = (text(name)?, text(nodename)?);
        self.status.tables.lock().store.get(node, key).map(|v| v.to_vec()).map_err(|e| IpcError::Errno(e.errno()))
    }

    fn get_config(&self, _c: &Client, path: &[u8]) -> Result<Vec<u8>, IpcError> {
        // a path is bytes, as in the tree (non-UTF-8 names included)
        let path = pmxcfs_backend::name_bytes::decode(path);
        self.db.tree().read(&path).map(|d| d.to_vec()).map_err(|e| IpcError::Errno(e.errno()))
    }

    fn log_cluster_msg(&self, c: &Client, priority: u8, ident: &[u8], tag: &[u8], msg: &[u8]) -> Result<(), IpcError> {
        if priority >= 8 {
            return Ok(());
        }
        let entry = self
            .status
            .tables
            .lock()
            .clusterlog
            .add(self.status.nodename.as_bytes(), ident, tag, c.pid, now(), priority, msg)
            .map_err(|e| IpcError::Errno(e.errno()))?;
        self.multicast(KVSTORE_MESSAGE_LOG, entry.encode());
        Ok(())
    }

    fn get_cluster_log(&self, _c: &Client, max_entries: u32, user: &[u8]) -> Result<Vec<u8>, IpcError> {
        let max = if max_entries == 0 { DEFAULT_LOG_ENTRIES } else { max_entries };
        let user = if user.is_empty() { None } else { Some(user) };
        Ok(self.status.tables.lock().clusterlog.dump_json(user, max))
    }

    fn get_rrd_dump(&self, _c: &Client) -> Result<Vec<u8>, IpcError> {
        Ok(self.status.tables.lock().store.rrd.dump(now() as i64).ipc_body())
    }

    fn guest_exists(&self, vmid: u32) -> bool {
        self.db.tree().vmlist.entries.contains_key(&vmid)
    }

    fn get_guest_config_property(&self, c: &Client, vmid: u32, property: &[u8]) -> Result<Vec<u8>, IpcError> {
        self.get_guest_config_properties(c, vmid, &[property])
    }

    fn verify_token(&self, _c: &Client, token: &[u8]) -> Result<(), IpcError> {
        let cfg = self.db.tree().read("priv/token.cfg").map_err(|_| IpcError::NotFound)?;
        if token_cfg_contains(&cfg, token) {
            Ok(())
        } else {
            Err(IpcError::NotFound)
        }
    }

    fn get_guest_config_properties(&self, _c: &Client, vmid: u32, properties: &[&[u8]]) -> Result<Vec<u8>, IpcError> {
        if vmid == 0 {
            let mut ids: Vec<u32> = self.db.tree().vmlist.entries.keys().copied().collect();
            ids.sort_unstable();
            let configs: Vec<(u32, Option<Vec<u8>>)> = ids.into_iter().map(|id| (id, self.guest_config(id))).collect();
            return Ok(all_guests_json(configs.iter().map(|(id, c)| (*id, c.as_deref())), properties));
        }
        let config = self.guest_config(vmid);
        single_guest_json(vmid, config.as_deref(), properties)
    }
}
