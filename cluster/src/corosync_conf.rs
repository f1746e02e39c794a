//! Keeps the host's corosync.conf in step with the cluster's copy in the tree
//! (`dcdb_sync_corosync_conf`): written when the tree's copy differs and its
//! `config_version` is not lower than the host file's; and imports the host file into a
//! database created at start (what `pvecm add` relies on).

use std::path::{Path, PathBuf};

use pmxcfs_backend::{Database, Durability, FsResult, Op, Stamp};
use tracing::{info, warn};

/// `totem { config_version: N }` of a corosync.conf text (0 if absent).
pub fn config_version(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("config_version:"))
        .find_map(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Writes `host` from the tree's `corosync.conf` if needed. Returns true if it wrote.
pub fn sync(db: &Database, host: &Path) -> bool {
    let Ok(data) = db.tree().read("corosync.conf") else { return false };
    let new = String::from_utf8_lossy(&data).to_string();
    let old = std::fs::read_to_string(host).unwrap_or_default();
    if old == new {
        return false;
    }
    if config_version(&new) < config_version(&old) {
        warn!(target: "dcdb", "ignore corosync.conf with lower config_version than '{}'", host.display());
        return false;
    }
    if let Some(dir) = host.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp: PathBuf = host.with_extension("conf.tmp");
    let written = std::fs::write(&tmp, &data[..]).and_then(|_| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, host)
    });
    match written {
        Ok(()) => {
            info!(target: "dcdb", "wrote new corosync config '{}' (version = {})", host.display(), config_version(&new));
            true
        }
        Err(e) => {
            warn!(target: "dcdb", "unable to write '{}': {e}", host.display());
            false
        }
    }
}

/// A database created by this start (not `-l`) takes the host's corosync.conf, if there is
/// one, as `/corosync.conf` (create, then write with truncate, writer 0, mtime now), so the
/// node starts in cluster mode. Returns true if it imported.
pub fn import_into_new_db(db: &Database, host: &Path) -> FsResult<bool> {
    let Ok(data) = std::fs::read(host) else { return Ok(false) };
    let stamp = Stamp { writer: 0, mtime: pmxcfs_backend::now_secs() };
    let path = "corosync.conf".to_string();
    db.apply(&Op::Create { path: path.clone() }, stamp, Durability::Now)?;
    db.apply(&Op::Write { path, offset: 0, data, truncate: true }, stamp, Durability::Now)?;
    info!(target: "main", "imported '{}' into the new database", host.display());
    Ok(true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn config_version_is_read_from_totem() {
        assert_eq!(super::config_version("totem {\n  cluster_name: x\n  config_version: 7\n}\n"), 7);
        assert_eq!(super::config_version("totem {}\n"), 0);
    }

    #[test]
    fn a_new_database_imports_the_host_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = pmxcfs_backend::Database::open(&dir.path().join("config.db"), Default::default()).unwrap();
        assert!(!super::import_into_new_db(&db, &dir.path().join("missing.conf")).unwrap());
        assert!(db.tree().lookup("corosync.conf").is_none());
        let host = dir.path().join("corosync.conf");
        std::fs::write(&host, b"totem {\n  config_version: 3\n}\n").unwrap();
        assert!(super::import_into_new_db(&db, &host).unwrap());
        assert_eq!(db.tree().read("corosync.conf").unwrap()[..], b"totem {\n  config_version: 3\n}\n"[..]);
    }
}
