//! One parsed ring request to its [`Handlers`] method, with a reply that answers into the
//! ring entry.

use pmxcfs_backend::FsError;

use super::queue::RingSender;
use super::request::Call;
use crate::filesystem::Handlers;
use crate::reply::{ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ToRing};

/// Calls the handler of `call` for node `ino` on behalf of thread `pid`; its reply (now or
/// later, from whatever thread) goes to `sender`. `Unsupported` answers ENOSYS, as fuser's
/// session does for a request without a handler.
pub fn dispatch(h: &Handlers, ino: u64, pid: u32, call: Call<'_>, sender: RingSender) {
    let s = ToRing::new(sender);
    match call {
        Call::Lookup { name } => h.lookup(pid, ino, name, ReplyEntry::Ring(s)),
        Call::GetAttr { fh } => h.getattr(pid, ino, fh, ReplyAttr::Ring(s)),
        Call::SetAttr(set) => h.setattr(pid, ino, set, ReplyAttr::Ring(s)),
        Call::ReadLink => h.readlink(pid, ino, ReplyData::Ring(s)),
        Call::Symlink { name, target } => h.symlink(pid, ino, name, std::path::Path::new(target), ReplyEntry::Ring(s)),
        Call::MkNod { name, mode, umask, rdev } => h.mknod(pid, ino, name, mode, umask, rdev, ReplyEntry::Ring(s)),
        Call::MkDir { name, mode, umask } => h.mkdir(pid, ino, name, mode, umask, ReplyEntry::Ring(s)),
        Call::Unlink { name } => h.unlink(pid, ino, name, ReplyEmpty::Ring(s)),
        Call::RmDir { name } => h.rmdir(pid, ino, name, ReplyEmpty::Ring(s)),
        Call::Rename { name, newdir, newname, flags } => h.rename(pid, ino, name, newdir, newname, flags, ReplyEmpty::Ring(s)),
        Call::Link { oldnode, newname } => h.link(pid, oldnode, ino, newname, ReplyEntry::Ring(s)),
        Call::Open { flags } => h.open(pid, ino, flags, ReplyOpen::Ring(s)),
        Call::Read { fh, offset, size, flags } => h.read(pid, ino, fh, offset, size, flags, None, ReplyData::Ring(s)),
        Call::Write { fh, offset, data, write_flags, flags } => h.write(pid, ino, fh, offset, data, write_flags, flags, None, ReplyWrite::Ring(s)),
        Call::StatFs => h.statfs(pid, ino, ReplyStatfs::Ring(s)),
        Call::Release { fh, flags, flush } => h.release(pid, ino, fh, flags, None, flush, ReplyEmpty::Ring(s)),
        Call::Fsync { fh, datasync } => h.fsync(pid, ino, fh, datasync, ReplyEmpty::Ring(s)),
        Call::Flush { fh, lock_owner } => h.flush(pid, ino, fh, lock_owner, ReplyEmpty::Ring(s)),
        // fuser's answers for a filesystem without opendir/releasedir handlers
        Call::OpenDir => ReplyOpen::Ring(s).opened(0, 0),
        Call::ReleaseDir => ReplyEmpty::Ring(s).ok(),
        Call::ReadDir { fh, offset, size } => h.readdir(pid, ino, fh, offset, ReplyDirectory::ring(s, size as usize)),
        Call::FsyncDir { fh, datasync } => h.fsyncdir(pid, ino, fh, datasync, ReplyEmpty::Ring(s)),
        Call::Access { mask } => h.access(pid, ino, mask, ReplyEmpty::Ring(s)),
        Call::Create { name, mode, umask, flags } => h.create(pid, ino, name, mode, umask, flags, ReplyCreate::Ring(s)),
        Call::Destroy => ReplyEmpty::Ring(s).ok(),
        Call::Unsupported => ReplyEmpty::Ring(s).error(FsError::NotImplemented.errno()),
    }
}
