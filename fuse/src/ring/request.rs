//! A kernel request as a ring entry carries it (opcode struct in `op_in`, names and data in
//! the payload), parsed into the arguments of its handler. Layouts: linux/fuse.h.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::TimeOrNow;

use super::abi::{u32_at, u64_at};
use crate::filesystem::SetAttr;

pub const LOOKUP: u32 = 1;
pub const GETATTR: u32 = 3;
pub const SETATTR: u32 = 4;
pub const READLINK: u32 = 5;
pub const SYMLINK: u32 = 6;
pub const MKNOD: u32 = 8;
pub const MKDIR: u32 = 9;
pub const UNLINK: u32 = 10;
pub const RMDIR: u32 = 11;
pub const RENAME: u32 = 12;
pub const LINK: u32 = 13;
pub const OPEN: u32 = 14;
pub const READ: u32 = 15;
pub const WRITE: u32 = 16;
pub const STATFS: u32 = 17;
pub const RELEASE: u32 = 18;
pub const FSYNC: u32 = 20;
pub const FLUSH: u32 = 25;
pub const OPENDIR: u32 = 27;
pub const READDIR: u32 = 28;
pub const RELEASEDIR: u32 = 29;
pub const FSYNCDIR: u32 = 30;
pub const ACCESS: u32 = 34;
pub const CREATE: u32 = 35;
pub const DESTROY: u32 = 38;
pub const RENAME2: u32 = 45;

const FUSE_GETATTR_FH: u32 = 1;
const FUSE_RELEASE_FLUSH: u32 = 1;
const FUSE_FSYNC_FDATASYNC: u32 = 1;
const FATTR_MODE: u32 = 1 << 0;
const FATTR_UID: u32 = 1 << 1;
const FATTR_GID: u32 = 1 << 2;
const FATTR_SIZE: u32 = 1 << 3;
const FATTR_ATIME: u32 = 1 << 4;
const FATTR_MTIME: u32 = 1 << 5;
const FATTR_FH: u32 = 1 << 6;
const FATTR_ATIME_NOW: u32 = 1 << 7;
const FATTR_MTIME_NOW: u32 = 1 << 8;

/// One request with its arguments; `Unsupported` gets ENOSYS, as from the `/dev/fuse`
/// session (fuser's answer to every request without a handler).
#[derive(Debug, PartialEq)]
pub enum Call<'a> {
    Lookup { name: &'a OsStr },
    GetAttr { fh: Option<u64> },
    SetAttr(SetAttr),
    ReadLink,
    Symlink { name: &'a OsStr, target: &'a OsStr },
    MkNod { name: &'a OsStr, mode: u32, umask: u32, rdev: u32 },
    MkDir { name: &'a OsStr, mode: u32, umask: u32 },
    Unlink { name: &'a OsStr },
    RmDir { name: &'a OsStr },
    Rename { name: &'a OsStr, newdir: u64, newname: &'a OsStr, flags: u32 },
    Link { oldnode: u64, newname: &'a OsStr },
    Open { flags: i32 },
    Read { fh: u64, offset: i64, size: u32, flags: i32 },
    Write { fh: u64, offset: i64, data: &'a [u8], write_flags: u32, flags: i32 },
    StatFs,
    Release { fh: u64, flags: i32, flush: bool },
    Fsync { fh: u64, datasync: bool },
    Flush { fh: u64, lock_owner: u64 },
    OpenDir,
    ReadDir { fh: u64, offset: i64, size: u32 },
    ReleaseDir,
    FsyncDir { fh: u64, datasync: bool },
    Access { mask: i32 },
    Create { name: &'a OsStr, mode: u32, umask: u32, flags: i32 },
    Destroy,
    Unsupported,
}

/// The request is shorter than its opcode's layout.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// The NUL-terminated strings at the start of `payload`.
fn names<const N: usize>(payload: &[u8]) -> Result<[&OsStr; N], Malformed> {
    let mut out = [OsStr::new(""); N];
    let mut rest = payload;
    for slot in out.iter_mut() {
        let end = rest.iter().position(|&b| b == 0).ok_or(Malformed)?;
        *slot = OsStr::from_bytes(&rest[..end]);
        rest = &rest[end + 1..];
    }
    Ok(out)
}

/// A time the kernel sends as signed seconds (in a u64 field) and nanoseconds; before 1970
/// for `touch -d @-1` or an old file unpacked by tar. Out of range: the epoch.
fn time(secs: u64, nsecs: u32) -> SystemTime {
    let secs = secs as i64;
    let nsecs = Duration::from_nanos(u64::from(nsecs.min(999_999_999)));
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    };
    t.and_then(|t| t.checked_add(nsecs)).unwrap_or(UNIX_EPOCH)
}

fn set_time(valid: u32, bit: u32, now_bit: u32, secs: u64, nsecs: u32) -> Option<TimeOrNow> {
    if valid & bit == 0 {
        None
    } else if valid & now_bit != 0 {
        Some(TimeOrNow::Now)
    } else {
        Some(TimeOrNow::SpecificTime(time(secs, nsecs)))
    }
}

/// Parses a request of `opcode` from its fixed struct `op` and its `payload`.
pub fn parse<'a>(opcode: u32, op: &'a [u8], payload: &'a [u8]) -> Result<Call<'a>, Malformed> {
    let u32_ = |off| u32_at(op, off).ok_or(Malformed);
    let u64_ = |off| u64_at(op, off).ok_or(Malformed);
    Ok(match opcode {
        LOOKUP => Call::Lookup { name: names::<1>(payload)?[0] },
        GETATTR => Call::GetAttr { fh: (u32_(0)? & FUSE_GETATTR_FH != 0).then_some(u64_(8)?) },
        SETATTR => {
            let valid = u32_(0)?;
            let opt32 = |bit: u32, off| -> Result<Option<u32>, Malformed> { Ok((valid & bit != 0).then_some(u32_(off)?)) };
            Call::SetAttr(SetAttr {
                mode: opt32(FATTR_MODE, 68)?,
                uid: opt32(FATTR_UID, 76)?,
                gid: opt32(FATTR_GID, 80)?,
                size: (valid & FATTR_SIZE != 0).then_some(u64_(16)?),
                atime: set_time(valid, FATTR_ATIME, FATTR_ATIME_NOW, u64_(32)?, u32_(56)?),
                mtime: set_time(valid, FATTR_MTIME, FATTR_MTIME_NOW, u64_(40)?, u32_(60)?),
                fh: (valid & FATTR_FH != 0).then_some(u64_(8)?),
            })
        }
        READLINK => Call::ReadLink,
        SYMLINK => {
            let [name, target] = names::<2>(payload)?;
            Call::Symlink { name, target }
        }
        MKNOD => Call::MkNod { name: names::<1>(payload)?[0], mode: u32_(0)?, rdev: u32_(4)?, umask: u32_(8)? },
        MKDIR => Call::MkDir { name: names::<1>(payload)?[0], mode: u32_(0)?, umask: u32_(4)? },
        UNLINK => Call::Unlink { name: names::<1>(payload)?[0] },
        RMDIR => Call::RmDir { name: names::<1>(payload)?[0] },
        RENAME | RENAME2 => {
            let [name, newname] = names::<2>(payload)?;
            let flags = if opcode == RENAME2 { u32_(8)? } else { 0 };
            Call::Rename { name, newdir: u64_(0)?, newname, flags }
        }
        LINK => Call::Link { oldnode: u64_(0)?, newname: names::<1>(payload)?[0] },
        OPEN => Call::Open { flags: u32_(0)? as i32 },
        READ => Call::Read { fh: u64_(0)?, offset: u64_(8)? as i64, size: u32_(16)?, flags: u32_(32)? as i32 },
        WRITE => {
            let size = u32_(16)? as usize;
            let data = payload.get(..size).ok_or(Malformed)?;
            Call::Write { fh: u64_(0)?, offset: u64_(8)? as i64, data, write_flags: u32_(20)?, flags: u32_(32)? as i32 }
        }
        STATFS => Call::StatFs,
        RELEASE => Call::Release { fh: u64_(0)?, flags: u32_(8)? as i32, flush: u32_(12)? & FUSE_RELEASE_FLUSH != 0 },
        FSYNC => Call::Fsync { fh: u64_(0)?, datasync: u32_(8)? & FUSE_FSYNC_FDATASYNC != 0 },
        FLUSH => Call::Flush { fh: u64_(0)?, lock_owner: u64_(16)? },
        OPENDIR => Call::OpenDir,
        READDIR => Call::ReadDir { fh: u64_(0)?, offset: u64_(8)? as i64, size: u32_(16)? },
        RELEASEDIR => Call::ReleaseDir,
        FSYNCDIR => Call::FsyncDir { fh: u64_(0)?, datasync: u32_(8)? & FUSE_FSYNC_FDATASYNC != 0 },
        ACCESS => Call::Access { mask: u32_(0)? as i32 },
        CREATE => Call::Create { name: names::<1>(payload)?[0], flags: u32_(0)? as i32, mode: u32_(4)?, umask: u32_(8)? },
        DESTROY => Call::Destroy,
        _ => Call::Unsupported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(fields: &[(usize, &[u8])]) -> [u8; 128] {
        let mut b = [0u8; 128];
        for (off, bytes) in fields {
            b[*off..off + bytes.len()].copy_from_slice(bytes);
        }
        b
    }

    #[test]
    fn lookup_takes_the_name_without_its_nul() {
        assert_eq!(parse(LOOKUP, &[], b"qemu-server\0"), Ok(Call::Lookup { name: OsStr::new("qemu-server") }));
        assert_eq!(parse(LOOKUP, &[], b"no-nul"), Err(Malformed));
    }

    #[test]
    fn rename_has_two_names_and_rename2_its_flags() {
        let o = op(&[(0, &5u64.to_ne_bytes()), (8, &1u32.to_ne_bytes())]);
        assert_eq!(
            parse(RENAME2, &o, b"a.tmp\0a\0"),
            Ok(Call::Rename { name: OsStr::new("a.tmp"), newdir: 5, newname: OsStr::new("a"), flags: 1 })
        );
        assert_eq!(
            parse(RENAME, &o[..8], b"a.tmp\0a\0"),
            Ok(Call::Rename { name: OsStr::new("a.tmp"), newdir: 5, newname: OsStr::new("a"), flags: 0 })
        );
    }

    #[test]
    fn write_data_is_the_payload_of_its_size() {
        let o = op(&[(0, &3u64.to_ne_bytes()), (8, &4096u64.to_ne_bytes()), (16, &3u32.to_ne_bytes()), (32, &2u32.to_ne_bytes())]);
        assert_eq!(
            parse(WRITE, &o, b"abcdef"),
            Ok(Call::Write { fh: 3, offset: 4096, data: b"abc", write_flags: 0, flags: 2 })
        );
        assert_eq!(parse(WRITE, &o, b"ab"), Err(Malformed));
    }

    #[test]
    fn setattr_fields_follow_the_valid_bits() {
        let valid = FATTR_SIZE | FATTR_ATIME | FATTR_ATIME_NOW | FATTR_MTIME | FATTR_FH;
        let o = op(&[(0, &valid.to_ne_bytes()), (8, &7u64.to_ne_bytes()), (16, &10u64.to_ne_bytes()), (40, &1000u64.to_ne_bytes()), (68, &0o644u32.to_ne_bytes())]);
        let Ok(Call::SetAttr(s)) = parse(SETATTR, &o, &[]) else { panic!("not a setattr") };
        assert_eq!(s.size, Some(10));
        assert_eq!(s.fh, Some(7));
        assert_eq!(s.mode, None);
        assert_eq!(s.atime, Some(TimeOrNow::Now));
        assert_eq!(s.mtime, Some(TimeOrNow::SpecificTime(UNIX_EPOCH + Duration::from_secs(1000))));
        assert_eq!(s.uid, None);
    }

    #[test]
    fn times_before_1970_and_out_of_range_do_not_panic() {
        let valid = FATTR_ATIME | FATTR_MTIME;
        let o = op(&[(0, &valid.to_ne_bytes()), (32, &(-10i64 as u64).to_ne_bytes()), (40, &u64::MAX.to_ne_bytes()), (60, &5u32.to_ne_bytes())]);
        let Ok(Call::SetAttr(s)) = parse(SETATTR, &o, &[]) else { panic!("not a setattr") };
        assert_eq!(s.atime, Some(TimeOrNow::SpecificTime(UNIX_EPOCH - Duration::from_secs(10))));
        // -1 s + 5 ns
        assert_eq!(s.mtime, Some(TimeOrNow::SpecificTime(UNIX_EPOCH - Duration::from_secs(1) + Duration::from_nanos(5))));
        let huge = op(&[(0, &FATTR_MTIME.to_ne_bytes()), (40, &(i64::MAX as u64).to_ne_bytes())]);
        assert!(parse(SETATTR, &huge, &[]).is_ok());
    }

    #[test]
    fn release_flush_bit_and_unknown_opcodes() {
        let o = op(&[(0, &9u64.to_ne_bytes()), (8, &2u32.to_ne_bytes()), (12, &FUSE_RELEASE_FLUSH.to_ne_bytes())]);
        assert_eq!(parse(RELEASE, &o, &[]), Ok(Call::Release { fh: 9, flags: 2, flush: true }));
        assert_eq!(parse(39, &o, &[]), Ok(Call::Unsupported));
        assert_eq!(parse(OPEN, &o[..2], &[]), Err(Malformed));
    }
}
