//! The stats file (`RUNDIR/pmxcfs-ng.stats`), written on SIGUSR1: what tests and the
//! benchmark read to learn the commit count and whether everything is on disk.

use std::path::Path;

use pmxcfs_backend::DbStats;

/// JSON text of the counters.
pub fn to_json(s: &DbStats) -> String {
    serde_json::json!({
        "pid": std::process::id(),
        "version": s.version,
        "commits": s.commits,
        "wal_syncs": s.wal_syncs,
        "dirty": s.dirty,
        "failed": s.failed,
        "entries": s.entries,
    })
    .to_string()
}

/// Writes the stats atomically (temp file + rename).
pub fn write(path: &Path, s: &DbStats) {
    let tmp = path.with_extension("stats.tmp");
    if std::fs::write(&tmp, to_json(s)).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}
