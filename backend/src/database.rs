//! The one road every change takes: apply to the in-RAM tree, then commit to the store.
//!
//! [`Database::apply`] is the single apply path for local and (later) replicated changes.
//! Durability is decided here, not in the FUSE layer:
//! * [`Durability::Commit`] — the change is committed (one SQLite transaction, with the
//!   `__version__` row) before `apply` returns, or, with a commit delay, within that delay;
//! * [`Durability::Deferred`] — the change stays in RAM until the next commit (used for the
//!   create of a new file, which is folded into its first close).
//!
//! A failed commit makes the database read-only with EIO for every later change (the
//! original's sticky `errors` flag): RAM and disk must not drift apart silently.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use tracing::{debug, error, info, warn};

use crate::error::{FsError, FsResult};
use crate::store::{Store, StoreError};
use crate::tree::{now_secs, Stamp, Tree};

/// One change to the tree, as FUSE issues it and as dcdb messages carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Mkdir { path: String },
    Create { path: String },
    Write { path: String, offset: u64, data: Vec<u8>, truncate: bool },
    /// utimens: the entry (and the root) take `mtime` instead of the message time.
    SetMtime { path: String, mtime: u32 },
    Delete { path: String },
    Rename { from: String, to: String },
    /// Remove the lock directory `path` if its checksum is still `csum`.
    Unlock { path: String, csum: [u8; 32] },
}

/// When the change must reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Before `apply` returns (or within the commit delay).
    Commit,
    /// Within [`GROUP_COMMIT_WINDOW`]: changes replicated from other nodes, whose
    /// originator already holds them, share transactions.
    Soon,
    /// With the next commit (a new file's create, folded into its first close).
    Deferred,
}

/// How long a [`Durability::Soon`] change may wait for its transaction.
pub const GROUP_COMMIT_WINDOW: Duration = Duration::from_secs(1);

/// Settings of the commit policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct DatabaseOptions {
    /// Changes arriving within this delay share one transaction (0 = commit at once).
    pub commit_delay: Duration,
}

/// Counters for tests, benchmarks and `.debug`-style introspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbStats {
    pub version: u64,
    pub commits: u64,
    pub wal_syncs: u64,
    pub dirty: bool,
    pub failed: bool,
    pub entries: usize,
}

/// The tree and its store.
pub struct Database {
    tree: RwLock<Tree>,
    store: Mutex<Store>,
    options: DatabaseOptions,
    failed: AtomicBool,
    unsynced: AtomicBool,
    wal_syncs: AtomicU64,
    commit_due: Mutex<Option<Instant>>,
}

impl Database {
    /// Opens `path` (created if missing), loads and checks the tree. Duplicate VMIDs are
    /// logged, not fatal.
    pub fn open(path: &Path, options: DatabaseOptions) -> Result<Database, StoreError> {
        let store = Store::open(path)?;
        let loaded = store.load_rows()?;
        let mut tree = Tree::from_entries(loaded.entries)
            .map_err(|why| StoreError::BadTree { path: path.display().to_string(), why })?;
        let fresh = tree.version() == 0;
        if fresh {
            tree.init_version(1);
        }
        for (vmid, kept, ignored) in tree.after_load(now_secs()) {
            warn!(target: "database", "detected duplicate VMID {vmid}: '{kept}' and '{ignored}' (using the first)");
        }
        let db = Database {
            tree: RwLock::new(tree),
            store: Mutex::new(store),
            options,
            failed: AtomicBool::new(false),
            unsynced: AtomicBool::new(false),
            wal_syncs: AtomicU64::new(0),
            commit_due: Mutex::new(None),
        };
        if fresh {
            db.commit().map_err(|e| StoreError::BadTree { path: path.display().to_string(), why: e.to_string() })?;
        }
        let (version, entries) = {
            let t = db.tree.read();
            (t.version(), t.len())
        };
        info!(target: "database", "loaded database '{}' (version {version}, {entries} entries)", path.display());
        Ok(db)
    }

    /// Read access to the tree.
    pub fn tree(&self) -> RwLockReadGuard<'_, Tree> {
        self.tree.read()
    }

    /// Runs `f` with write access to the tree (for side tables such as lock timers).
    pub fn with_tree_mut<R>(&self, f: impl FnOnce(&mut Tree) -> R) -> R {
        f(&mut self.tree.write())
    }

    /// True once a commit failed (every later change gets EIO).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Applies one change to the tree and makes it as durable as asked.
    pub fn apply(&self, op: &Op, stamp: Stamp, durability: Durability) -> FsResult<u64> {
        if self.failed() {
            return Err(FsError::Io("database is in error state".into()));
        }
        let result = {
            let mut t = self.tree.write();
            match op {
                Op::Mkdir { path } => t.mkdir(path, stamp),
                Op::Create { path } => t.create(path, stamp),
                Op::Write { path, offset, data, truncate } => t.write(path, *offset, data, *truncate, stamp).map(|n| n as u64),
                Op::SetMtime { path, mtime } => t.set_mtime(path, Stamp { writer: stamp.writer, mtime: *mtime }).map(|_| 0),
                Op::Delete { path } => t.delete(path, stamp).map(|_| 0),
                Op::Rename { from, to } => t.rename(from, to, stamp).map(|_| 0),
                Op::Unlock { path, csum } => {
                    if t.lock_csum(path).as_ref() == Some(csum) {
                        t.delete(path, stamp).map(|_| 0)
                    } else {
                        Ok(0)
                    }
                }
            }
        };
        debug!(target: "database", "apply {} -> {:?}", op_name(op), result);
        let value = result?;
        match durability {
            Durability::Commit if self.options.commit_delay.is_zero() => self.commit()?,
            Durability::Commit => self.commit_within(self.options.commit_delay),
            Durability::Soon => self.commit_within(GROUP_COMMIT_WINDOW),
            Durability::Deferred => {}
        }
        Ok(value)
    }

    /// Schedules a commit at most `delay` from now (keeps an earlier schedule).
    fn commit_within(&self, delay: Duration) {
        let mut due = self.commit_due.lock();
        let at = Instant::now() + delay;
        if due.is_none_or(|d| at < d) {
            *due = Some(at);
        }
    }

    /// Commits every pending change in one transaction (no-op when nothing is pending).
    pub fn commit(&self) -> FsResult<()> {
        let mut store = self.store.lock();
        if self.failed() {
            return Err(FsError::Io("database is in error state".into()));
        }
        *self.commit_due.lock() = None;
        let (batch, root) = {
            let mut t = self.tree.write();
            if !t.is_dirty() {
                return Ok(());
            }
            (t.take_dirty(), t.root().clone())
        };
        match store.commit(&batch, &root) {
            Ok(()) => {
                self.unsynced.store(true, Ordering::SeqCst);
                debug!(target: "database", "commit #{} version {} ({} rows)", store.commits(), root.version, batch.len());
                Ok(())
            }
            Err(e) => {
                error!(target: "database", "commit failed - database is now read-only: {e}");
                self.failed.store(true, Ordering::SeqCst);
                self.tree.write().mark_dirty(batch.iter().map(|(i, _)| *i));
                Err(FsError::Io(e.to_string()))
            }
        }
    }

    /// Replaces the tree after a cluster resync: keeps the entries the leader's index lists,
    /// applies the leader's `updates`, checks that the result's index is byte-identical to
    /// `leader_index`, and writes it all in ONE transaction. On any failure nothing changes.
    pub fn apply_resync(&self, leader_index: &[u8], keep: &std::collections::HashSet<u64>, updates: Vec<crate::entry::Entry>) -> Result<(), String> {
        self.commit().map_err(|e| format!("commit before resync failed: {e}"))?;
        let mut store = self.store.lock();
        let mut tree = self.tree.write();
        let (new_tree, deleted) = tree.resynced(keep, updates, now_secs())?;
        if new_tree.encode_index() != leader_index {
            return Err("the resynced tree does not match the leader's index".into());
        }
        let mut batch: Vec<(u64, Option<crate::entry::Entry>)> = deleted.iter().map(|i| (*i, None)).collect();
        for e in new_tree.sorted_entries() {
            let unchanged = tree.get(e.inode).is_some_and(|old| crate::index::entry_digest(old) == crate::index::entry_digest(e) && old.parent == e.parent);
            if !unchanged {
                batch.push((e.inode, Some(e.clone())));
            }
        }
        if let Err(e) = store.commit(&batch, new_tree.root()) {
            self.failed.store(true, Ordering::SeqCst);
            return Err(format!("resync commit failed: {e}"));
        }
        self.unsynced.store(true, Ordering::SeqCst);
        *tree = new_tree;
        info!(target: "database", "resync: {} entries written, {} deleted, version {}", batch.len() - deleted.len(), deleted.len(), tree.version());
        Ok(())
    }

    /// Commits if a delayed commit is due; syncs the WAL if commits happened since the last
    /// sync. Called about every 50 ms by [`Database::spawn_maintenance`].
    pub fn maintenance(&self, sync_every: Duration, last_sync: &mut Instant) {
        let due = *self.commit_due.lock();
        if due.is_some_and(|d| Instant::now() >= d) {
            let _ = self.commit();
        }
        if last_sync.elapsed() >= sync_every && self.unsynced.swap(false, Ordering::SeqCst) {
            let store = self.store.lock();
            match store.sync_wal() {
                Ok(()) => {
                    self.wal_syncs.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => warn!(target: "database", "WAL sync failed: {e}"),
            }
            *last_sync = Instant::now();
        }
    }

    /// Starts the background thread that runs delayed commits and the once-a-second WAL
    /// sync. It stops when `stop` is set.
    pub fn spawn_maintenance(self: &Arc<Self>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        let db = self.clone();
        std::thread::Builder::new()
            .name("db-maintenance".into())
            .spawn(move || {
                let mut last_sync = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                    db.maintenance(Duration::from_secs(1), &mut last_sync);
                }
            })
            .expect("spawn maintenance thread")
    }

    /// Makes every committed change durable now (fsync): fdatasync of the WAL.
    pub fn sync_wal(&self) -> FsResult<()> {
        let store = self.store.lock();
        self.unsynced.store(false, Ordering::SeqCst);
        store.sync_wal().map_err(|e| FsError::Io(e.to_string()))?;
        self.wal_syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Final commit and WAL sync (clean shutdown).
    pub fn close(&self) -> FsResult<()> {
        let r = self.commit();
        let store = self.store.lock();
        if let Err(e) = store.sync_wal() {
            warn!(target: "database", "final WAL sync failed: {e}");
        }
        r
    }

    pub fn stats(&self) -> DbStats {
        let store = self.store.lock();
        let t = self.tree.read();
        DbStats {
            version: t.version(),
            commits: store.commits(),
            wal_syncs: self.wal_syncs.load(Ordering::SeqCst),
            dirty: t.is_dirty(),
            failed: self.failed(),
            entries: t.len(),
        }
    }

    /// `PRAGMA integrity_check` of the open database.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        self.store.lock().integrity_check()
    }
}

fn op_name(op: &Op) -> String {
    match op {
        Op::Mkdir { path } => format!("mkdir {path}"),
        Op::Create { path } => format!("create {path}"),
        Op::Write { path, offset, data, truncate } => format!("write {path} off={offset} len={} trunc={truncate}", data.len()),
        Op::SetMtime { path, mtime } => format!("mtime {path} {mtime}"),
        Op::Delete { path } => format!("delete {path}"),
        Op::Rename { from, to } => format!("rename {from} -> {to}"),
        Op::Unlock { path, .. } => format!("unlock {path}"),
    }
}

/// Where the FUSE layer sends changes. Local mode applies them at once ([`LocalSink`]);
/// cluster mode orders them through corosync first and answers with the result of applying
/// the node's own delivered message.
pub trait ChangeSink: Send + Sync {
    /// Applies (or replicates, then applies) one change; the result is the apply result.
    fn submit(&self, op: Op, durability: Durability) -> FsResult<u64>;
    /// Makes every applied change durable now (close of a new file, fsync).
    fn commit(&self) -> FsResult<()>;
    /// An unlock request for the lock directory `path` whose checksum is `csum`: returns
    /// true if the lock was found expired and removed.
    fn unlock_request(&self, path: &str, csum: [u8; 32]) -> FsResult<bool>;
    /// Writable (quorate) right now.
    fn quorate(&self) -> bool;
}

/// Local mode: every change is applied directly with writer 0 and the local clock.
pub struct LocalSink {
    pub db: Arc<Database>,
}

impl ChangeSink for LocalSink {
    fn submit(&self, op: Op, durability: Durability) -> FsResult<u64> {
        self.db.apply(&op, Stamp { writer: 0, mtime: now_secs() }, durability)
    }

    fn commit(&self) -> FsResult<()> {
        self.db.commit()
    }

    fn unlock_request(&self, path: &str, csum: [u8; 32]) -> FsResult<bool> {
        let expired = self.db.with_tree_mut(|t| t.lock_expired(path, &csum, now_secs()));
        if !expired {
            return Ok(false);
        }
        self.submit(Op::Unlock { path: path.to_string(), csum }, Durability::Commit)?;
        info!(target: "database", "removed expired lock '{path}'");
        Ok(true)
    }

    fn quorate(&self) -> bool {
        true
    }
}
