//! What every request handler shares: configuration, the open-file table, the worker pool,
//! attribute building, and the commit points that turn an inode's pending content into
//! changes for the [`ChangeSink`].
//!
//! Lock order: `namespace` → `files` → the tree's lock. The tree lock is never held while
//! `files` is taken.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fuser::FileAttr;
use parking_lot::Mutex;
use pmxcfs_backend::path::join;
use pmxcfs_backend::{ChangeSink, Database, Durability, Entry, FsError, FsResult, Op};
use tracing::{debug, warn};

use crate::attrs::{self, Owner};
use crate::crash_copy::CrashCopies;
use crate::inodes;
use crate::open_files::{CommitTake, Loaded, OpenFiles};
use crate::special::{Special, VirtualFiles};
use crate::workers::Workers;

/// Default cap on the sum of pending contents (see docs/crash-safety.md).
pub const DEFAULT_PENDING_CAP: u64 = 32 * 1024 * 1024;

/// Request counters (exposed through the daemon's stats file).
#[derive(Debug, Default)]
pub struct FsCounters {
    /// FUSE write requests received.
    pub write_requests: std::sync::atomic::AtomicU64,
    /// Largest single write request, in bytes.
    pub max_write_bytes: std::sync::atomic::AtomicU64,
}

/// What the filesystem needs from the daemon.
pub struct FsConfig {
    pub nodename: String,
    /// gid of `www-data`.
    pub gid: u32,
    pub db: Arc<Database>,
    pub sink: Arc<dyn ChangeSink>,
    pub virtual_files: Arc<dyn VirtualFiles>,
    pub counters: Arc<FsCounters>,
    /// Directory of the crash copies of pending content (None: no copies).
    pub crash_copy_dir: Option<std::path::PathBuf>,
    /// Past this many pending bytes the largest pending content is committed early.
    pub pending_cap: u64,
    /// Serve over FUSE's io_uring transport when the kernel offers it ([`crate::ring`]).
    pub io_uring: bool,
}

/// Everything the request handlers share.
pub(crate) struct Core {
    pub cfg: FsConfig,
    pub specials: Vec<Special>,
    pub files: Mutex<OpenFiles>,
    pub owner: Owner,
    pub workers: Workers,
    /// Serializes local namespace changes and commits, so a path resolved for an inode is
    /// still that inode's path when the change is applied.
    pub namespace: Mutex<()>,
    early_commit_queued: AtomicBool,
}

impl Core {
    pub fn new(cfg: FsConfig, specials: Vec<Special>) -> Core {
        let owner = Owner { gid: cfg.gid };
        let copies = CrashCopies::new(cfg.crash_copy_dir.clone());
        Core {
            cfg,
            specials,
            files: Mutex::new(OpenFiles::new(copies)),
            owner,
            workers: Workers::new(crate::workers::default_size()),
            namespace: Mutex::new(()),
            early_commit_queued: AtomicBool::new(false),
        }
    }

    pub fn special_index(&self, name: &str) -> Option<usize> {
        self.specials.iter().position(|s| s.name() == name)
    }

    pub fn virtual_text(&self, name: &str) -> Vec<u8> {
        self.cfg.virtual_files.read(name).unwrap_or_default()
    }

    pub fn special_attr(&self, idx: usize) -> FileAttr {
        let ino = inodes::from_special(idx);
        match &self.specials[idx] {
            Special::Symlink { target, .. } => attrs::symlink_attr(ino, target.len(), self.cfg.sink.quorate(), self.owner),
            Special::Virtual(v) => attrs::virtual_attr(ino, v.mode, self.virtual_text(v.name).len(), self.owner),
        }
    }

    /// Attributes of a tree inode, with its pending content's size and mtime; an inode
    /// that left the tree while open is shown with nlink 0.
    pub fn tree_attr(&self, tree_ino: u64) -> FsResult<FileAttr> {
        let (overlay, orphan_path) = {
            let files = self.files.lock();
            (files.overlay(tree_ino), files.orphan(tree_ino).map(|o| o.path.clone()))
        };
        let quorate = self.cfg.sink.quorate();
        let ino = inodes::from_tree(tree_ino);
        let t = self.cfg.db.tree();
        match (t.get(tree_ino), t.path_of(tree_ino)) {
            (Some(e), Some(path)) if orphan_path.is_none() => Ok(attrs::entry_attr(ino, e, &path, quorate, overlay, self.owner)),
            _ => {
                let path = orphan_path.ok_or(FsError::NotFound)?;
                drop(t);
                let name = path.rsplit('/').next().unwrap_or(&path);
                let e = Entry::new_file(tree_ino, 0, name, &[][..]);
                Ok(attrs::entry_attr(ino, &e, &path, quorate, overlay, self.owner))
            }
        }
    }

    /// The tree's content of `inode` and where it lives: what a pending content starts from.
    pub fn load(&self, inode: u64) -> Loaded {
        let t = self.cfg.db.tree();
        match t.get(inode) {
            Some(e) => (e.data().to_vec(), Some((e.parent, e.name.to_string()))),
            None => (Vec::new(), None),
        }
    }

    /// Submits the changes of one commit: the whole content, then the explicit mtime. Only
    /// the last carries `last`; the earlier ones are applied but left to the same commit.
    fn submit_take(&self, path: &str, take: &CommitTake, last: Durability) -> FsResult<()> {
        let mut ops = Vec::new();
        if let Some(data) = &take.content {
            ops.push(Op::Write { path: path.to_string(), offset: 0, data: data.clone(), truncate: true });
        }
        if let Some(mtime) = take.mtime {
            ops.push(Op::SetMtime { path: path.to_string(), mtime });
        }
        if ops.is_empty() {
            // a new file closed without writes: its create was folded into this point
            return if last == Durability::Deferred { Ok(()) } else { self.cfg.sink.acknowledge() };
        }
        let n = ops.len();
        for (i, op) in ops.into_iter().enumerate() {
            let d = if i + 1 == n { last } else { Durability::Deferred };
            self.cfg.sink.submit(op, d)?;
        }
        Ok(())
    }

    /// Commit point of `inode`: its pending content (and create, and explicit mtime) becomes
    /// one change, acknowledged before this returns. Changes made meanwhile stay pending.
    pub fn commit_inode(&self, inode: u64) -> FsResult<()> {
        let _ns = self.namespace.lock();
        let Some(take) = self.files.lock().take_for_commit(inode) else { return Ok(()) };
        let path = self.cfg.db.tree().path_of(inode);
        let Some(path) = path else {
            // Another node removed the file meanwhile: like a local unlink, the open
            // descriptors keep the content, the tree does not get it back.
            warn!(target: "fuse", "pending content of inode {inode} dropped: the file was removed by another node");
            self.files.lock().orphan_inode(inode, format!("(removed inode {inode})"), Vec::new);
            return Ok(());
        };
        self.submit_take(&path, &take, Durability::Now)?;
        self.files.lock().committed(inode, &take);
        Ok(())
    }

    /// Commit at a release that no writer waits for: a failure is logged with the path and
    /// the content stays pending (and in its crash copy) for the next commit point.
    pub fn commit_at_release(&self, inode: u64) {
        if let Err(e) = self.commit_inode(inode) {
            warn!(target: "fuse", "commit of '{}' at close failed: {e} - content kept pending, retried at the next commit point", self.path_for_log(inode));
        }
    }

    /// The path of `inode` for a log line (its number once it left the tree).
    fn path_for_log(&self, inode: u64) -> String {
        self.cfg.db.tree().path_of(inode).unwrap_or_else(|| format!("inode {inode}"))
    }

    /// Commits every pending content (shutdown). Returns the first error.
    pub fn commit_all(&self) -> FsResult<()> {
        let inodes = self.files.lock().dirty_inodes();
        let mut first = Ok(());
        for inode in inodes {
            if let Err(e) = self.commit_inode(inode) {
                warn!(target: "fuse", "commit of pending content of '{}' failed: {e}", self.path_for_log(inode));
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// rename: the source's pending content goes into the same commit as the rename; an
    /// open target becomes an orphan its descriptors keep.
    pub fn rename(&self, from: &str, to: &str, noreplace: bool) -> FsResult<()> {
        let _ns = self.namespace.lock();
        let (src, target) = {
            let t = self.cfg.db.tree();
            (t.lookup(from).map(|e| e.inode), t.lookup(to).map(|e| (e.inode, e.is_dir())))
        };
        if noreplace && target.is_some() {
            return Err(FsError::Exists);
        }
        let dst = target.filter(|(_, is_dir)| !is_dir).map(|(i, _)| i);
        let take = src.and_then(|i| self.files.lock().take_for_commit(i));
        if let Some(take) = &take {
            self.submit_take(from, take, Durability::Deferred)?;
        }
        let dst_open = dst.filter(|d| Some(*d) != src && self.files.lock().state(*d).is_some_and(|s| s.handles > 0));
        let dst_snapshot = dst_open.map(|d| self.load(d).0);
        match self.cfg.sink.submit(Op::Rename { from: from.to_string(), to: to.to_string() }, Durability::Now) {
            Ok(_) => {
                let mut files = self.files.lock();
                if let (Some(s), Some(take)) = (src, &take) {
                    files.committed(s, take);
                }
                if let Some(d) = dst {
                    files.orphan_inode(d, to.to_string(), || dst_snapshot.unwrap_or_default());
                }
                Ok(())
            }
            Err(e) => {
                if let (Some(s), Some(take)) = (src, &take) {
                    // the content was applied for the rename: commit it on its own
                    if self.cfg.sink.acknowledge().is_ok() {
                        self.files.lock().committed(s, take);
                    }
                }
                Err(e)
            }
        }
    }

    /// unlink/rmdir: an open file becomes an orphan its descriptors keep.
    pub fn delete(&self, path: &str) -> FsResult<()> {
        let _ns = self.namespace.lock();
        let inode = self.cfg.db.tree().lookup(path).map(|e| e.inode);
        let open = inode.filter(|i| self.files.lock().state(*i).is_some());
        let snapshot = open.map(|i| self.load(i).0);
        self.cfg.sink.submit(Op::Delete { path: path.to_string() }, Durability::Now)?;
        if let Some(i) = open {
            self.files.lock().orphan_inode(i, path.to_string(), || snapshot.unwrap_or_default());
        }
        Ok(())
    }

    /// Creates `name` in directory `parent` (its create is folded into the first commit
    /// point) and opens it.
    pub fn create(&self, parent: u64, name: &str, path: &str, handle: crate::open_files::Handle) -> FsResult<(u64, u64)> {
        let _ns = self.namespace.lock();
        self.cfg.sink.submit(Op::Create { path: path.to_string() }, Durability::Deferred)?;
        let inode = self.cfg.db.tree().lookup(path).map(|e| e.inode).ok_or(FsError::NotFound)?;
        let mut files = self.files.lock();
        let fh = files.open(crate::open_files::Handle { inode, wrote: true, ..handle });
        files.mark_created(inode, (parent, name.to_string()));
        Ok((inode, fh))
    }

    /// `fsync`: every change acknowledged so far is made durable before this returns.
    pub fn make_acknowledged_durable(&self) -> FsResult<()> {
        self.cfg.sink.acknowledge()?;
        self.cfg.db.make_durable()?;
        Ok(())
    }

    /// Submits one namespace change under the namespace lock.
    pub fn submit(&self, op: Op) -> FsResult<u64> {
        let _ns = self.namespace.lock();
        self.cfg.sink.submit(op, Durability::Now)
    }

    /// Runs a request that changes something: on the FUSE thread when the sink never waits
    /// (local mode, acknowledgements go to the tmpfs record), else on the worker pool so
    /// readers are never queued behind corosync or the disk.
    pub fn run_change(&self, job: impl FnOnce() + Send + 'static) {
        if self.cfg.sink.may_wait() {
            self.workers.run(job)
        } else {
            job()
        }
    }

    /// Past the cap, commits the largest pending content on a worker (once at a time).
    pub fn enforce_pending_cap(self: &Arc<Self>) {
        let over = self.files.lock().pending_bytes() > self.cfg.pending_cap;
        if !over || self.early_commit_queued.swap(true, Ordering::SeqCst) {
            return;
        }
        let core = self.clone();
        self.workers.run(move || {
            while core.files.lock().pending_bytes() > core.cfg.pending_cap {
                let Some(inode) = core.files.lock().largest_pending() else { break };
                debug!(target: "fuse", "pending content over the cap: committing inode {inode} early");
                if core.commit_inode(inode).is_err() {
                    break;
                }
            }
            core.early_commit_queued.store(false, Ordering::SeqCst);
        });
    }

    /// Path of `name` inside directory `parent` (tree entries only).
    pub fn child_path(&self, parent_tree: u64, name: &str) -> FsResult<String> {
        let dir = self.cfg.db.tree().path_of(parent_tree).ok_or(FsError::NotFound)?;
        if parent_tree == 0 && self.special_index(name).is_some() {
            return Err(FsError::AccessDenied);
        }
        Ok(join(&dir, name))
    }
}

/// Commits every pending content from outside the FUSE session (shutdown, even while the
/// mount is busy).
#[derive(Clone)]
pub struct PendingCommitter(pub(crate) Arc<Core>);

impl PendingCommitter {
    pub fn commit_all(&self) -> FsResult<()> {
        self.0.commit_all()
    }

}
