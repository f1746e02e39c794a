//! The one road every change takes, and the persistence policy of pmxcfs-ng — in one place.
//!
//! # Words
//! * **apply** — change the in-RAM tree, which is the truth ([`Database::apply`], the one
//!   apply path for local and replicated changes).
//! * **acknowledge** — take every changed row from the tree and append it to the crash
//!   record on a tmpfs ([`crate::record`]). From then on a daemon crash (SIGKILL, panic,
//!   OOM) loses nothing: the next start replays the record. [`Durability::Now`],
//!   [`ChangeSink::acknowledge`] and [`Database::acknowledge`] ask for this.
//! * **store transaction** — every acknowledged row since the last one, coalesced per inode,
//!   written to `config.db` as ONE SQLite transaction (the original's schema and
//!   `__version__` row), so the file on disk always holds the whole tree as it was at one
//!   moment. Per-block writes never reach SQLite one by one.
//! * **make durable** — fdatasync of the WAL after a store transaction; the record
//!   generations it covers are then removed ([`Database::make_durable`]).
//!
//! # Policy (W = [`DatabaseOptions::sync_interval`], `--sync-interval`)
//! * W > 0: at most W after the first acknowledged change that is not yet durable, one store
//!   transaction and one fdatasync. A power cut loses at most the last W of acknowledged
//!   changes; the SSD sees one small write burst per W while anything changes, nothing when idle.
//! * W = 0: every acknowledgement is a store transaction made durable before it returns.
//! * `fsync(2)` → [`Database::make_durable`]: everything acknowledged is durable before it returns.
//! * Clean stop → [`Database::close`]: last store transaction, checkpoint, connection closed:
//!   `config.db` alone holds the tree (no `-wal`/`-shm`), the record is removed.
//! * Without a record directory (library use, simulations) every acknowledgement is a store
//!   transaction at once (a process crash keeps it through the page cache), durable within W.
//! * Failures are sticky: a failed store transaction or fdatasync keeps its rows (they are
//!   rewritten, never assumed written), is retried with back-off and logged at every
//!   attempt; meanwhile the sinks refuse new local changes with the failure's errno (ENOSPC
//!   for a full disk, else EIO; [`Database::check_writable`]) and [`DbStats::store_error`]
//!   shows it. Delivered cluster messages are still applied (the node must follow its
//!   cluster); they wait in the record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use tracing::{debug, error, info, warn};

use crate::entry::Entry;
use crate::error::{FsError, FsResult};
use crate::record::{self, CrashRecord};
use crate::db_sharing::{Sharing, SharingOptions};
use crate::store::{Locking, Store, StoreError};
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

/// When the change must be acknowledged (see the module doc for what that guarantees).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledged before `apply` returns (a commit point of the FUSE layer).
    Now,
    /// Acknowledged within [`GROUP_COMMIT_WINDOW`]: changes replicated from other nodes,
    /// whose originator already holds them, share acknowledgements.
    Soon,
    /// With the next acknowledgement (a new file's create, folded into its first close).
    Deferred,
}

/// How long a [`Durability::Soon`] change may wait for its acknowledgement.
pub const GROUP_COMMIT_WINDOW: Duration = Duration::from_secs(1);

/// The default power-cut window W of the daemon (measured choice: docs/benchmark.md).
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// A crash record larger than this is flushed to the store at once (it lives in RAM).
const RECORD_FLUSH_BYTES: u64 = 32 << 20;

/// Longest wait between retries of a failing store transaction or fdatasync.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Settings of the persistence policy.
#[derive(Debug, Clone, Default)]
pub struct DatabaseOptions {
    /// W: the longest time an acknowledged change waits to become durable against a power
    /// cut (0 = durable before every acknowledgement).
    pub sync_interval: Duration,
    /// Directory of the crash record (a tmpfs: `/run/pve-cluster`); None = no record, every
    /// acknowledgement is a store transaction.
    pub record_dir: Option<PathBuf>,
    /// Lock `config.db` exclusively while no other process has it open (no `-shm` writes:
    /// [`crate::db_sharing`]); None = SQLite's shared locking all the time (the original's).
    pub exclusive_when_alone: Option<SharingOptions>,
}

/// Counters for tests, benchmarks and `.debug`-style introspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbStats {
    pub version: u64,
    /// Acknowledgements that took changes (the FUSE layer's commit points).
    pub commits: u64,
    /// Store transactions written to `config.db`.
    pub store_transactions: u64,
    /// fdatasyncs of the WAL.
    pub wal_syncs: u64,
    /// Changes not yet acknowledged, or acknowledged but not yet durable.
    pub dirty: bool,
    /// Acknowledged rows waiting for their store transaction or fdatasync.
    pub pending_rows: usize,
    /// Bytes in the crash record's current generation.
    pub record_bytes: u64,
    /// A failure that stopped the database for good (a resync that could not be written).
    pub failed: bool,
    /// The store failure being retried right now, if any.
    pub store_error: Option<String>,
    /// Failed store transactions and fdatasyncs since start.
    pub store_failures: u64,
    pub entries: usize,
    /// The store locks `config.db` exclusively now (WAL index in RAM, no `-shm`).
    pub db_exclusive: bool,
    /// ... whenever no other process has it open (false: shared all the time).
    pub db_exclusive_when_alone: bool,
}

/// Acknowledged rows not yet in the store, and the record that keeps them.
#[derive(Default)]
struct Acknowledged {
    record: Option<CrashRecord>,
    rows: BTreeMap<u64, Option<Entry>>,
    /// The root at the newest acknowledgement not yet in the store.
    root: Option<Entry>,
    /// When the oldest of `rows` was acknowledged.
    since: Option<Instant>,
    /// The record outgrew [`RECORD_FLUSH_BYTES`].
    flush_now: bool,
}

impl Acknowledged {
    /// Puts rows back whose store transaction or fdatasync failed; newer rows win.
    fn merge_back(&mut self, rows: BTreeMap<u64, Option<Entry>>, root: Option<Entry>, since: Option<Instant>) {
        for (inode, row) in rows {
            self.rows.entry(inode).or_insert(row);
        }
        if self.root.is_none() {
            self.root = root;
        }
        self.since = match (self.since, since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// The store, and what it holds that is not yet durable.
struct Persisted {
    store: Option<Store>,
    /// Rows written by store transactions since the last successful fdatasync.
    unsynced: BTreeMap<u64, Option<Entry>>,
    unsynced_root: Option<Entry>,
    unsynced_since: Option<Instant>,
    /// The newest record generation whose rows are in `unsynced`.
    covered_generation: Option<u64>,
    /// Consecutive failures and when to try again.
    failures: u32,
    retry_at: Option<Instant>,
}

/// The tree, its crash record and its store.
pub struct Database {
    tree: RwLock<Tree>,
    acked: Mutex<Acknowledged>,
    persisted: Mutex<Persisted>,
    options: DatabaseOptions,
    ack_due: Mutex<Option<Instant>>,
    store_error: Mutex<Option<FsError>>,
    failed: AtomicBool,
    closed: AtomicBool,
    acks: AtomicU64,
    transactions: AtomicU64,
    wal_syncs: AtomicU64,
    store_failures: AtomicU64,
    sharing: Option<Sharing>,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.display().to_string(), source }
}

impl Database {
    /// Opens `path` (created if missing), loads and checks the tree, replays the crash
    /// record of `options.record_dir` (written to the store as one durable transaction),
    /// and starts a new record. Duplicate VMIDs are logged, not fatal.
    pub fn open(path: &Path, options: DatabaseOptions) -> Result<Database, StoreError> {
        let mut store = Store::open_with(path, if options.exclusive_when_alone.is_some() { Locking::Exclusive } else { Locking::Shared })?;
        let sharing = match &options.exclusive_when_alone {
            None => None,
            Some(how) => match Sharing::watch(path, store.locking(), how) {
                Ok(s) => Some(s),
                Err(e) => {
                    warn!(target: "database", "unable to watch '{}' for other processes ({e}) - sharing the database all the time", path.display());
                    store.reopen(Locking::Shared)?;
                    None
                }
            },
        };
        let loaded = store.load_rows()?;
        let bad_tree = |why: String| StoreError::BadTree { path: path.display().to_string(), why };
        let mut entries: BTreeMap<u64, Entry> = loaded.entries.into_iter().map(|e| (e.inode, e)).collect();
        let store_version = entries.get(&0).map_or(0, |r| r.version);

        let mut replayed = None;
        if let Some(dir) = &options.record_dir {
            let replay = record::read(dir).map_err(io_err(dir))?;
            if replay.batches.is_empty() {
                record::remove(&replay).map_err(io_err(dir))?;
            } else if replay.matches(store_version) {
                replay.apply_to(&mut entries);
                info!(
                    target: "database",
                    "replaying crash record '{}': {} acknowledged changes after version {store_version}{}",
                    dir.display(),
                    replay.batches.len(),
                    if replay.torn_bytes > 0 { format!(" (ignoring a torn tail of {} bytes)", replay.torn_bytes) } else { String::new() }
                );
                replayed = Some(replay);
            } else {
                error!(
                    target: "database",
                    "crash record in '{}' starts at version {:?}, but the database is at version {store_version} - not replayed, kept as *.stale",
                    dir.display(),
                    replay.base_version
                );
                record::set_aside(&replay).map_err(io_err(dir))?;
            }
        }

        let list: Vec<Entry> = {
            let root = entries.remove(&0);
            root.into_iter().chain(entries.into_values()).collect()
        };
        let mut tree = Tree::from_entries(list).map_err(bad_tree)?;
        let fresh = tree.version() == 0;
        if fresh {
            tree.init_version(1);
        }
        for (vmid, kept, ignored) in tree.after_load(now_secs()) {
            warn!(target: "database", "detected duplicate VMID {vmid}: '{kept}' and '{ignored}' (using the first)");
        }
        let mut transactions = 0;
        if let Some(replay) = &replayed {
            // what the record changed, as it is now: one durable transaction, then the record goes
            let touched: std::collections::BTreeSet<u64> = replay.batches.iter().flat_map(|b| b.rows.iter().map(|(i, _)| *i)).collect();
            let rows: Vec<(u64, Option<Entry>)> = touched.into_iter().map(|i| (i, tree.get(i).cloned())).collect();
            store.write_transaction(&rows, tree.root())?;
            store.sync_wal()?;
            record::remove(replay).map_err(io_err(path))?;
            transactions += 1;
        }
        let record = match &options.record_dir {
            Some(dir) => Some(CrashRecord::create(dir, tree.version()).map_err(io_err(dir))?),
            None => None,
        };
        let db = Database {
            tree: RwLock::new(tree),
            acked: Mutex::new(Acknowledged { record, ..Acknowledged::default() }),
            persisted: Mutex::new(Persisted {
                store: Some(store),
                unsynced: BTreeMap::new(),
                unsynced_root: None,
                unsynced_since: None,
                covered_generation: None,
                failures: 0,
                retry_at: None,
            }),
            options,
            ack_due: Mutex::new(None),
            store_error: Mutex::new(None),
            failed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            acks: AtomicU64::new(0),
            transactions: AtomicU64::new(transactions),
            wal_syncs: AtomicU64::new(transactions),
            store_failures: AtomicU64::new(0),
            sharing,
        };
        if fresh {
            db.acknowledge().and_then(|_| db.flush_to_store(true)).map_err(|e| bad_tree(e.to_string()))?;
        }
        let (version, count) = {
            let t = db.tree.read();
            (t.version(), t.len())
        };
        info!(target: "database", "loaded database '{}' (version {version}, {count} entries)", path.display());
        crate::memory::release_free_memory();
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

    /// True once the database stopped for good (a resync could not be written).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// The store failure being retried, if any (local changes are refused with it).
    pub fn store_error(&self) -> Option<FsError> {
        self.store_error.lock().clone()
    }

    /// Ok if local changes are accepted now; else the refusal (sticky store failure, closed).
    pub fn check_writable(&self) -> FsResult<()> {
        if self.failed() {
            return Err(FsError::Io("database is in error state".into()));
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(FsError::Io("database is closed".into()));
        }
        match self.store_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Applies one change to the tree and acknowledges it as asked. Refused only once the
    /// database stopped for good or was closed: a delivered cluster message must be applied
    /// even while the store fails (the sinks refuse new local changes then, before sending).
    pub fn apply(&self, op: &Op, stamp: Stamp, durability: Durability) -> FsResult<u64> {
        if self.failed() || self.closed.load(Ordering::SeqCst) {
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
            Durability::Now => self.acknowledge()?,
            Durability::Soon => self.acknowledge_within(GROUP_COMMIT_WINDOW),
            Durability::Deferred => {}
        }
        Ok(value)
    }

    /// Schedules an acknowledgement at most `delay` from now (keeps an earlier schedule).
    fn acknowledge_within(&self, delay: Duration) {
        let mut due = self.ack_due.lock();
        let at = Instant::now() + delay;
        if due.is_none_or(|d| at < d) {
            *due = Some(at);
        }
    }

    /// True when an acknowledgement only appends to the crash record (W > 0 with a record):
    /// it never waits for a store transaction or an fdatasync.
    pub fn acknowledgements_are_cheap(&self) -> bool {
        self.has_record() && !self.options.sync_interval.is_zero()
    }

    fn has_record(&self) -> bool {
        self.options.record_dir.is_some()
    }

    /// Acknowledges every change applied so far: its rows go to the crash record (or, without
    /// one, into a store transaction). With W = 0 they are also made durable. No-op when
    /// nothing changed.
    pub fn acknowledge(&self) -> FsResult<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(FsError::Io("database is closed".into()));
        }
        // A change of ours may have been taken by a concurrent acknowledgement: it is in the
        // record once we hold the lock, and (W = 0) durable once the flush below returns,
        // which waits for any flush in progress.
        'take: {
            let mut a = self.acked.lock();
            *self.ack_due.lock() = None;
            let (batch, root) = {
                let mut t = self.tree.write();
                if !t.is_dirty() {
                    break 'take;
                }
                (t.take_dirty(), t.root().clone())
            };
            if let Some(rec) = a.record.as_mut() {
                if let Err(e) = rec.append(&batch, &root) {
                    self.tree.write().mark_dirty(batch.iter().map(|(i, _)| *i));
                    error!(target: "database", "unable to append to the crash record: {e}");
                    return Err(FsError::from_io("crash record", &e));
                }
                if rec.len() > RECORD_FLUSH_BYTES {
                    a.flush_now = true;
                }
            }
            self.acks.fetch_add(1, Ordering::SeqCst);
            debug!(target: "database", "acknowledged version {} ({} rows)", root.version, batch.len());
            a.rows.extend(batch);
            a.root = Some(root);
            a.since.get_or_insert_with(Instant::now);
        }
        if self.options.sync_interval.is_zero() || !self.has_record() {
            self.flush_to_store(self.options.sync_interval.is_zero())?;
        }
        Ok(())
    }

    /// Writes every acknowledged row as one store transaction and, if `durable`, fdatasyncs
    /// the WAL and removes the record generations that are now durable.
    fn flush_to_store(&self, durable: bool) -> FsResult<()> {
        let mut p = self.persisted.lock();
        let p = &mut *p;
        let Some(store) = p.store.as_mut() else {
            return Err(FsError::Io("database is closed".into()));
        };
        let (rows, root, since, generation) = {
            let mut a = self.acked.lock();
            match a.root.clone() {
                None => (BTreeMap::new(), None, None, None),
                Some(root) => {
                    let generation = match a.record.as_mut() {
                        Some(rec) => match rec.rotate(root.version) {
                            Ok(g) => Some(g),
                            Err(e) => {
                                drop(a);
                                return Err(self.store_failed(p, "unable to start a new crash record generation", FsError::from_io("crash record", &e)));
                            }
                        },
                        None => None,
                    };
                    a.flush_now = false;
                    (std::mem::take(&mut a.rows), a.root.take(), a.since.take(), generation)
                }
            }
        };
        if let Some(root) = &root {
            let batch: Vec<(u64, Option<Entry>)> = rows.iter().map(|(i, e)| (*i, e.clone())).collect();
            if let Err(e) = store.write_transaction(&batch, root) {
                self.acked.lock().merge_back(rows, Some(root.clone()), since);
                return Err(self.store_failed(p, "store transaction failed", e.to_fs_error()));
            }
            self.transactions.fetch_add(1, Ordering::SeqCst);
            debug!(target: "database", "store transaction version {} ({} rows)", root.version, batch.len());
            p.unsynced.extend(rows);
            p.unsynced_root = Some(root.clone());
            if p.unsynced_since.is_none() {
                p.unsynced_since = since.or_else(|| Some(Instant::now()));
            }
            if generation.is_some() {
                p.covered_generation = generation;
            }
        }
        if durable && p.unsynced_root.is_some() {
            if let Err(e) = store.sync_wal() {
                // the kernel may have dropped the pages: rewrite these rows, never trust them
                let rows = std::mem::take(&mut p.unsynced);
                let since = p.unsynced_since.take();
                self.acked.lock().merge_back(rows, p.unsynced_root.take(), since);
                return Err(self.store_failed(p, "fdatasync of the WAL failed", e.to_fs_error()));
            }
            self.wal_syncs.fetch_add(1, Ordering::SeqCst);
            let large = p.unsynced.len() >= crate::memory::TRIM_AFTER_ROWS;
            p.unsynced.clear();
            if large {
                crate::memory::release_free_memory();
            }
            p.unsynced_root = None;
            p.unsynced_since = None;
            if let Some(g) = p.covered_generation.take() {
                if let Some(rec) = self.acked.lock().record.as_ref() {
                    if let Err(e) = rec.remove_through(g) {
                        warn!(target: "database", "unable to remove a durable crash record generation: {e}");
                    }
                }
            }
        }
        if p.failures > 0 && (durable || root.is_some()) {
            info!(target: "database", "store writes succeed again after {} failed attempts", p.failures);
            p.failures = 0;
            p.retry_at = None;
            *self.store_error.lock() = None;
        }
        Ok(())
    }

    /// Records a store failure: sticky until a retry succeeds, logged at every attempt.
    fn store_failed(&self, p: &mut Persisted, what: &str, e: FsError) -> FsError {
        p.failures += 1;
        self.store_failures.fetch_add(1, Ordering::SeqCst);
        let wait = Duration::from_secs(1u64 << p.failures.min(5)).min(MAX_RETRY);
        p.retry_at = Some(Instant::now() + wait);
        error!(
            target: "database",
            "{what} (attempt {}): {e} - acknowledged changes are kept in RAM{}, local changes refused, retrying in {} s",
            p.failures,
            if self.has_record() { " and in the crash record" } else { "" },
            wait.as_secs()
        );
        *self.store_error.lock() = Some(e.clone());
        e
    }

    /// Makes everything acknowledged so far durable against a power cut before it returns
    /// (fsync(2)): store transaction + fdatasync of the WAL, retrying a failed one now.
    pub fn make_durable(&self) -> FsResult<()> {
        self.flush_to_store(true)
    }

    /// Replaces the tree in RAM after a cluster resync: keeps the entries the leader's index
    /// lists, applies the leader's `updates` and checks that the result's index is
    /// byte-identical to `leader_index`. On any failure nothing changes. No I/O: the changed
    /// rows stay dirty until [`Database::persist_resync`] writes them.
    pub fn resync_tree(&self, leader_index: &[u8], updates: Vec<Entry>) -> Result<(), String> {
        if self.failed() || self.closed.load(Ordering::SeqCst) {
            return Err("database is in error state".into());
        }
        // checked in full under the READ lock: readers go on meanwhile; O(K) + one index pass
        let plan = self.tree.read().plan_resync(leader_index, updates)?;
        // applied in place under the write lock (re-planned there if the tree moved on)
        let outcome = self.tree.write().apply_resync(plan, leader_index, now_secs())?;
        for (vmid, kept, ignored) in &outcome.duplicate_vmids {
            warn!(target: "database", "detected duplicate VMID {vmid}: '{kept}' and '{ignored}' (using the first)");
        }
        info!(target: "database", "resync: {} entries written, {} deleted, version {}", outcome.written, outcome.deleted.len(), self.tree.read().version());
        Ok(())
    }

    /// Writes the tree after [`Database::resync_tree`] — its changed rows with everything
    /// acknowledged before — as ONE store transaction and makes it durable; the crash record
    /// restarts after it. The tree's write lock is held only to take the rows, never during
    /// the store I/O. A failure stops the database for good ([`Database::failed`]).
    pub fn persist_resync(&self) -> Result<(), String> {
        let mut p = self.persisted.lock();
        let p = &mut *p;
        let mut a = self.acked.lock();
        let (batch, root) = {
            let mut tree = self.tree.write();
            (tree.take_dirty(), tree.root().clone())
        };
        // rows acknowledged before the resync go into the same transaction; newer rows win
        let mut rows = std::mem::take(&mut a.rows);
        rows.extend(batch);
        let since = a.since.take();
        a.root = None;
        a.flush_now = false;
        let put_back = |a: &mut Acknowledged, rows: BTreeMap<u64, Option<Entry>>| {
            a.merge_back(rows, Some(root.clone()), since);
        };
        let Some(store) = p.store.as_mut() else {
            put_back(&mut a, rows);
            return Err("database is closed".into());
        };
        let generation = match a.record.as_mut() {
            Some(rec) => match rec.rotate(root.version) {
                Ok(g) => Some(g),
                Err(e) => {
                    put_back(&mut a, rows);
                    return Err(format!("crash record: {e}"));
                }
            },
            None => None,
        };
        let batch: Vec<(u64, Option<Entry>)> = rows.iter().map(|(i, e)| (*i, e.clone())).collect();
        if let Err(e) = store.write_transaction(&batch, &root).and_then(|_| store.sync_wal()) {
            // RAM already holds the leader's tree: its rows wait to be written again
            self.failed.store(true, Ordering::SeqCst);
            put_back(&mut a, rows);
            return Err(format!("resync store transaction failed: {e}"));
        }
        self.transactions.fetch_add(1, Ordering::SeqCst);
        self.wal_syncs.fetch_add(1, Ordering::SeqCst);
        // the fdatasync also covered earlier store transactions that were not yet durable
        p.unsynced.clear();
        p.unsynced_root = None;
        p.unsynced_since = None;
        let covered = generation.max(p.covered_generation.take());
        if let (Some(g), Some(rec)) = (covered, a.record.as_ref()) {
            let _ = rec.remove_through(g);
        }
        debug!(target: "database", "resync store transaction version {} ({} rows)", root.version, batch.len());
        drop((a, p, batch, rows));
        crate::memory::release_free_memory();
        Ok(())
    }

    /// Switches the store between exclusive and shared locking as [`Sharing`] decides.
    fn adjust_locking(&self) {
        let Some(sharing) = &self.sharing else { return };
        let Some(current) = self.persisted.lock().store.as_ref().map(Store::locking) else { return };
        let Some((to, why)) = sharing.decide(current) else { return };
        let mut p = self.persisted.lock();
        let Some(store) = p.store.as_mut() else { return };
        sharing.reopening(to);
        match store.reopen(to) {
            Ok(()) => info!(target: "database", "{why}"),
            Err(e) => warn!(target: "database", "unable to reopen the database ({why}): {e}"),
        }
        // only now are held opens let go on: they find the database shared and logged so
        sharing.reopened(store.locking());
    }

    /// One round of background work (about every 50 ms): due group acknowledgements, and the
    /// store transaction + fdatasync once the oldest acknowledged change waited W (or the
    /// record grew too big); failed ones are retried after their back-off.
    pub fn maintenance(&self) {
        self.adjust_locking();
        let now = Instant::now();
        if self.ack_due.lock().is_some_and(|d| now >= d) {
            if let Err(e) = self.acknowledge() {
                warn!(target: "database", "group acknowledgement failed: {e}");
            }
        }
        let (oldest, flush_now) = {
            let a = self.acked.lock();
            (a.since, a.flush_now)
        };
        let (unsynced_since, retry_at) = {
            let p = self.persisted.lock();
            (p.unsynced_since, p.retry_at)
        };
        let oldest = match (oldest, unsynced_since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let due = flush_now || oldest.is_some_and(|t| now >= t + self.options.sync_interval);
        if due && retry_at.is_none_or(|r| now >= r) {
            // failures are logged and made sticky inside
            let _ = self.flush_to_store(true);
        }
    }

    /// Starts the background thread that runs [`Database::maintenance`]. It stops when
    /// `stop` is set.
    pub fn spawn_maintenance(self: &Arc<Self>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        let db = self.clone();
        std::thread::Builder::new()
            .name("db-maintenance".into())
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                    db.maintenance();
                }
            })
            .expect("spawn maintenance thread")
    }

    /// Clean stop: acknowledges and writes everything, checkpoints the WAL into `config.db`
    /// and closes the connection (no `-wal`/`-shm` left), then removes the crash record. If
    /// the last store transaction fails, the record stays for the next start. Later calls
    /// (and changes) are refused.
    pub fn close(&self) -> FsResult<()> {
        let written = self.acknowledge().and_then(|_| self.flush_to_store(true));
        let mut p = self.persisted.lock();
        self.closed.store(true, Ordering::SeqCst);
        let Some(store) = p.store.take() else {
            return Ok(());
        };
        if let Err(e) = &written {
            error!(target: "database", "last store transaction failed: {e} - the crash record is kept for the next start");
            return written;
        }
        let closed = store.close();
        if let Err(e) = &closed {
            warn!(target: "database", "checkpoint at close failed: {e} (the WAL keeps the changes)");
        }
        if let Some(rec) = self.acked.lock().record.take() {
            if let Err(e) = rec.remove_all() {
                warn!(target: "database", "unable to remove the crash record: {e}");
            }
        }
        closed.map_err(|e| e.to_fs_error())
    }

    pub fn stats(&self) -> DbStats {
        let (pending_rows, record_bytes, acked_dirty) = {
            let a = self.acked.lock();
            (a.rows.len(), a.record.as_ref().map_or(0, |r| r.len()), a.root.is_some())
        };
        let (unsynced, db_exclusive) = {
            let p = self.persisted.lock();
            (p.unsynced.len() + usize::from(p.unsynced_root.is_some()), p.store.as_ref().is_some_and(|s| s.locking() == Locking::Exclusive))
        };
        let t = self.tree.read();
        DbStats {
            version: t.version(),
            commits: self.acks.load(Ordering::SeqCst),
            store_transactions: self.transactions.load(Ordering::SeqCst),
            wal_syncs: self.wal_syncs.load(Ordering::SeqCst),
            dirty: t.is_dirty() || acked_dirty || unsynced > 0,
            pending_rows: pending_rows + unsynced,
            record_bytes,
            failed: self.failed(),
            store_error: self.store_error().map(|e| e.to_string()),
            store_failures: self.store_failures.load(Ordering::SeqCst),
            entries: t.len(),
            db_exclusive,
            db_exclusive_when_alone: self.sharing.is_some(),
        }
    }

    /// `PRAGMA integrity_check` of the open database.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        match self.persisted.lock().store.as_ref() {
            Some(s) => s.integrity_check(),
            None => Ok("closed".into()),
        }
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
    /// Ok with [`Durability::Now`] = acknowledged.
    fn submit(&self, op: Op, durability: Durability) -> FsResult<u64>;
    /// Acknowledges every applied change (close, rename, fsync): from its return on, a
    /// daemon crash loses none of them. Power-cut durability: [`Database::make_durable`].
    fn acknowledge(&self) -> FsResult<()>;
    /// An unlock request for the lock directory `path` whose checksum is `csum`: returns
    /// true if the lock was found expired and removed.
    fn unlock_request(&self, path: &str, csum: [u8; 32]) -> FsResult<bool>;
    /// Writable (quorate) right now.
    fn quorate(&self) -> bool;
    /// True when a submit may wait for the network or for the disk (the caller then keeps
    /// it off any thread that serves other requests).
    fn may_wait(&self) -> bool {
        true
    }
}

/// Local mode: every change is applied directly with writer 0 and the local clock.
pub struct LocalSink {
    pub db: Arc<Database>,
}

impl ChangeSink for LocalSink {
    fn submit(&self, op: Op, durability: Durability) -> FsResult<u64> {
        self.db.check_writable()?;
        self.db.apply(&op, Stamp { writer: 0, mtime: now_secs() }, durability)
    }

    fn acknowledge(&self) -> FsResult<()> {
        self.db.acknowledge()
    }

    fn unlock_request(&self, path: &str, csum: [u8; 32]) -> FsResult<bool> {
        let expired = self.db.with_tree_mut(|t| t.lock_expired(path, &csum, now_secs()));
        if !expired {
            return Ok(false);
        }
        self.submit(Op::Unlock { path: path.to_string(), csum }, Durability::Now)?;
        info!(target: "database", "removed expired lock '{path}'");
        Ok(true)
    }

    fn quorate(&self) -> bool {
        true
    }

    fn may_wait(&self) -> bool {
        !self.db.acknowledgements_are_cheap()
    }
}
