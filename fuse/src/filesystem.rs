//! The `fuser::Filesystem` implementation: one method per kernel request. Reads are served
//! on the FUSE thread from the tree and the open-file table; requests that change something
//! run on the worker pool ([`crate::workers`]) through [`Core`]'s commit points.

use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{consts, FileAttr, FileType, Filesystem, KernelConfig, MountOption, Request, TimeOrNow};
use pmxcfs_backend::path::{is_lock_dir_path, is_private};
use pmxcfs_backend::{now_secs, FsError, FsResult, Name, Op};
use tracing::{debug, warn};

pub use crate::core::{FsConfig, FsCounters, PendingCommitter, DEFAULT_PENDING_CAP};
use crate::core::Core;
use crate::handles::tgid_of;
use crate::inodes::{self, Ino};
use crate::open_files::Handle;
use crate::reply::{ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite};
use crate::ring::{self, RingSetup};
use crate::special::{special_entries, Special};

/// Attribute/entry cache time of tree entries (libfuse 2's default, as the original).
const TTL: Duration = Duration::from_secs(1);
/// Virtual files are regenerated on every getattr: never cache them.
const TTL_NONE: Duration = Duration::from_secs(0);
/// `FOPEN_NOFLUSH` (Linux 5.16+, not in fuser's ABI table): the kernel sends no FLUSH when a
/// descriptor of this open is closed. Given to read-only opens, where a flush has nothing
/// to commit (one request less per `cat`; older kernels ignore the bit).
const FOPEN_NOFLUSH: u32 = 1 << 5;

/// The reply flags of an open: `direct_io` for every file (as the original), and no FLUSH
/// for a read-only one.
fn open_flags(writing: bool) -> u32 {
    if writing {
        consts::FOPEN_DIRECT_IO
    } else {
        consts::FOPEN_DIRECT_IO | FOPEN_NOFLUSH
    }
}
/// Largest write the kernel may send in one request (1 MiB = the file size limit).
const MAX_WRITE: u32 = 1024 * 1024;

/// Mount options of the original: default_permissions, allow_other.
pub fn mount_options() -> Vec<MountOption> {
    vec![
        MountOption::FSName("pmxcfs".into()),
        MountOption::Subtype("pmxcfs".into()),
        MountOption::DefaultPermissions,
        MountOption::AllowOther,
        MountOption::NoDev,
        MountOption::NoSuid,
    ]
}

/// The mounted filesystem: a thin `fuser::Filesystem` front over [`Handlers`].
pub struct PmxcfsFs {
    handlers: Handlers,
    ring: Arc<RingSetup>,
}

/// The request handlers, one per kernel request kind, called by the `/dev/fuse` session
/// (through [`PmxcfsFs`]) and by the io_uring queues ([`crate::ring`]) alike. `pid` is the
/// calling thread's id.
#[derive(Clone)]
pub(crate) struct Handlers {
    core: Arc<Core>,
}

fn err(e: &FsError) -> i32 {
    e.errno()
}

/// A name from the kernel: bytes, as in the original (non-UTF-8 names included, see
/// [`pmxcfs_backend::name_bytes`]).
fn name_str(name: &OsStr) -> FsResult<std::borrow::Cow<'_, str>> {
    if name.len() > pmxcfs_backend::path::MAX_NAME_LEN {
        return Err(FsError::NameTooLong);
    }
    Ok(pmxcfs_backend::name_bytes::decode(name.as_bytes()))
}

/// An internal name as the kernel must see it.
fn kernel_name(name: &str) -> std::ffi::OsString {
    std::ffi::OsString::from_vec(pmxcfs_backend::name_bytes::encode(name).into_owned())
}

fn secs(t: TimeOrNow) -> u32 {
    match t {
        TimeOrNow::Now => now_secs(),
        TimeOrNow::SpecificTime(st) => st.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0),
    }
}

fn slice(data: &[u8], offset: usize, size: u32) -> Vec<u8> {
    if offset >= data.len() {
        Vec::new()
    } else {
        data[offset..data.len().min(offset + size as usize)].to_vec()
    }
}

impl PmxcfsFs {
    pub fn new(cfg: FsConfig) -> PmxcfsFs {
        let specials = special_entries(&cfg.nodename);
        let ring = Arc::new(RingSetup::new(cfg.io_uring));
        PmxcfsFs { handlers: Handlers { core: Arc::new(Core::new(cfg, specials)) }, ring }
    }

    /// Where the session's `/dev/fuse` descriptor is handed over once mounted, so that the
    /// INIT handler can start the io_uring queues on it.
    pub fn ring_setup(&self) -> Arc<RingSetup> {
        self.ring.clone()
    }

    /// A handle that commits every pending content (for shutdown).
    pub fn committer(&self) -> PendingCommitter {
        PendingCommitter(self.handlers.core.clone())
    }
}

impl Core {
    /// Tree path of a kernel inode that names a tree entry.
    fn tree_path(&self, ino: u64) -> FsResult<(u64, String)> {
        match inodes::classify(ino) {
            Ino::Tree(t) => self.cfg.db.tree().path_of(t).map(|p| (t, p)).ok_or(FsError::NotFound),
            Ino::Special(_) => Err(FsError::AccessDenied),
        }
    }

    /// Path of `name` inside kernel directory `parent`.
    fn kernel_child_path(&self, parent: u64, name: &OsStr) -> FsResult<(u64, String)> {
        let name = name_str(name)?;
        let Ino::Tree(pino) = inodes::classify(parent) else { return Err(FsError::AccessDenied) };
        self.child_path(pino, &name).map(|p| (pino, p))
    }

    fn attr_of(&self, ino: u64) -> FsResult<(FileAttr, Duration)> {
        match inodes::classify(ino) {
            Ino::Special(i) if i < self.specials.len() => Ok((self.special_attr(i), TTL_NONE)),
            Ino::Special(_) => Err(FsError::NotFound),
            Ino::Tree(t) => Ok((self.tree_attr(t)?, TTL)),
        }
    }

    fn entry_reply(&self, tree_ino: u64, reply: ReplyEntry) {
        match self.tree_attr(tree_ino) {
            Ok(a) => reply.entry(&TTL, &a, 0),
            Err(e) => reply.error(e.errno()),
        }
    }

    /// True if the FLUSH of `fh` by thread `tid` is the close of a copy inherited by another
    /// process (fork + exec): such a close does not commit. Only /proc is read, and only
    /// when a thread other than the opener flushes a handle that wrote.
    fn inherited_flush(&self, opener_tid: Option<u32>, tid: u32) -> bool {
        let Some(opener) = opener_tid else { return false };
        if opener == tid {
            return false;
        }
        match (tgid_of(opener), tgid_of(tid)) {
            (Some(a), Some(b)) => a != b,
            _ => false,
        }
    }
}

/// What a SETATTR asks to change (None: leave it); the times the kernel sends beside these
/// (ctime, and macOS's crtime/chgtime/bkuptime) are not kept by the tree.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
    pub fh: Option<u64>,
}

// The handlers take the request's fields one by one, as fuser's `Filesystem` does.
#[allow(clippy::too_many_arguments)]
impl Handlers {
    pub(crate) fn lookup(&self, _pid: u32, parent: u64, name: &OsStr, reply: ReplyEntry) {
        if name.len() > pmxcfs_backend::path::MAX_NAME_LEN {
            return reply.error(FsError::NameTooLong.errno());
        }
        let Ok(name) = name_str(name) else { return reply.error(FsError::NotFound.errno()) };
        if parent == fuser::FUSE_ROOT_ID {
            if let Some(i) = self.core.special_index(&name) {
                return reply.entry(&TTL_NONE, &self.core.special_attr(i), 0);
            }
        }
        let Ino::Tree(pino) = inodes::classify(parent) else { return reply.error(FsError::NotADirectory.errno()) };
        let child = self.core.cfg.db.tree().lookup_child(pino, &name).map(|e| e.inode);
        match child {
            Some(c) => self.core.entry_reply(c, reply),
            None => reply.error(FsError::NotFound.errno()),
        }
    }

    pub(crate) fn getattr(&self, _pid: u32, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.core.attr_of(ino) {
            Ok((a, ttl)) => reply.attr(&ttl, &a),
            Err(e) => reply.error(e.errno()),
        }
    }

    pub(crate) fn setattr(&self, _pid: u32, ino: u64, set: SetAttr, reply: ReplyAttr) {
        let SetAttr { mode, uid, gid, size, atime, mtime, fh } = set;
        if let Ino::Special(i) = inodes::classify(ino) {
            // Virtual files: truncate is accepted only on writable ones; nothing else is.
            let writable = matches!(self.core.specials.get(i), Some(Special::Virtual(v)) if v.writable);
            if size.is_some() && !writable {
                return reply.error(FsError::Io("not possible on this entry".into()).errno());
            }
            return match self.core.attr_of(ino) {
                Ok((a, ttl)) => reply.attr(&ttl, &a),
                Err(e) => reply.error(e.errno()),
            };
        }
        let Ino::Tree(tree_ino) = inodes::classify(ino) else { return reply.error(FsError::NotFound.errno()) };
        let orphan = self.core.files.lock().orphan(tree_ino).map(|o| o.path.clone());
        let path = match orphan {
            Some(p) => p,
            None => match self.core.tree_path(ino) {
                Ok((_, p)) => p,
                Err(e) => return reply.error(e.errno()),
            },
        };
        // chmod: accepted (and ignored) only for the mode the path already has.
        if let Some(m) = mode {
            let want = if is_private(&path) { 0o600 } else { 0o640 };
            if m & 0o7777 != want {
                return reply.error(FsError::NotPermitted.errno());
            }
        }
        // chown: only to root:www-data (or unchanged).
        if uid.is_some_and(|u| u != 0) || gid.is_some_and(|g| g != self.core.cfg.gid) {
            return reply.error(FsError::NotPermitted.errno());
        }
        // utimens: like libfuse 2, only when both times are given.
        let new_mtime = match (atime, mtime) {
            (Some(_), Some(m)) => Some(secs(m)),
            _ => None,
        };
        if size.is_none() && new_mtime.is_none() {
            return match self.core.tree_attr(tree_ino) {
                Ok(a) => reply.attr(&TTL, &a),
                Err(e) => reply.error(e.errno()),
            };
        }
        if !self.core.cfg.sink.quorate() {
            return reply.error(FsError::AccessDenied.errno());
        }
        let core = self.core.clone();
        self.core.run_change(move || {
            if let Some(size) = size {
                // An open inode's truncate changes its shared pending content; truncate(path)
                // (no handle) is a commit point of its own, as before.
                let open = core.files.lock().state(tree_ino).is_some();
                let result = if open || fh.is_some() {
                    let r = core.files.lock().truncate(tree_ino, fh, size, || core.load(tree_ino));
                    r.and_then(|_| if fh.is_none() { core.commit_inode(tree_ino) } else { Ok(()) })
                } else if size > pmxcfs_backend::MAX_FILE_SIZE {
                    Err(FsError::FileTooBig)
                } else {
                    core.submit(Op::Write { path: path.clone(), offset: size, data: Vec::new(), truncate: true }).map(|_| ())
                };
                if let Err(e) = result {
                    return reply.error(err(&e));
                }
            }
            if let Some(mtime) = new_mtime {
                let is_dir = core.cfg.db.tree().get(tree_ino).map(|e| e.is_dir());
                if mtime == 0 && is_dir == Some(true) && is_lock_dir_path(&path) {
                    let csum = core.cfg.db.tree().lock_csum(&path);
                    if let Some(csum) = csum {
                        match core.cfg.sink.unlock_request(&path, csum) {
                            Ok(true) => {
                                // The lock is gone; the original reports success.
                                return match core.attr_of(fuser::FUSE_ROOT_ID) {
                                    Ok((a, _)) => reply.attr(&TTL_NONE, &a),
                                    Err(e) => reply.error(e.errno()),
                                };
                            }
                            Ok(false) => {}
                            Err(e) => return reply.error(err(&e)),
                        }
                    }
                }
                // with pending content the time travels with the content's commit
                let travels = core.files.lock().set_mtime(tree_ino, mtime);
                if !travels {
                    if let Err(e) = core.submit(Op::SetMtime { path: path.clone(), mtime }) {
                        return reply.error(err(&e));
                    }
                }
            }
            match core.tree_attr(tree_ino) {
                Ok(a) => reply.attr(&TTL, &a),
                Err(e) => reply.error(e.errno()),
            }
        });
    }

    pub(crate) fn readlink(&self, _pid: u32, ino: u64, reply: ReplyData) {
        match inodes::classify(ino) {
            Ino::Special(i) => match self.core.specials.get(i) {
                Some(Special::Symlink { target, .. }) => reply.data(target.as_bytes()),
                _ => reply.error(FsError::Invalid.errno()),
            },
            Ino::Tree(_) => reply.error(FsError::AccessDenied.errno()),
        }
    }

    pub(crate) fn mknod(&self, _pid: u32, _parent: u64, _name: &OsStr, mode: u32, _umask: u32, _rdev: u32, reply: ReplyEntry) {
        warn!(target: "fuse", "refusing mknod (mode {mode:o}): special files are not supported");
        reply.error(FsError::NotImplemented.errno());
    }

    pub(crate) fn mkdir(&self, _pid: u32, parent: u64, name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        let path = match self.core.kernel_child_path(parent, name) {
            Ok((_, p)) => p,
            Err(e) => return reply.error(e.errno()),
        };
        let core = self.core.clone();
        self.core.run_change(move || match core.submit(Op::Mkdir { path: path.clone() }) {
            Ok(_) => {
                // take the inode and drop the tree lock before entry_reply locks again
                let ino = core.cfg.db.tree().lookup(&path).map(|e| e.inode);
                match ino {
                    Some(i) => core.entry_reply(i, reply),
                    None => reply.error(FsError::NotFound.errno()),
                }
            }
            Err(e) => reply.error(err(&e)),
        });
    }

    pub(crate) fn unlink(&self, _pid: u32, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        match self.core.kernel_child_path(parent, name) {
            Ok((_, path)) => {
                let core = self.core.clone();
                self.core.run_change(move || match core.delete(&path) {
                    Ok(()) => reply.ok(),
                    Err(e) => reply.error(err(&e)),
                });
            }
            Err(e) => reply.error(e.errno()),
        }
    }

    pub(crate) fn rmdir(&self, pid: u32, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.unlink(pid, parent, name, reply)
    }

    pub(crate) fn symlink(&self, _pid: u32, _parent: u64, link_name: &OsStr, _target: &std::path::Path, reply: ReplyEntry) {
        warn!(target: "fuse", "refusing symlink {link_name:?}: symlinks are not supported");
        reply.error(FsError::NotImplemented.errno());
    }

    pub(crate) fn rename(&self, _pid: u32, parent: u64, name: &OsStr, newparent: u64, newname: &OsStr, flags: u32, reply: ReplyEmpty) {
        if flags & libc::RENAME_EXCHANGE != 0 {
            return reply.error(FsError::Invalid.errno());
        }
        let (from, to) = match (self.core.kernel_child_path(parent, name), self.core.kernel_child_path(newparent, newname)) {
            (Ok((_, f)), Ok((_, t))) => (f, t),
            (Err(e), _) | (_, Err(e)) => return reply.error(e.errno()),
        };
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        let core = self.core.clone();
        self.core.run_change(move || match core.rename(&from, &to, noreplace) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(&e)),
        });
    }

    pub(crate) fn link(&self, _pid: u32, _ino: u64, _newparent: u64, _newname: &OsStr, reply: ReplyEntry) {
        reply.error(FsError::NotImplemented.errno());
    }

    pub(crate) fn open(&self, pid: u32, ino: u64, flags: i32, reply: ReplyOpen) {
        match inodes::classify(ino) {
            Ino::Special(i) => match self.core.specials.get(i) {
                Some(Special::Virtual(v)) => {
                    // O_TRUNC arrives with the open (atomic_o_trunc); the original's libfuse
                    // truncates first, which only writable virtual files accept.
                    if flags & libc::O_TRUNC != 0 && !v.writable {
                        return reply.error(FsError::Io("not possible on this entry".into()).errno());
                    }
                    let text = self.core.virtual_text(v.name);
                    let fh = self.core.files.lock().open(Handle { virtual_text: Some(text), virtual_name: Some(v.name), ..Default::default() });
                    let writing = flags & libc::O_ACCMODE != libc::O_RDONLY;
                    reply.opened(fh, open_flags(writing))
                }
                _ => reply.error(FsError::AccessDenied.errno()),
            },
            Ino::Tree(t) => {
                let orphan = self.core.files.lock().orphan(t).is_some();
                let is_file = if orphan { Some(true) } else { self.core.cfg.db.tree().get(t).map(|e| !e.is_dir()) };
                match is_file {
                    None => reply.error(FsError::NotFound.errno()),
                    Some(false) => reply.error(FsError::IsADirectory.errno()),
                    Some(true) => {
                        let writing = flags & libc::O_ACCMODE != libc::O_RDONLY;
                        if writing && flags & libc::O_TRUNC != 0 && !self.core.cfg.sink.quorate() {
                            // the truncate is a change: refused without quorum, as the original
                            return reply.error(FsError::AccessDenied.errno());
                        }
                        let h = Handle { inode: t, append: flags & libc::O_APPEND != 0, opener_tid: writing.then_some(pid), ..Default::default() };
                        let mut files = self.core.files.lock();
                        let fh = files.open(h);
                        if writing && flags & libc::O_TRUNC != 0 {
                            let _ = files.truncate(t, Some(fh), 0, || self.core.load(t));
                        }
                        drop(files);
                        reply.opened(fh, open_flags(writing))
                    }
                }
            }
        }
    }

    pub(crate) fn read(&self, _pid: u32, ino: u64, fh: u64, offset: i64, size: u32, _flags: i32, _lock: Option<u64>, reply: ReplyData) {
        let offset = offset.max(0) as usize;
        let Ino::Tree(t) = inodes::classify(ino) else {
            let files = self.core.files.lock();
            return match files.handle(fh).and_then(|h| h.virtual_text.as_ref()) {
                Some(text) => reply.data(&slice(text, offset, size)),
                None => reply.error(FsError::Io("not possible on this entry".into()).errno()),
            };
        };
        if let Some(c) = self.core.files.lock().content(t) {
            return reply.data(&slice(c, offset, size));
        }
        let data = self.core.cfg.db.tree().get(t).map(|e| slice(e.data(), offset, size));
        match data {
            Some(d) => reply.data(&d),
            None => reply.error(FsError::NotFound.errno()),
        }
    }

    pub(crate) fn write(&self, _pid: u32, ino: u64, fh: u64, offset: i64, data: &[u8], _wflags: u32, _flags: i32, _lock: Option<u64>, reply: ReplyWrite) {
        if let Ino::Special(i) = inodes::classify(ino) {
            let result = match self.core.specials.get(i) {
                Some(Special::Virtual(v)) if v.writable && offset == 0 => self.core.cfg.virtual_files.write(v.name, data),
                _ => Err(FsError::Io("not possible on this entry".into())),
            };
            return match result {
                Ok(n) => reply.written(n as u32),
                Err(e) => reply.error(e.errno()),
            };
        }
        {
            use std::sync::atomic::Ordering::Relaxed;
            self.core.cfg.counters.write_requests.fetch_add(1, Relaxed);
            self.core.cfg.counters.max_write_bytes.fetch_max(data.len() as u64, Relaxed);
        }
        if !self.core.cfg.sink.quorate() {
            return reply.error(FsError::AccessDenied.errno());
        }
        let Ok(offset) = u64::try_from(offset) else { return reply.error(FsError::Invalid.errno()) };
        let Ino::Tree(t) = inodes::classify(ino) else { return reply.error(FsError::Io("not possible on this entry".into()).errno()) };
        let result = {
            let mut files = self.core.files.lock();
            match files.handle(fh) {
                Some(h) if h.inode == t => files.write(fh, offset, data, || self.core.load(t)),
                _ => Err(FsError::BadHandle),
            }
        };
        match result {
            Ok(n) => {
                reply.written(n as u32);
                self.core.enforce_pending_cap();
            }
            Err(e) => {
                if e == FsError::FileTooBig {
                    warn!(target: "fuse", "write of {} bytes at {offset} refused: {e}", data.len());
                }
                reply.error(err(&e))
            }
        }
    }

    pub(crate) fn flush(&self, pid: u32, _ino: u64, fh: u64, _lock_owner: u64, reply: ReplyEmpty) {
        let (inode, wrote, opener) = match self.core.files.lock().handle(fh) {
            Some(h) => (h.inode, h.wrote, h.opener_tid),
            None => return reply.ok(),
        };
        if !wrote {
            return reply.ok();
        }
        if self.core.inherited_flush(opener, pid) {
            debug!(target: "fuse", "flush of an inherited descriptor by pid {} - commit deferred to the opener", pid);
            return reply.ok();
        }
        let core = self.core.clone();
        self.core.run_change(move || match core.commit_inode(inode) {
            Ok(()) => {
                if let Some(h) = core.files.lock().handle_mut(fh) {
                    h.wrote = false;
                }
                reply.ok()
            }
            Err(e) => reply.error(err(&e)),
        });
    }

    pub(crate) fn release(&self, _pid: u32, _ino: u64, fh: u64, _flags: i32, _lock: Option<u64>, _flush: bool, reply: ReplyEmpty) {
        let h = {
            let mut files = self.core.files.lock();
            let Some((h, last)) = files.close(fh) else { return reply.ok() };
            if h.virtual_name.is_some() {
                return reply.ok();
            }
            // a commit point only for a handle that wrote, or the last one of a dirty inode
            let commit = h.wrote || (last && files.is_dirty(h.inode));
            if !commit {
                files.forget_if_idle(h.inode);
                return reply.ok();
            }
            h
        };
        let core = self.core.clone();
        self.core.run_change(move || {
            core.commit_at_release(h.inode);
            core.files.lock().forget_if_idle(h.inode);
            reply.ok()
        });
    }

    pub(crate) fn fsync(&self, _pid: u32, ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        let Ino::Tree(t) = inodes::classify(ino) else { return reply.ok() };
        let core = self.core.clone();
        // always on the pool: nobody else waits for this fdatasync
        self.core.workers.run(move || {
            let r = core.commit_inode(t).and_then(|_| core.make_acknowledged_durable());
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(err(&e)),
            }
        });
    }

    /// `fsync` of a directory (the durable-replace pattern: write, fsync, rename, fsync the
    /// directory): every acknowledged change is made durable, as by `fsync` of a file.
    pub(crate) fn fsyncdir(&self, _pid: u32, ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        let Ino::Tree(_) = inodes::classify(ino) else { return reply.ok() };
        let core = self.core.clone();
        self.core.workers.run(move || match core.make_acknowledged_durable() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(&e)),
        });
    }

    pub(crate) fn readdir(&self, _pid: u32, ino: u64, _fh: u64, offset: i64, mut reply: ReplyDirectory) {
        let Ino::Tree(t) = inodes::classify(ino) else { return reply.error(FsError::NotADirectory.errno()) };
        let mut list: Vec<(u64, FileType, Name)> = vec![(ino, FileType::Directory, ".".into()), (ino, FileType::Directory, "..".into())];
        if t == 0 {
            for (i, s) in self.core.specials.iter().enumerate() {
                let kind = if matches!(s, Special::Symlink { .. }) { FileType::Symlink } else { FileType::RegularFile };
                list.push((inodes::from_special(i), kind, Name::from(s.name())));
            }
        }
        {
            let tree = self.core.cfg.db.tree();
            let Some(dir) = tree.get(t) else { return reply.error(FsError::NotFound.errno()) };
            for (name, child) in dir.children().into_iter().flatten() {
                if t == 0 && self.core.special_index(name).is_some() {
                    continue;
                }
                let kind = if tree.get(*child).is_some_and(|e| e.is_dir()) { FileType::Directory } else { FileType::RegularFile };
                list.push((inodes::from_tree(*child), kind, name.clone()));
            }
        }
        for (i, (ino, kind, name)) in list.into_iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(ino, (i + 1) as i64, kind, kernel_name(&name)) {
                break;
            }
        }
        reply.ok()
    }

    pub(crate) fn statfs(&self, _pid: u32, _ino: u64, reply: ReplyStatfs) {
        let s = self.core.cfg.db.tree().statfs();
        reply.statfs(s.blocks, s.bfree, s.bfree, s.files, s.ffree, s.bsize, s.namelen, 0);
    }

    pub(crate) fn access(&self, _pid: u32, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        reply.ok()
    }

    pub(crate) fn create(&self, pid: u32, parent: u64, name: &OsStr, _mode: u32, _umask: u32, flags: i32, reply: ReplyCreate) {
        let (pino, path) = match self.core.kernel_child_path(parent, name) {
            Ok(x) => x,
            Err(e) => return reply.error(e.errno()),
        };
        let Ok(name) = name_str(name).map(|n| n.into_owned()) else { return reply.error(FsError::Invalid.errno()) };
        let handle = Handle { append: flags & libc::O_APPEND != 0, opener_tid: Some(pid), ..Default::default() };
        let core = self.core.clone();
        self.core.run_change(move || match core.create(pino, &name, &path, handle) {
            Ok((inode, fh)) => match core.tree_attr(inode) {
                Ok(a) => reply.created(&TTL, &a, 0, fh, consts::FOPEN_DIRECT_IO),
                Err(e) => reply.error(e.errno()),
            },
            Err(e) => reply.error(err(&e)),
        });
    }

}

/// The `/dev/fuse` session's entry points: each forwards to its [`Handlers`] method.
impl Filesystem for PmxcfsFs {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), libc::c_int> {
        let _ = config.add_capabilities(consts::FUSE_ATOMIC_O_TRUNC | consts::FUSE_BIG_WRITES);
        if let Err(nearest) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(nearest);
        }
        if let Some(rings) = self.ring.prepare(self.handlers.clone()) {
            let asked = config.add_capabilities(ring::FUSE_OVER_IO_URING).is_ok();
            if !asked {
                warn!(target: "fuse", "the kernel did not offer io_uring at INIT; serving through /dev/fuse");
            }
            rings.start(asked);
        }
        Ok(())
    }

    fn lookup(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, reply: fuser::ReplyEntry) {
        self.handlers.lookup(req.pid(), parent, name, reply.into())
    }
    fn getattr(&mut self, req: &Request<'_>, ino: u64, fh: Option<u64>, reply: fuser::ReplyAttr) {
        self.handlers.getattr(req.pid(), ino, fh, reply.into())
    }
    fn setattr(
        &mut self,
        req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: fuser::ReplyAttr,
    ) {
        let set = SetAttr { mode, uid, gid, size, atime, mtime, fh };
        self.handlers.setattr(req.pid(), ino, set, reply.into())
    }
    fn readlink(&mut self, req: &Request<'_>, ino: u64, reply: fuser::ReplyData) {
        self.handlers.readlink(req.pid(), ino, reply.into())
    }
    fn mknod(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: fuser::ReplyEntry) {
        self.handlers.mknod(req.pid(), parent, name, mode, umask, rdev, reply.into())
    }
    fn mkdir(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, mode: u32, umask: u32, reply: fuser::ReplyEntry) {
        self.handlers.mkdir(req.pid(), parent, name, mode, umask, reply.into())
    }
    fn unlink(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, reply: fuser::ReplyEmpty) {
        self.handlers.unlink(req.pid(), parent, name, reply.into())
    }
    fn rmdir(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, reply: fuser::ReplyEmpty) {
        self.handlers.rmdir(req.pid(), parent, name, reply.into())
    }
    fn symlink(&mut self, req: &Request<'_>, parent: u64, link_name: &OsStr, target: &std::path::Path, reply: fuser::ReplyEntry) {
        self.handlers.symlink(req.pid(), parent, link_name, target, reply.into())
    }
    fn rename(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, newparent: u64, newname: &OsStr, flags: u32, reply: fuser::ReplyEmpty) {
        self.handlers.rename(req.pid(), parent, name, newparent, newname, flags, reply.into())
    }
    fn link(&mut self, req: &Request<'_>, ino: u64, newparent: u64, newname: &OsStr, reply: fuser::ReplyEntry) {
        self.handlers.link(req.pid(), ino, newparent, newname, reply.into())
    }
    fn open(&mut self, req: &Request<'_>, ino: u64, flags: i32, reply: fuser::ReplyOpen) {
        self.handlers.open(req.pid(), ino, flags, reply.into())
    }
    fn read(&mut self, req: &Request<'_>, ino: u64, fh: u64, offset: i64, size: u32, flags: i32, lock: Option<u64>, reply: fuser::ReplyData) {
        self.handlers.read(req.pid(), ino, fh, offset, size, flags, lock, reply.into())
    }
    fn write(&mut self, req: &Request<'_>, ino: u64, fh: u64, offset: i64, data: &[u8], wflags: u32, flags: i32, lock: Option<u64>, reply: fuser::ReplyWrite) {
        self.handlers.write(req.pid(), ino, fh, offset, data, wflags, flags, lock, reply.into())
    }
    fn flush(&mut self, req: &Request<'_>, ino: u64, fh: u64, lock_owner: u64, reply: fuser::ReplyEmpty) {
        self.handlers.flush(req.pid(), ino, fh, lock_owner, reply.into())
    }
    fn release(&mut self, req: &Request<'_>, ino: u64, fh: u64, flags: i32, lock: Option<u64>, flush: bool, reply: fuser::ReplyEmpty) {
        self.handlers.release(req.pid(), ino, fh, flags, lock, flush, reply.into())
    }
    fn fsync(&mut self, req: &Request<'_>, ino: u64, fh: u64, datasync: bool, reply: fuser::ReplyEmpty) {
        self.handlers.fsync(req.pid(), ino, fh, datasync, reply.into())
    }
    fn fsyncdir(&mut self, req: &Request<'_>, ino: u64, fh: u64, datasync: bool, reply: fuser::ReplyEmpty) {
        self.handlers.fsyncdir(req.pid(), ino, fh, datasync, reply.into())
    }
    fn readdir(&mut self, req: &Request<'_>, ino: u64, fh: u64, offset: i64, reply: fuser::ReplyDirectory) {
        self.handlers.readdir(req.pid(), ino, fh, offset, reply.into())
    }
    fn statfs(&mut self, req: &Request<'_>, ino: u64, reply: fuser::ReplyStatfs) {
        self.handlers.statfs(req.pid(), ino, reply.into())
    }
    fn access(&mut self, req: &Request<'_>, ino: u64, mask: i32, reply: fuser::ReplyEmpty) {
        self.handlers.access(req.pid(), ino, mask, reply.into())
    }
    fn create(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, mode: u32, umask: u32, flags: i32, reply: fuser::ReplyCreate) {
        self.handlers.create(req.pid(), parent, name, mode, umask, flags, reply.into())
    }

    // Requests without a handler: over /dev/fuse only; the ring answers them (and every
    // other request it has no handler for) with the same ENOSYS (`ring::request::Call::Unsupported`).

    fn getxattr(&mut self, _req: &Request<'_>, _ino: u64, _name: &OsStr, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(FsError::NotImplemented.errno())
    }

    fn listxattr(&mut self, _req: &Request<'_>, _ino: u64, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(FsError::NotImplemented.errno())
    }

    fn setxattr(&mut self, _req: &Request<'_>, _ino: u64, _name: &OsStr, _value: &[u8], _flags: i32, _position: u32, reply: fuser::ReplyEmpty) {
        reply.error(FsError::NotImplemented.errno())
    }

    fn removexattr(&mut self, _req: &Request<'_>, _ino: u64, _name: &OsStr, reply: fuser::ReplyEmpty) {
        reply.error(FsError::NotImplemented.errno())
    }

    // Calls the original (libfuse 2, no such handlers) answers with ENOSYS, without a log
    // line: ioctl (every Perl/openssl open does TCGETS; the kernel turns ENOSYS into ENOTTY),
    // copy_file_range, lseek (SEEK_DATA/SEEK_HOLE) and fallocate (the kernel then stops
    // asking and falls back to ordinary reads and writes, or answers EOPNOTSUPP).

    fn ioctl(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _flags: u32, _cmd: u32, _in_data: &[u8], _out_size: u32, reply: fuser::ReplyIoctl) {
        reply.error(FsError::NotImplemented.errno())
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_file_range(&mut self, _req: &Request<'_>, _ino_in: u64, _fh_in: u64, _offset_in: i64, _ino_out: u64, _fh_out: u64, _offset_out: i64, _len: u64, _flags: u32, reply: fuser::ReplyWrite) {
        reply.error(FsError::NotImplemented.errno())
    }

    fn lseek(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _offset: i64, _whence: i32, reply: fuser::ReplyLseek) {
        reply.error(FsError::NotImplemented.errno())
    }

    fn fallocate(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _offset: i64, _length: i64, _mode: i32, reply: fuser::ReplyEmpty) {
        reply.error(FsError::NotImplemented.errno())
    }

    /// `poll`/`select` on a descriptor: no handler in the original either; the kernel then
    /// reports a file always ready and stops asking.
    #[allow(clippy::too_many_arguments)]
    fn poll(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _ph: fuser::PollHandle, _events: u32, _flags: u32, reply: fuser::ReplyPoll) {
        reply.error(FsError::NotImplemented.errno())
    }
}
