//! The kernel's FUSE-over-io_uring ABI (linux/fuse.h, protocol 7.42) and the byte layout of
//! the request headers a ring entry carries.

/// INIT flag (flags2 bit 9): the daemon serves requests over io_uring.
pub const FUSE_OVER_IO_URING: u64 = 1 << 41;

/// `cmd_op` of an `IORING_OP_URING_CMD` on /dev/fuse: hand a buffer pair to the kernel.
pub const CMD_REGISTER: u32 = 1;
/// `cmd_op`: the entry's reply is in its buffers; fetch the next request into them.
pub const CMD_COMMIT_AND_FETCH: u32 = 2;

/// `struct fuse_uring_req_header`: `in_out[128]` (fuse_in_header on fetch, fuse_out_header
/// on commit), `op_in[128]` (the opcode's fixed struct), `ring_ent_in_out` (32 bytes).
pub const HEADER_SIZE: usize = 128 + 128 + 32;
pub const OP_IN: usize = 128;
/// Room for the opcode's fixed struct in `op_in`.
pub const OP_IN_SIZE: usize = 128;
pub const ENT_IN_OUT: usize = OP_IN + OP_IN_SIZE;
/// Offsets inside `struct fuse_uring_ent_in_out`.
pub const ENT_COMMIT_ID: usize = ENT_IN_OUT + 8;
pub const ENT_PAYLOAD_SZ: usize = ENT_IN_OUT + 16;

/// `struct fuse_in_header` is 40 bytes, `struct fuse_out_header` 16.
pub const IN_HEADER_SIZE: usize = 40;
pub const OUT_HEADER_SIZE: usize = 16;

/// `struct fuse_uring_cmd_req` (flags, commit_id, qid) in the SQE's 80-byte command area.
pub fn cmd_req(commit_id: u64, qid: u16) -> [u8; 80] {
    let mut cmd = [0u8; 80];
    cmd[8..16].copy_from_slice(&commit_id.to_ne_bytes());
    cmd[16..18].copy_from_slice(&qid.to_ne_bytes());
    cmd
}

pub fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

pub fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// The fields of `struct fuse_in_header` a handler needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InHeader {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

impl InHeader {
    pub fn parse(b: &[u8]) -> Option<InHeader> {
        Some(InHeader {
            len: u32_at(b, 0)?,
            opcode: u32_at(b, 4)?,
            unique: u64_at(b, 8)?,
            nodeid: u64_at(b, 16)?,
            uid: u32_at(b, 24)?,
            gid: u32_at(b, 28)?,
            pid: u32_at(b, 32)?,
        })
    }
}

/// The `struct fuse_out_header` of a reply to `unique` with `errno` (0 = success) and
/// `payload_len` bytes after it.
pub fn out_header(unique: u64, errno: i32, payload_len: usize) -> [u8; OUT_HEADER_SIZE] {
    let mut out = [0u8; OUT_HEADER_SIZE];
    out[0..4].copy_from_slice(&((OUT_HEADER_SIZE + payload_len) as u32).to_ne_bytes());
    out[4..8].copy_from_slice(&(-errno).to_ne_bytes());
    out[8..16].copy_from_slice(&unique.to_ne_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmd_req_places_commit_id_and_qid() {
        let c = cmd_req(0x1122_3344_5566_7788, 3);
        assert_eq!(u64_at(&c, 0), Some(0));
        assert_eq!(u64_at(&c, 8), Some(0x1122_3344_5566_7788));
        assert_eq!(c[16..18], 3u16.to_ne_bytes());
        assert!(c[18..].iter().all(|&b| b == 0));
    }

    #[test]
    fn in_header_fields() {
        let mut b = [0u8; IN_HEADER_SIZE];
        b[0..4].copy_from_slice(&45u32.to_ne_bytes());
        b[4..8].copy_from_slice(&1u32.to_ne_bytes());
        b[8..16].copy_from_slice(&7u64.to_ne_bytes());
        b[16..24].copy_from_slice(&1u64.to_ne_bytes());
        b[24..28].copy_from_slice(&33u32.to_ne_bytes());
        b[28..32].copy_from_slice(&34u32.to_ne_bytes());
        b[32..36].copy_from_slice(&99u32.to_ne_bytes());
        let h = InHeader::parse(&b).unwrap();
        assert_eq!(h, InHeader { len: 45, opcode: 1, unique: 7, nodeid: 1, uid: 33, gid: 34, pid: 99 });
        assert_eq!(InHeader::parse(&b[..35]), None, "the pid does not fit");
    }

    #[test]
    fn out_header_carries_length_errno_and_unique() {
        let r = out_header(9, libc::ENOSYS, 0);
        assert_eq!(u32_at(&r, 0), Some(16));
        assert_eq!(u32_at(&r, 4).map(|e| e as i32), Some(-libc::ENOSYS));
        assert_eq!(u64_at(&r, 8), Some(9));
        let ok = out_header(10, 0, 104);
        assert_eq!((u32_at(&ok, 0), u32_at(&ok, 4)), (Some(120), Some(0)));
    }
}
