//! The stats file (`RUNDIR/pmxcfs-ng.stats`), written on SIGUSR1: what tests and the
//! benchmark read to learn the acknowledgement ("commits") and store-transaction counts and
//! whether everything is durable on disk ("dirty" false).

use std::path::Path;

use std::sync::atomic::Ordering;

use pmxcfs_backend::DbStats;
use pmxcfs_fuse::FsCounters;

/// JSON text of the counters.
pub fn to_json(s: &DbStats, fs: &FsCounters) -> String {
    serde_json::json!({
        "fuse_write_requests": fs.write_requests.load(Ordering::Relaxed),
        "fuse_max_write_bytes": fs.max_write_bytes.load(Ordering::Relaxed),
        "pid": std::process::id(),
        "version": s.version,
        "commits": s.commits,
        "store_transactions": s.store_transactions,
        "wal_syncs": s.wal_syncs,
        "dirty": s.dirty,
        "pending_rows": s.pending_rows,
        "db_exclusive": s.db_exclusive,
        "db_exclusive_when_alone": s.db_exclusive_when_alone,
        "record_bytes": s.record_bytes,
        "failed": s.failed,
        "store_error": s.store_error,
        "store_failures": s.store_failures,
        "entries": s.entries,
    })
    .to_string()
}

/// Writes the stats atomically (temp file + rename).
pub fn write(path: &Path, s: &DbStats, fs: &FsCounters) {
    let tmp = path.with_extension("stats.tmp");
    if std::fs::write(&tmp, to_json(s, fs)).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}
