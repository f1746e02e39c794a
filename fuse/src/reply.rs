//! A reply to one kernel request, whichever transport brought it: over `/dev/fuse` through
//! fuser's reply object, or into an io_uring entry ([`crate::ring`]), encoded here in the
//! layouts of linux/fuse.h. The handlers use both alike (the same methods as fuser's); an
//! unanswered reply answers EIO when dropped, as fuser's do ([`RingSender`]'s drop).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType};

use crate::ring::RingSender;

/// A ring entry's side of a reply (the entry answers EIO if it is dropped unanswered).
pub(crate) struct ToRing(RingSender);

impl ToRing {
    pub fn new(sender: RingSender) -> ToRing {
        ToRing(sender)
    }

    fn send(self, body: &[&[u8]]) {
        self.0.send(0, body);
    }

    fn error(self, errno: i32) {
        self.0.send(errno, &[]);
    }
}

/// A reply type with both transports, `error` and the conversion from fuser's reply.
macro_rules! reply_type {
    ($name:ident, $fuser:ty) => {
        pub(crate) enum $name {
            Session($fuser),
            Ring(ToRing),
        }

        impl $name {
            #[allow(dead_code)] // statfs never fails
            pub fn error(self, errno: i32) {
                match self {
                    Self::Session(r) => r.error(errno),
                    Self::Ring(r) => r.error(errno),
                }
            }
        }

        impl From<$fuser> for $name {
            fn from(r: $fuser) -> Self {
                Self::Session(r)
            }
        }
    };
}

reply_type!(ReplyEntry, fuser::ReplyEntry);
reply_type!(ReplyAttr, fuser::ReplyAttr);
reply_type!(ReplyData, fuser::ReplyData);
reply_type!(ReplyEmpty, fuser::ReplyEmpty);
reply_type!(ReplyOpen, fuser::ReplyOpen);
reply_type!(ReplyWrite, fuser::ReplyWrite);
reply_type!(ReplyCreate, fuser::ReplyCreate);
reply_type!(ReplyStatfs, fuser::ReplyStatfs);

impl ReplyEntry {
    pub fn entry(self, ttl: &Duration, attr: &FileAttr, generation: u64) {
        match self {
            Self::Session(r) => r.entry(ttl, attr, generation),
            Self::Ring(r) => r.send(&[&entry_out(ttl, attr, generation)]),
        }
    }
}

impl ReplyAttr {
    pub fn attr(self, ttl: &Duration, attr: &FileAttr) {
        match self {
            Self::Session(r) => r.attr(ttl, attr),
            Self::Ring(r) => r.send(&[&attr_out(ttl, attr)]),
        }
    }
}

impl ReplyData {
    pub fn data(self, data: &[u8]) {
        match self {
            Self::Session(r) => r.data(data),
            Self::Ring(r) => r.send(&[data]),
        }
    }
}

impl ReplyEmpty {
    pub fn ok(self) {
        match self {
            Self::Session(r) => r.ok(),
            Self::Ring(r) => r.send(&[]),
        }
    }
}

impl ReplyOpen {
    pub fn opened(self, fh: u64, flags: u32) {
        match self {
            Self::Session(r) => r.opened(fh, flags),
            Self::Ring(r) => r.send(&[&open_out(fh, flags)]),
        }
    }
}

impl ReplyWrite {
    pub fn written(self, size: u32) {
        match self {
            Self::Session(r) => r.written(size),
            Self::Ring(r) => {
                let mut out = [0u8; 8];
                out[0..4].copy_from_slice(&size.to_ne_bytes());
                r.send(&[&out])
            }
        }
    }
}

impl ReplyCreate {
    pub fn created(self, ttl: &Duration, attr: &FileAttr, generation: u64, fh: u64, flags: u32) {
        match self {
            Self::Session(r) => r.created(ttl, attr, generation, fh, flags),
            Self::Ring(r) => r.send(&[&entry_out(ttl, attr, generation), &open_out(fh, flags)]),
        }
    }
}

impl ReplyStatfs {
    #[allow(clippy::too_many_arguments)]
    pub fn statfs(self, blocks: u64, bfree: u64, bavail: u64, files: u64, ffree: u64, bsize: u32, namelen: u32, frsize: u32) {
        match self {
            Self::Session(r) => r.statfs(blocks, bfree, bavail, files, ffree, bsize, namelen, frsize),
            Self::Ring(r) => {
                // struct fuse_kstatfs: five u64, bsize, namelen, frsize, padding, spare[6]
                let mut out = [0u8; 80];
                for (i, v) in [blocks, bfree, bavail, files, ffree].into_iter().enumerate() {
                    out[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
                }
                for (i, v) in [bsize, namelen, frsize].into_iter().enumerate() {
                    out[40 + i * 4..44 + i * 4].copy_from_slice(&v.to_ne_bytes());
                }
                r.send(&[&out])
            }
        }
    }
}

/// A directory listing: fuser's buffer, or `struct fuse_dirent`s collected up to the size
/// the kernel asked for.
pub(crate) enum ReplyDirectory {
    Session(fuser::ReplyDirectory),
    Ring { to: ToRing, buf: Vec<u8>, max: usize },
}

impl From<fuser::ReplyDirectory> for ReplyDirectory {
    fn from(r: fuser::ReplyDirectory) -> Self {
        Self::Session(r)
    }
}

impl ReplyDirectory {
    pub fn ring(to: ToRing, max: usize) -> ReplyDirectory {
        ReplyDirectory::Ring { to, buf: Vec::new(), max }
    }

    /// Adds an entry; true when it did not fit (the buffer is full).
    #[must_use]
    pub fn add<T: AsRef<std::ffi::OsStr>>(&mut self, ino: u64, offset: i64, kind: FileType, name: T) -> bool {
        match self {
            Self::Session(r) => r.add(ino, offset, kind, name),
            Self::Ring { buf, max, .. } => push_dirent(buf, *max, ino, offset, kind, std::os::unix::ffi::OsStrExt::as_bytes(name.as_ref())),
        }
    }

    pub fn ok(self) {
        match self {
            Self::Session(r) => r.ok(),
            Self::Ring { to, buf, .. } => to.send(&[&buf]),
        }
    }

    pub fn error(self, errno: i32) {
        match self {
            Self::Session(r) => r.error(errno),
            Self::Ring { to, .. } => to.error(errno),
        }
    }
}

/// Appends a `struct fuse_dirent` (ino, off, namelen, type, name, zero padding to 8 bytes)
/// unless `buf` would grow past `max`; true when it did not fit.
fn push_dirent(buf: &mut Vec<u8>, max: usize, ino: u64, offset: i64, kind: FileType, name: &[u8]) -> bool {
    let len = 24 + name.len();
    let padded = len.div_ceil(8) * 8;
    if buf.len() + padded > max {
        return true;
    }
    buf.extend_from_slice(&ino.to_ne_bytes());
    buf.extend_from_slice(&offset.to_ne_bytes());
    buf.extend_from_slice(&(name.len() as u32).to_ne_bytes());
    buf.extend_from_slice(&(mode_of(kind, 0) >> 12).to_ne_bytes());
    buf.extend_from_slice(name);
    buf.resize(buf.len() + padded - len, 0);
    false
}

fn mode_of(kind: FileType, perm: u16) -> u32 {
    let fmt = match kind {
        FileType::NamedPipe => libc::S_IFIFO,
        FileType::CharDevice => libc::S_IFCHR,
        FileType::BlockDevice => libc::S_IFBLK,
        FileType::Directory => libc::S_IFDIR,
        FileType::RegularFile => libc::S_IFREG,
        FileType::Symlink => libc::S_IFLNK,
        FileType::Socket => libc::S_IFSOCK,
    };
    fmt | u32::from(perm)
}

/// Seconds and nanoseconds since the epoch (negative seconds before it).
fn time(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => (-(e.duration().as_secs() as i64), e.duration().subsec_nanos()),
    }
}

/// `struct fuse_attr` (88 bytes).
fn fuse_attr(a: &FileAttr) -> [u8; 88] {
    let mut out = [0u8; 88];
    let (at, an) = time(a.atime);
    let (mt, mn) = time(a.mtime);
    let (ct, cn) = time(a.ctime);
    for (i, v) in [a.ino, a.size, a.blocks, at as u64, mt as u64, ct as u64].into_iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
    }
    let words = [an, mn, cn, mode_of(a.kind, a.perm), a.nlink, a.uid, a.gid, a.rdev, a.blksize, 0];
    for (i, v) in words.into_iter().enumerate() {
        out[48 + i * 4..52 + i * 4].copy_from_slice(&v.to_ne_bytes());
    }
    out
}

/// `struct fuse_entry_out` (128 bytes).
fn entry_out(ttl: &Duration, attr: &FileAttr, generation: u64) -> [u8; 128] {
    let mut out = [0u8; 128];
    for (i, v) in [attr.ino, generation, ttl.as_secs(), ttl.as_secs()].into_iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
    }
    out[32..36].copy_from_slice(&ttl.subsec_nanos().to_ne_bytes());
    out[36..40].copy_from_slice(&ttl.subsec_nanos().to_ne_bytes());
    out[40..].copy_from_slice(&fuse_attr(attr));
    out
}

/// `struct fuse_attr_out` (104 bytes).
fn attr_out(ttl: &Duration, attr: &FileAttr) -> [u8; 104] {
    let mut out = [0u8; 104];
    out[0..8].copy_from_slice(&ttl.as_secs().to_ne_bytes());
    out[8..12].copy_from_slice(&ttl.subsec_nanos().to_ne_bytes());
    out[16..].copy_from_slice(&fuse_attr(attr));
    out
}

/// `struct fuse_open_out` (16 bytes).
fn open_out(fh: u64, flags: u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[0..8].copy_from_slice(&fh.to_ne_bytes());
    out[8..12].copy_from_slice(&flags.to_ne_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr() -> FileAttr {
        FileAttr {
            ino: 42,
            size: 500,
            blocks: 1,
            atime: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            mtime: UNIX_EPOCH + Duration::new(1_700_000_001, 5),
            ctime: UNIX_EPOCH + Duration::from_secs(1_700_000_002),
            crtime: UNIX_EPOCH,
            kind: FileType::RegularFile,
            perm: 0o640,
            nlink: 1,
            uid: 0,
            gid: 33,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_ne_bytes(b[off..off + 8].try_into().unwrap())
    }

    #[test]
    fn fuse_attr_layout() {
        let b = fuse_attr(&attr());
        assert_eq!((u64_at(&b, 0), u64_at(&b, 8), u64_at(&b, 16)), (42, 500, 1));
        assert_eq!((u64_at(&b, 24), u64_at(&b, 32), u64_at(&b, 40)), (1_700_000_000, 1_700_000_001, 1_700_000_002));
        assert_eq!(u32_at(&b, 52), 5, "mtimensec");
        assert_eq!(u32_at(&b, 60), libc::S_IFREG | 0o640, "mode");
        assert_eq!((u32_at(&b, 64), u32_at(&b, 68), u32_at(&b, 72)), (1, 0, 33), "nlink uid gid");
        assert_eq!(u32_at(&b, 80), 4096, "blksize");
    }

    #[test]
    fn entry_and_attr_out_carry_the_ttl() {
        let ttl = Duration::new(1, 250);
        let e = entry_out(&ttl, &attr(), 7);
        assert_eq!((u64_at(&e, 0), u64_at(&e, 8), u64_at(&e, 16), u64_at(&e, 24)), (42, 7, 1, 1));
        assert_eq!((u32_at(&e, 32), u32_at(&e, 36)), (250, 250));
        assert_eq!(&e[40..], &fuse_attr(&attr())[..]);
        let a = attr_out(&ttl, &attr());
        assert_eq!((u64_at(&a, 0), u32_at(&a, 8)), (1, 250));
        assert_eq!(&a[16..], &fuse_attr(&attr())[..]);
    }

    #[test]
    fn dirents_are_padded_to_eight_bytes_and_stop_when_full() {
        let mut buf = Vec::new();
        assert!(!push_dirent(&mut buf, 80, 5, 1, FileType::RegularFile, b"a"));
        assert_eq!(buf.len(), 32);
        assert_eq!((u64_at(&buf, 0), u64_at(&buf, 8), u32_at(&buf, 16), u32_at(&buf, 20)), (5, 1, 1, libc::DT_REG as u32));
        assert_eq!(&buf[24..32], b"a\0\0\0\0\0\0\0");
        assert!(!push_dirent(&mut buf, 80, 6, 2, FileType::Directory, b"bcdefghij"));
        assert_eq!(buf.len(), 32 + 40);
        assert_eq!(u32_at(&buf, 52), libc::DT_DIR as u32);
        assert!(push_dirent(&mut buf, 80, 7, 3, FileType::Symlink, b"k"), "a third entry does not fit 80 bytes");
        assert_eq!(buf.len(), 72);
    }
}
