//! The virtual files' contents (`.version`, `.members`, `.vmlist`, `.rrd`, `.clusterlog`,
//! `.debug`) in the original's exact text formats.

use std::sync::Arc;

use pmxcfs_backend::Database;
use pmxcfs_fuse::VirtualFiles;

use crate::logging::LogControl;
use pmxcfs_status::node::Status;

/// Entries `.clusterlog` shows (the original's default).
const CLUSTERLOG_MAX: u32 = 50;

/// Serves the virtual files from the database and the status tables.
pub struct StatusFiles {
    pub status: Arc<Status>,
    pub db: Arc<Database>,
    pub log: Arc<LogControl>,
}

fn now() -> i64 {
    pmxcfs_backend::now_secs() as i64
}

impl StatusFiles {
    /// `.version` (spec §5.2).
    pub fn version_text(&self) -> String {
        let clinfo_version = self.status.tables.lock().clinfo_version;
        let kvstore = self.status.kvstore_version_text();
        let t = self.db.tree();
        let mut s = String::from("{\n");
        s.push_str(&format!("\"starttime\": {},\n", self.status.start_time));
        s.push_str(&format!("\"clinfo\": {clinfo_version},\n"));
        s.push_str(&format!("\"vmlist\": {},\n", t.vmlist.version));
        for (path, v) in t.observed.iter() {
            s.push_str(&format!("\"{path}\": {v},\n"));
        }
        s.push_str(&kvstore);
        s.push_str("}\n");
        s
    }

    /// `.members` (spec §5.3).
    pub fn members_text(&self) -> String {
        self.status.members_text()
    }
}

impl VirtualFiles for StatusFiles {
    fn read(&self, name: &str) -> Option<Vec<u8>> {
        match name {
            ".version" => Some(self.version_text().into_bytes()),
            ".members" => Some(self.members_text().into_bytes()),
            ".vmlist" => Some(self.db.tree().vmlist.to_json().into_bytes()),
            ".rrd" => Some(self.status.tables.lock().store.rrd.dump(now()).file_text().to_vec()),
            ".clusterlog" => Some(self.status.tables.lock().clusterlog.dump_json(None, CLUSTERLOG_MAX)),
            ".debug" => Some(if self.log.debug() { b"1\n".to_vec() } else { b"0\n".to_vec() }),
            _ => None,
        }
    }

    fn write(&self, name: &str, data: &[u8]) -> pmxcfs_backend::FsResult<usize> {
        use pmxcfs_backend::FsError;
        if name != ".debug" {
            return Err(FsError::Io(format!("{name} is not writable")));
        }
        match data.get(..2) {
            Some(b"0\n") => self.log.set_debug(false),
            Some(b"1\n") => self.log.set_debug(true),
            _ => return Err(FsError::Io(".debug takes 0 or 1".into())),
        }
        tracing::info!(target: "main", "debug level set to {}", if self.log.debug() { 1 } else { 0 });
        Ok(2)
    }
}
