//! The `fuser::Filesystem` implementation: one method per kernel request, each resolving
//! inodes to tree paths, calling the tree (reads) or the change sink (writes), and mapping
//! errors to errno through [`FsError::errno`].

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    consts, FileAttr, FileType, Filesystem, KernelConfig, MountOption, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};
use parking_lot::Mutex;
use pmxcfs_backend::path::{is_lock_dir_path, is_private, join};
use pmxcfs_backend::{now_secs, ChangeSink, Database, Durability, FsError, Op};
use tracing::{debug, warn};

use crate::attrs::{self, Owner};
use crate::handles::{tgid_of, HandleTable, OpenFile};
use crate::inodes::{self, Ino};
use crate::special::{special_entries, Special, VirtualFiles};

/// Attribute/entry cache time of tree entries (libfuse 2's default, as the original).
const TTL: Duration = Duration::from_secs(1);
/// Virtual files are regenerated on every getattr: never cache them.
const TTL_NONE: Duration = Duration::from_secs(0);
/// Largest write the kernel may send in one request (1 MiB = the file size limit).
const MAX_WRITE: u32 = 1024 * 1024;

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
}

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

/// The mounted filesystem: a thin `fuser::Filesystem` front over [`Core`]. Requests that
/// may wait for a change to be applied (through corosync in cluster mode) run on their own
/// thread, so reads and writes of other processes never queue behind them.
pub struct PmxcfsFs {
    core: Arc<Core>,
}

/// Everything the request handlers share.
struct Core {
    cfg: FsConfig,
    specials: Vec<Special>,
    handles: Mutex<HandleTable>,
    owner: Owner,
}

/// Runs a request that may block (it submits a change) off the FUSE thread.
fn offload(work: impl FnOnce() + Send + 'static) {
    if std::thread::Builder::new().name("fuse-change".into()).spawn(work).is_err() {
        warn!(target: "fuse", "unable to spawn a worker thread");
    }
}

fn err(e: &FsError) -> i32 {
    e.errno()
}

fn name_str(name: &OsStr) -> Result<&str, i32> {
    if name.len() > pmxcfs_backend::path::MAX_NAME_LEN {
        return Err(libc::ENAMETOOLONG);
    }
    name.to_str().ok_or(libc::EINVAL)
}

fn secs(t: TimeOrNow) -> u32 {
    match t {
        TimeOrNow::Now => now_secs(),
        TimeOrNow::SpecificTime(st) => st.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0),
    }
}

impl PmxcfsFs {
    pub fn new(cfg: FsConfig) -> PmxcfsFs {
        let specials = special_entries(&cfg.nodename);
        let owner = Owner { gid: cfg.gid };
        PmxcfsFs { core: Arc::new(Core { cfg, specials, handles: Mutex::new(HandleTable::default()), owner }) }
    }
}

impl Core {
    fn special_index(&self, name: &str) -> Option<usize> {
        self.specials.iter().position(|s| s.name() == name)
    }

    /// Tree path of a kernel inode that names a tree entry.
    fn tree_path(&self, ino: u64) -> Result<(u64, String), i32> {
        match inodes::classify(ino) {
            Ino::Tree(t) => self.cfg.db.tree().path_of(t).map(|p| (t, p)).ok_or(libc::ENOENT),
            Ino::Special(_) => Err(libc::EACCES),
        }
    }

    /// Path of `name` inside directory `parent` (tree entries only).
    fn child_path(&self, parent: u64, name: &OsStr) -> Result<String, i32> {
        let name = name_str(name)?;
        let (pino, dir) = self.tree_path(parent)?;
        if pino == 0 && self.special_index(name).is_some() {
            return Err(libc::EACCES);
        }
        Ok(join(&dir, name))
    }

    fn virtual_text(&self, name: &str) -> Vec<u8> {
        self.cfg.virtual_files.read(name).unwrap_or_default()
    }

    fn special_attr(&self, idx: usize) -> FileAttr {
        let ino = inodes::from_special(idx);
        match &self.specials[idx] {
            Special::Symlink { target, .. } => attrs::symlink_attr(ino, target.len(), self.cfg.sink.quorate(), self.owner),
            Special::Virtual(v) => attrs::virtual_attr(ino, v.mode, self.virtual_text(v.name).len(), self.owner),
        }
    }

    fn tree_attr(&self, tree_ino: u64) -> Result<FileAttr, i32> {
        let t = self.cfg.db.tree();
        let e = t.get(tree_ino).ok_or(libc::ENOENT)?;
        let path = t.path_of(tree_ino).ok_or(libc::ENOENT)?;
        let pending = self.handles.lock().pending_size(tree_ino);
        Ok(attrs::entry_attr(inodes::from_tree(tree_ino), e, &path, self.cfg.sink.quorate(), pending, self.owner))
    }

    fn attr_of(&self, ino: u64) -> Result<(FileAttr, Duration), i32> {
        match inodes::classify(ino) {
            Ino::Special(i) if i < self.specials.len() => Ok((self.special_attr(i), TTL_NONE)),
            Ino::Special(_) => Err(libc::ENOENT),
            Ino::Tree(t) => Ok((self.tree_attr(t)?, TTL)),
        }
    }

    fn entry_reply(&self, tree_ino: u64, reply: ReplyEntry) {
        match self.tree_attr(tree_ino) {
            Ok(a) => reply.entry(&TTL, &a, 0),
            Err(e) => reply.error(e),
        }
    }

    fn committed(&self, inode: u64) -> Vec<u8> {
        self.cfg.db.tree().get(inode).map(|e| e.data().to_vec()).unwrap_or_default()
    }

    /// Turns a handle's buffer into one change (whole content, offset 0, truncate). The
    /// handle table is only locked to take the buffer, never while the change is applied.
    fn flush_handle(&self, fh: u64) -> Result<(), i32> {
        let (inode, buffer, created, failed) = {
            let mut handles = self.handles.lock();
            let Some(f) = handles.get_mut(fh) else { return Ok(()) };
            let failed = f.failed.take();
            if failed.is_some() {
                f.buffer = None;
            }
            (f.inode, f.buffer.take(), std::mem::take(&mut f.created), failed)
        };
        if let Some(e) = failed {
            // Still commit a create that the failed writes belonged to.
            let _ = self.cfg.sink.commit();
            return Err(err(&e));
        }
        let Some(data) = buffer else {
            if created {
                return self.cfg.sink.commit().map_err(|e| err(&e));
            }
            return Ok(());
        };
        let Some(path) = self.cfg.db.tree().path_of(inode) else {
            debug!(target: "fuse", "dropping writes to deleted inode {inode}");
            return Ok(());
        };
        let op = Op::Write { path, offset: 0, data, truncate: true };
        self.cfg.sink.submit(op, Durability::Commit).map(|_| ()).map_err(|e| err(&e))
    }
}

impl Filesystem for PmxcfsFs {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), libc::c_int> {
        let _ = config.add_capabilities(consts::FUSE_ATOMIC_O_TRUNC | consts::FUSE_BIG_WRITES);
        if let Err(nearest) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(nearest);
        }
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        if name.len() > pmxcfs_backend::path::MAX_NAME_LEN {
            return reply.error(libc::ENAMETOOLONG);
        }
        let Ok(name) = name_str(name) else { return reply.error(libc::ENOENT) };
        if parent == fuser::FUSE_ROOT_ID {
            if let Some(i) = self.core.special_index(name) {
                return reply.entry(&TTL_NONE, &self.core.special_attr(i), 0);
            }
        }
        let Ino::Tree(pino) = inodes::classify(parent) else { return reply.error(libc::ENOTDIR) };
        let child = self.core.cfg.db.tree().lookup_child(pino, name).map(|e| e.inode);
        match child {
            Some(c) => self.core.entry_reply(c, reply),
            None => reply.error(libc::ENOENT),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.core.attr_of(ino) {
            Ok((a, ttl)) => reply.attr(&ttl, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
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
        reply: ReplyAttr,
    ) {
        if let Ino::Special(i) = inodes::classify(ino) {
            // Virtual files: truncate is accepted only on writable ones; nothing else is.
            let writable = matches!(self.core.specials.get(i), Some(Special::Virtual(v)) if v.writable);
            if size.is_some() && !writable {
                return reply.error(libc::EIO);
            }
            return match self.core.attr_of(ino) {
                Ok((a, ttl)) => reply.attr(&ttl, &a),
                Err(e) => reply.error(e),
            };
        }
        let (tree_ino, path) = match self.core.tree_path(ino) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        // chmod: accepted (and ignored) only for the mode the path already has.
        if let Some(m) = mode {
            let want = if is_private(&path) { 0o600 } else { 0o640 };
            if m & 0o7777 != want {
                return reply.error(libc::EPERM);
            }
        }
        // chown: only to root:www-data (or unchanged).
        if uid.is_some_and(|u| u != 0) || gid.is_some_and(|g| g != self.core.cfg.gid) {
            return reply.error(libc::EPERM);
        }
        // truncate through an open handle stays in that handle's buffer
        let handle = fh.filter(|f| self.core.handles.lock().get(*f).is_some_and(|h| h.inode == tree_ino));
        let mut path_truncate = None;
        if let Some(size) = size {
            let result = match handle {
                Some(fh) => {
                    let committed = self.core.committed(tree_ino);
                    self.core.handles.lock().get_mut(fh).map(|h| h.truncate(size, || committed)).unwrap_or(Ok(()))
                }
                None if size > pmxcfs_backend::MAX_FILE_SIZE => Err(FsError::FileTooBig),
                None => {
                    path_truncate = Some(size);
                    Ok(())
                }
            };
            if let Err(e) = result {
                return reply.error(err(&e));
            }
        }
        // utimens: like libfuse 2, only when both times are given.
        let new_mtime = match (atime, mtime) {
            (Some(_), Some(m)) => Some(secs(m)),
            _ => None,
        };
        let core = self.core.clone();
        let apply = move || {
            if let Some(size) = path_truncate {
                if let Err(e) = core.cfg.sink.submit(Op::Write { path: path.clone(), offset: size, data: Vec::new(), truncate: true }, Durability::Commit) {
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
                                    Err(e) => reply.error(e),
                                };
                            }
                            Ok(false) => {}
                            Err(e) => return reply.error(err(&e)),
                        }
                    }
                }
                if let Err(e) = core.cfg.sink.submit(Op::SetMtime { path: path.clone(), mtime }, Durability::Commit) {
                    return reply.error(err(&e));
                }
            }
            match core.tree_attr(tree_ino) {
                Ok(a) => reply.attr(&TTL, &a),
                Err(e) => reply.error(e),
            }
        };
        if path_truncate.is_some() || new_mtime.is_some() {
            offload(apply);
        } else {
            apply();
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        match inodes::classify(ino) {
            Ino::Special(i) => match self.core.specials.get(i) {
                Some(Special::Symlink { target, .. }) => reply.data(target.as_bytes()),
                _ => reply.error(libc::EINVAL),
            },
            Ino::Tree(_) => reply.error(libc::EACCES),
        }
    }

    fn mknod(&mut self, _req: &Request<'_>, _parent: u64, _name: &OsStr, mode: u32, _umask: u32, _rdev: u32, reply: ReplyEntry) {
        warn!(target: "fuse", "refusing mknod (mode {mode:o}): special files are not supported");
        reply.error(libc::ENOSYS);
    }

    fn mkdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        let path = match self.core.child_path(parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let core = self.core.clone();
        offload(move || match core.cfg.sink.submit(Op::Mkdir { path: path.clone() }, Durability::Commit) {
            Ok(_) => {
                // take the inode and drop the tree lock before entry_reply locks again
                let ino = core.cfg.db.tree().lookup(&path).map(|e| e.inode);
                match ino {
                    Some(i) => core.entry_reply(i, reply),
                    None => reply.error(libc::ENOENT),
                }
            }
            Err(e) => reply.error(err(&e)),
        });
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        match self.core.child_path(parent, name) {
            Ok(path) => {
                let core = self.core.clone();
                offload(move || match core.cfg.sink.submit(Op::Delete { path }, Durability::Commit) {
                    Ok(_) => reply.ok(),
                    Err(e) => reply.error(err(&e)),
                });
            }
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.unlink(req, parent, name, reply)
    }

    fn symlink(&mut self, _req: &Request<'_>, _parent: u64, link_name: &OsStr, _target: &std::path::Path, reply: ReplyEntry) {
        warn!(target: "fuse", "refusing symlink {link_name:?}: symlinks are not supported");
        reply.error(libc::ENOSYS);
    }

    fn rename(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, newparent: u64, newname: &OsStr, flags: u32, reply: ReplyEmpty) {
        if flags & libc::RENAME_EXCHANGE != 0 {
            return reply.error(libc::EINVAL);
        }
        let (from, to) = match (self.core.child_path(parent, name), self.core.child_path(newparent, newname)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        if flags & libc::RENAME_NOREPLACE != 0 && self.core.cfg.db.tree().lookup(&to).is_some() {
            return reply.error(libc::EEXIST);
        }
        let core = self.core.clone();
        offload(move || match core.cfg.sink.submit(Op::Rename { from, to }, Durability::Commit) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(err(&e)),
        });
    }

    fn link(&mut self, _req: &Request<'_>, _ino: u64, _newparent: u64, _newname: &OsStr, reply: ReplyEntry) {
        reply.error(libc::ENOSYS);
    }

    fn open(&mut self, req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let direct = consts::FOPEN_DIRECT_IO;
        match inodes::classify(ino) {
            Ino::Special(i) => match self.core.specials.get(i) {
                Some(Special::Virtual(v)) => {
                    let text = self.core.virtual_text(v.name);
                    let fh = self.core.handles.lock().insert(OpenFile { virtual_text: Some(text), virtual_name: Some(v.name), ..Default::default() });
                    reply.opened(fh, direct)
                }
                _ => reply.error(libc::EACCES),
            },
            Ino::Tree(t) => {
                let is_file = self.core.cfg.db.tree().get(t).map(|e| !e.is_dir());
                match is_file {
                    None => reply.error(libc::ENOENT),
                    Some(false) => reply.error(libc::EISDIR),
                    Some(true) => {
                        let mut f = OpenFile { inode: t, opener_tgid: tgid_of(req.pid()), ..Default::default() };
                        let writing = flags & libc::O_ACCMODE != libc::O_RDONLY;
                        if writing && flags & libc::O_TRUNC != 0 {
                            f.buffer = Some(Vec::new());
                        }
                        reply.opened(self.core.handles.lock().insert(f), direct)
                    }
                }
            }
        }
    }

    fn read(&mut self, _req: &Request<'_>, ino: u64, fh: u64, offset: i64, size: u32, _flags: i32, _lock: Option<u64>, reply: ReplyData) {
        let offset = offset.max(0) as usize;
        let slice = |data: &[u8]| -> Vec<u8> {
            if offset >= data.len() {
                Vec::new()
            } else {
                data[offset..data.len().min(offset + size as usize)].to_vec()
            }
        };
        if let Some(f) = self.core.handles.lock().get(fh) {
            if let Some(text) = &f.virtual_text {
                return reply.data(&slice(text));
            }
            if let Some(buf) = &f.buffer {
                return reply.data(&slice(buf));
            }
        }
        let Ino::Tree(t) = inodes::classify(ino) else { return reply.error(libc::EIO) };
        let data = self.core.cfg.db.tree().get(t).map(|e| slice(e.data()));
        match data {
            Some(d) => reply.data(&d),
            None => reply.error(libc::ENOENT),
        }
    }

    fn write(&mut self, _req: &Request<'_>, ino: u64, fh: u64, offset: i64, data: &[u8], _wflags: u32, _flags: i32, _lock: Option<u64>, reply: ReplyWrite) {
        if let Ino::Special(i) = inodes::classify(ino) {
            let result = match self.core.specials.get(i) {
                Some(Special::Virtual(v)) if v.writable && offset == 0 => self.core.cfg.virtual_files.write(v.name, data),
                _ => Err(libc::EIO),
            };
            return match result {
                Ok(n) => reply.written(n as u32),
                Err(e) => reply.error(e),
            };
        }
        {
            use std::sync::atomic::Ordering::Relaxed;
            self.core.cfg.counters.write_requests.fetch_add(1, Relaxed);
            self.core.cfg.counters.max_write_bytes.fetch_max(data.len() as u64, Relaxed);
        }
        if !self.core.cfg.sink.quorate() {
            return reply.error(libc::EACCES);
        }
        let Ok(offset) = u64::try_from(offset) else { return reply.error(libc::EINVAL) };
        let Ino::Tree(t) = inodes::classify(ino) else { return reply.error(libc::EIO) };
        let committed = self.core.committed(t);
        match self.core.handles.lock().get_mut(fh) {
            Some(f) if f.inode == t => match f.write(offset, data, || committed) {
                Ok(n) => reply.written(n as u32),
                Err(e) => {
                    warn!(target: "fuse", "write of {} bytes at {offset} refused: {e}", data.len());
                    reply.error(err(&e))
                }
            },
            _ => reply.error(libc::EBADF),
        }
    }

    fn flush(&mut self, req: &Request<'_>, _ino: u64, fh: u64, _lock_owner: u64, reply: ReplyEmpty) {
        let inherited = self.core.handles.lock().get(fh).and_then(|f| f.opener_tgid).is_some_and(|opener| tgid_of(req.pid()).is_some_and(|t| t != opener));
        if inherited {
            debug!(target: "fuse", "flush of an inherited descriptor by pid {} - commit deferred to the opener", req.pid());
            return reply.ok();
        }
        let core = self.core.clone();
        offload(move || match core.flush_handle(fh) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        });
    }

    fn release(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, _flags: i32, _lock: Option<u64>, _flush: bool, reply: ReplyEmpty) {
        let core = self.core.clone();
        offload(move || {
            let r = core.flush_handle(fh);
            core.handles.lock().remove(fh);
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn fsync(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, _datasync: bool, reply: ReplyEmpty) {
        let core = self.core.clone();
        offload(move || match core.flush_handle(fh).and_then(|_| core.cfg.sink.commit().map_err(|e| err(&e))).and_then(|_| core.cfg.db.sync_wal().map_err(|e| err(&e))) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        });
    }

    fn readdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, offset: i64, mut reply: ReplyDirectory) {
        let Ino::Tree(t) = inodes::classify(ino) else { return reply.error(libc::ENOTDIR) };
        let mut list: Vec<(u64, FileType, String)> = vec![(ino, FileType::Directory, ".".into()), (ino, FileType::Directory, "..".into())];
        if t == 0 {
            for (i, s) in self.core.specials.iter().enumerate() {
                let kind = if matches!(s, Special::Symlink { .. }) { FileType::Symlink } else { FileType::RegularFile };
                list.push((inodes::from_special(i), kind, s.name().to_string()));
            }
        }
        {
            let tree = self.core.cfg.db.tree();
            let Some(dir) = tree.get(t) else { return reply.error(libc::ENOENT) };
            for (name, child) in dir.children().into_iter().flatten() {
                if t == 0 && self.core.special_index(name).is_some() {
                    continue;
                }
                let kind = if tree.get(*child).is_some_and(|e| e.is_dir()) { FileType::Directory } else { FileType::RegularFile };
                list.push((inodes::from_tree(*child), kind, name.clone()));
            }
        }
        for (i, (ino, kind, name)) in list.into_iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(ino, (i + 1) as i64, kind, name) {
                break;
            }
        }
        reply.ok()
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        let s = self.core.cfg.db.tree().statfs();
        reply.statfs(s.blocks, s.bfree, s.bfree, s.files, s.ffree, s.bsize, s.namelen, 0);
    }

    fn getxattr(&mut self, _req: &Request<'_>, _ino: u64, _name: &OsStr, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(libc::ENOSYS)
    }

    fn listxattr(&mut self, _req: &Request<'_>, _ino: u64, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(libc::ENOSYS)
    }

    fn setxattr(&mut self, _req: &Request<'_>, _ino: u64, _name: &OsStr, _value: &[u8], _flags: i32, _position: u32, reply: ReplyEmpty) {
        reply.error(libc::ENOSYS)
    }

    fn removexattr(&mut self, _req: &Request<'_>, _ino: u64, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(libc::ENOSYS)
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        reply.ok()
    }

    fn create(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, _mode: u32, _umask: u32, flags: i32, reply: ReplyCreate) {
        let path = match self.core.child_path(parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let _ = flags;
        let opener_tgid = tgid_of(req.pid());
        let core = self.core.clone();
        offload(move || match core.cfg.sink.submit(Op::Create { path: path.clone() }, Durability::Deferred) {
            Ok(_) => {
                let Some(inode) = core.cfg.db.tree().lookup(&path).map(|e| e.inode) else { return reply.error(libc::ENOENT) };
                let fh = core.handles.lock().insert(OpenFile { inode, created: true, opener_tgid, ..Default::default() });
                match core.tree_attr(inode) {
                    Ok(a) => reply.created(&TTL, &a, 0, fh, consts::FOPEN_DIRECT_IO),
                    Err(e) => reply.error(e),
                }
            }
            Err(e) => reply.error(err(&e)),
        });
    }

    // Calls the original (libfuse 2, no such handlers) answers with ENOSYS, without a log
    // line: ioctl (every Perl/openssl open does TCGETS; the kernel turns ENOSYS into ENOTTY),
    // copy_file_range, lseek (SEEK_DATA/SEEK_HOLE) and fallocate (the kernel then stops
    // asking and falls back to ordinary reads and writes, or answers EOPNOTSUPP).

    fn ioctl(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _flags: u32, _cmd: u32, _in_data: &[u8], _out_size: u32, reply: fuser::ReplyIoctl) {
        reply.error(libc::ENOSYS)
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_file_range(&mut self, _req: &Request<'_>, _ino_in: u64, _fh_in: u64, _offset_in: i64, _ino_out: u64, _fh_out: u64, _offset_out: i64, _len: u64, _flags: u32, reply: ReplyWrite) {
        reply.error(libc::ENOSYS)
    }

    fn lseek(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _offset: i64, _whence: i32, reply: fuser::ReplyLseek) {
        reply.error(libc::ENOSYS)
    }

    fn fallocate(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _offset: i64, _length: i64, _mode: i32, reply: ReplyEmpty) {
        reply.error(libc::ENOSYS)
    }
}
