//! The large database workload's input: the golden database plus N small files, generated
//! once with the original's schema and page size and cached in the output directory.

use std::io;
use std::path::{Path, PathBuf};

use crate::other;

/// Files per directory below `bench/`.
const PER_DIR: usize = 1000;

/// Path of a database holding `base` (or nothing) plus `files` 200-byte files under
/// `bench/dNN/`; built on first use.
pub(crate) fn prepare(base: Option<&Path>, work_dir: &Path, files: usize) -> io::Result<PathBuf> {
    let out = work_dir.join(format!("config-{}k.db", files / 1000));
    if out.is_file() {
        return Ok(out);
    }
    std::fs::create_dir_all(work_dir)?;
    let tmp = out.with_extension("db.tmp");
    let _ = std::fs::remove_file(&tmp);
    let sql = |e: rusqlite::Error| other(format!("building {}: {e}", tmp.display()));
    match base {
        Some(b) => {
            std::fs::copy(b, &tmp)?;
        }
        None => {
            let c = rusqlite::Connection::open(&tmp).map_err(sql)?;
            c.execute_batch(pmxcfs_backend::store::SCHEMA).map_err(sql)?;
            c.execute("INSERT INTO tree VALUES (0, 0, 1, 0, 0, 8, '__version__', NULL)", []).map_err(sql)?;
        }
    }
    let mut c = rusqlite::Connection::open(&tmp).map_err(sql)?;
    c.pragma_update(None, "journal_mode", "DELETE").map_err(sql)?;
    let (max_inode, version): (i64, i64) = c
        .query_row("SELECT max(inode), (SELECT version FROM tree WHERE inode = 0) FROM tree", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql)?;
    let tx = c.transaction().map_err(sql)?;
    let mut next = max_inode.max(0) + 1;
    let mut v = version.max(1);
    {
        let mut ins = tx.prepare("INSERT INTO tree VALUES (?1, ?2, ?3, 0, 1700000000, ?4, ?5, ?6)").map_err(sql)?;
        let bench = next;
        v += 1;
        ins.execute(rusqlite::params![bench, 0, v, 4, "bench", Option::<Vec<u8>>::None]).map_err(sql)?;
        next += 1;
        for d in 0..files.div_ceil(PER_DIR) {
            let dir = next;
            next += 1;
            v += 1;
            ins.execute(rusqlite::params![dir, bench, v, 4, format!("d{d:02}"), Option::<Vec<u8>>::None]).map_err(sql)?;
            for f in 0..PER_DIR.min(files - d * PER_DIR) {
                v += 1;
                let data = format!("# bench file {d}/{f}\n{}\n", "x".repeat(170)).into_bytes();
                ins.execute(rusqlite::params![next, dir, v, 8, format!("f{:05}", d * PER_DIR + f), data]).map_err(sql)?;
                next += 1;
            }
        }
    }
    tx.execute("UPDATE tree SET version = ?1 WHERE inode = 0", [v]).map_err(sql)?;
    tx.commit().map_err(sql)?;
    // the original's settings: WAL journal, its page size untouched
    c.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(sql)?;
    drop(c);
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", tmp.display()));
    }
    std::fs::rename(&tmp, &out)?;
    Ok(out)
}
