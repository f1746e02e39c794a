//! At start: content that open files held when the daemon died (their crash copies) is
//! committed, so a SIGKILL loses no `write` that had returned — as with the original, which
//! committed every write at once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pmxcfs_backend::path::join;
use pmxcfs_backend::{ChangeSink, Database, Durability, Op};
use tracing::{info, warn};

use crate::crash_copy::{copy_files, leftovers_of, Leftover};

/// Where a leftover goes: the path of its inode, or a new file in its old directory.
fn place(db: &Database, l: &Leftover) -> Option<(String, bool)> {
    let t = db.tree();
    if let Some(e) = t.get(l.inode) {
        if !e.is_dir() {
            return t.path_of(l.inode).map(|p| (p, false));
        }
    }
    let parent = t.get(l.parent).filter(|e| e.is_dir())?;
    let dir = t.path_of(parent.inode)?;
    match t.lookup_child(parent.inode, &l.name) {
        Some(e) if e.is_dir() => None,
        Some(_) => Some((join(&dir, &l.name), false)),
        None => Some((join(&dir, &l.name), true)),
    }
}

/// Commits the crash copies in `files` (listed at start, before this run made copies of
/// its own) through `sink`; returns how many were recovered. One that cannot be placed (its
/// directory is gone) is renamed `*.unplaced` and logged.
pub fn recover_crash_copies(files: &[PathBuf], db: &Database, sink: &dyn ChangeSink) -> usize {
    let mut recovered = 0;
    for l in leftovers_of(files) {
        let Some((path, create)) = place(db, &l) else {
            let to = l.file.with_extension("pending.unplaced");
            let _ = std::fs::rename(&l.file, &to);
            warn!(target: "fuse", "content of '{}' written before a crash has no place any more - kept in '{}'", l.name, to.display());
            continue;
        };
        let len = l.content.len();
        let result = (if create { sink.submit(Op::Create { path: path.clone() }, Durability::Deferred).map(|_| ()) } else { Ok(()) })
            .and_then(|_| sink.submit(Op::Write { path: path.clone(), offset: 0, data: l.content, truncate: true }, Durability::Now).map(|_| ()));
        match result {
            Ok(()) => {
                let _ = std::fs::remove_file(&l.file);
                info!(target: "fuse", "recovered {len} bytes of '{path}' written before a crash");
                recovered += 1;
            }
            Err(e) => warn!(target: "fuse", "unable to recover '{path}' from '{}': {e} - kept for the next start", l.file.display()),
        }
    }
    recovered
}

/// Recovers at once when the sink is writable, else on a thread once it is (cluster mode
/// waits for quorum), giving up after `wait`.
pub fn recover_when_writable(dir: PathBuf, db: std::sync::Arc<Database>, sink: std::sync::Arc<dyn ChangeSink>, wait: Duration) {
    let files = copy_files(&dir);
    if files.is_empty() {
        return;
    }
    if sink.quorate() {
        recover_crash_copies(&files, &db, sink.as_ref());
        return;
    }
    let spawned = std::thread::Builder::new().name("recover-open-files".into()).spawn(move || {
        let start = Instant::now();
        while !sink.quorate() {
            if start.elapsed() > wait {
                warn!(target: "fuse", "no quorum for {} s - crash copies in '{}' kept for the next start", wait.as_secs(), dir.display());
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        recover_crash_copies(&files, &db, sink.as_ref());
    });
    if let Err(e) = spawned {
        warn!(target: "fuse", "unable to start crash-copy recovery: {e}");
    }
}
