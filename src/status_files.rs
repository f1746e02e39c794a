//! The virtual files' contents (`.version`, `.members`, `.vmlist`, `.debug`) in the original's
//! exact text formats. `.rrd` and `.clusterlog` arrive with the status plane.

use std::sync::Arc;

use pmxcfs_backend::Database;
use pmxcfs_fuse::VirtualFiles;

use crate::logging::LogControl;

/// Status state this daemon serves through virtual files.
pub struct StatusFiles {
    pub nodename: String,
    pub start_time: u64,
    pub db: Arc<Database>,
    pub log: Arc<LogControl>,
    /// Cluster-info version (`clinfo`): 0 in local mode.
    pub clinfo_version: u32,
}

impl StatusFiles {
    /// `.version` (spec §5.2).
    pub fn version_text(&self) -> String {
        let t = self.db.tree();
        let mut s = String::from("{\n");
        s.push_str(&format!("\"starttime\": {},\n", self.start_time));
        s.push_str(&format!("\"clinfo\": {},\n", self.clinfo_version));
        s.push_str(&format!("\"vmlist\": {},\n", t.vmlist.version));
        for (path, v) in t.observed.iter() {
            s.push_str(&format!("\"{path}\": {v},\n"));
        }
        s.push_str("\"kvstore\": {\n");
        s.push_str(&format!("\"{}\": {{\n}}\n", self.nodename));
        s.push_str("}\n}\n");
        s
    }

    /// `.members` (spec §5.3), local mode: no cluster info.
    pub fn members_text(&self) -> String {
        format!("{{\n\"nodename\": \"{}\",\n\"version\": {}\n}}\n", self.nodename, self.clinfo_version)
    }
}

impl VirtualFiles for StatusFiles {
    fn read(&self, name: &str) -> Option<Vec<u8>> {
        match name {
            ".version" => Some(self.version_text().into_bytes()),
            ".members" => Some(self.members_text().into_bytes()),
            ".vmlist" => Some(self.db.tree().vmlist.to_json().into_bytes()),
            ".debug" => Some(if self.log.debug() { b"1\n".to_vec() } else { b"0\n".to_vec() }),
            _ => None,
        }
    }

    fn write(&self, name: &str, data: &[u8]) -> Result<usize, i32> {
        if name != ".debug" {
            return Err(libc::EIO);
        }
        match data.get(..2) {
            Some(b"0\n") => self.log.set_debug(false),
            Some(b"1\n") => self.log.set_debug(true),
            _ => return Err(libc::EIO),
        }
        tracing::info!(target: "main", "debug level set to {}", if self.log.debug() { 1 } else { 0 });
        Ok(2)
    }
}
