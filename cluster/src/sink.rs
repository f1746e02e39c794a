//! Cluster mode's [`ChangeSink`]: every change is multicast as a dcdb message and the
//! caller gets the result of applying the node's OWN delivered copy (like the original).
//! Not quorate → EACCES at once, nothing sent; a message never applied → EBUSY.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pmxcfs_backend::{ChangeSink, Database, Durability, FsError, FsResult, Op};
use pmxcfs_dfsm::transport::{GroupRunner, SendError};
use pmxcfs_dfsm::wire::dcdb::DcdbSubtype;
use tracing::warn;

use crate::dcdb::{encode_op, encode_unlock, DcdbApp};

/// Sends changes through the `pve_dcdb_v1` group.
pub struct ClusterSink {
    pub db: Arc<Database>,
    pub dcdb: GroupRunner<DcdbApp>,
    pub quorate: Arc<AtomicBool>,
}

impl ChangeSink for ClusterSink {
    fn submit(&self, op: Op, durability: Durability) -> FsResult<u64> {
        if !self.quorate() {
            return Err(FsError::AccessDenied);
        }
        // a failing store refuses local changes (ENOSPC/EIO) before they are multicast
        self.db.check_writable()?;
        let (subtype, payload) = encode_op(&op).map_err(|e| {
            warn!(target: "dcdb", "unable to encode {op:?}: {e}");
            FsError::Invalid
        })?;
        let deferred = durability == Durability::Deferred;
        match self.dcdb.send(subtype, payload) {
            Ok(r) if r < 0 => Err(FsError::from_errno(-r)),
            Ok(r) => {
                // the node applied our change: acknowledge it (crash record) before the
                // syscall returns, with everything applied meanwhile; the store transaction
                // follows the same sync interval as local mode; a deferred change (a create,
                // the content that goes with a rename) waits for the next acknowledgement
                if !deferred {
                    self.db.acknowledge()?;
                }
                Ok(r as u64)
            }
            Err(SendError::Aborted) | Err(SendError::NotConnected) => Err(FsError::Busy),
        }
    }

    fn acknowledge(&self) -> FsResult<()> {
        self.db.acknowledge()
    }

    fn unlock_request(&self, path: &str, csum: [u8; 32]) -> FsResult<bool> {
        if self.quorate() {
            if let Err(e) = self.dcdb.send_nowait(DcdbSubtype::UnlockRequest as u16, encode_unlock(path, csum)) {
                warn!(target: "dcdb", "unable to send unlock request for '{path}': {e}");
            }
        }
        Ok(false)
    }

    fn quorate(&self) -> bool {
        self.quorate.load(Ordering::SeqCst)
    }
}
