//! dcdb (`pve_dcdb_v1`) NORMAL-message payloads: the fuse-op and unlock records.
//!
//! dcdb (`pve_dcdb_v1`) NORMAL-message payloads: the fuse-op record used by
//! WRITE/MKDIR/DELETE/RENAME/CREATE/MTIME and the unlock record used by
//! UNLOCK_REQUEST/UNLOCK (spec §4.1, §4.2, §4.4). Paths are relative to the
//! filesystem root, without a leading `/`.

use super::{len_u32, strip_nul, Reader, WireError};

/// DFSM protocol version of the dcdb group.
pub const DCDB_PROTOCOL_VERSION: u32 = 1;
/// CPG group name (without the NUL that must be part of `cpg_name.length`).
pub const DCDB_GROUP_NAME: &str = "pve_dcdb_v1";
/// Fixed part of the fuse-op payload.
pub const FUSE_OP_HEADER_LEN: usize = 20;
/// Minimum unlock payload: 32-byte checksum + at least the NUL of the path.
pub const UNLOCK_MIN_LEN: usize = 33;

/// dcdb application message type (NORMAL `subtype`), 1..=8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum DcdbSubtype {
    Write = 1,
    Mkdir = 2,
    Delete = 3,
    Rename = 4,
    Create = 5,
    Mtime = 6,
    UnlockRequest = 7,
    Unlock = 8,
}

impl DcdbSubtype {
    /// Map a raw subtype; `None` outside 1..=8 (a receiver leaves then).
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => Self::Write,
            2 => Self::Mkdir,
            3 => Self::Delete,
            4 => Self::Rename,
            5 => Self::Create,
            6 => Self::Mtime,
            7 => Self::UnlockRequest,
            8 => Self::Unlock,
            _ => return None,
        })
    }

    /// True for the two types that carry an unlock record.
    pub fn is_unlock(self) -> bool {
        matches!(self, Self::UnlockRequest | Self::Unlock)
    }
}

/// The fuse-op record. `path`/`to` exclude their terminating NUL; `None`
/// means the length field was 0 (the original never sends that for `path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuseOp<'a> {
    /// File offset (WRITE), new length (truncate) or mtime (MTIME).
    pub offset: u32,
    /// 1 = truncate for WRITE, otherwise 0.
    pub flags: u32,
    pub path: Option<&'a [u8]>,
    pub to: Option<&'a [u8]>,
    pub data: &'a [u8],
}

impl<'a> FuseOp<'a> {
    /// WRITE of `data` at `offset` (no truncate).
    pub fn write(path: &'a str, offset: u32, data: &'a [u8]) -> Self {
        Self::with_path(path, offset, 0, data)
    }
    /// WRITE with flags=1: truncate to `len`.
    pub fn truncate(path: &'a str, len: u32) -> Self {
        Self::with_path(path, len, 1, &[])
    }
    /// CREATE, MKDIR or DELETE (they differ only in the subtype).
    pub fn path_only(path: &'a str) -> Self {
        Self::with_path(path, 0, 0, &[])
    }
    /// MTIME: `offset` carries the new mtime.
    pub fn mtime(path: &'a str, mtime: u32) -> Self {
        Self::with_path(path, mtime, 0, &[])
    }
    /// RENAME from `path` to `to`.
    pub fn rename(path: &'a str, to: &'a str) -> Self {
        FuseOp {
            to: Some(to.as_bytes()),
            ..Self::path_only(path)
        }
    }

    fn with_path(path: &'a str, offset: u32, flags: u32, data: &'a [u8]) -> Self {
        FuseOp {
            offset,
            flags,
            path: Some(path.as_bytes()),
            to: None,
            data,
        }
    }

    /// Decode with the receiver checks of `dcdb_parse_fuse_message`.
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload, "fuse-op payload");
        let size = r.u32()?;
        let offset = r.u32()?;
        let pathlen = r.u32()?;
        let tolen = r.u32()?;
        let flags = r.u32()?;
        let expected = u64::from(size) + u64::from(pathlen) + u64::from(tolen);
        if expected != r.remaining() as u64 {
            return Err(WireError::LengthMismatch {
                what: "fuse-op payload",
                expected: expected + FUSE_OP_HEADER_LEN as u64,
                got: payload.len() as u64,
            });
        }
        // The lengths are now known to fit in the buffer.
        let path = optional_cstr(r.bytes(pathlen as usize)?, "fuse-op path")?;
        let to = optional_cstr(r.bytes(tolen as usize)?, "fuse-op to")?;
        let data = r.rest();
        Ok(FuseOp {
            offset,
            flags,
            path,
            to,
            data,
        })
    }

    /// Encode like `dcdb_send_fuse_message`.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let pathlen = self.path.map_or(0, |p| p.len() + 1);
        let tolen = self.to.map_or(0, |t| t.len() + 1);
        let total = FUSE_OP_HEADER_LEN + pathlen + tolen + self.data.len();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&len_u32(self.data.len(), "fuse-op data")?.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&len_u32(pathlen, "fuse-op path")?.to_le_bytes());
        out.extend_from_slice(&len_u32(tolen, "fuse-op to")?.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        for s in [self.path, self.to].into_iter().flatten() {
            out.extend_from_slice(s);
            out.push(0);
        }
        out.extend_from_slice(self.data);
        Ok(out)
    }
}

fn optional_cstr<'a>(field: &'a [u8], what: &'static str) -> Result<Option<&'a [u8]>, WireError> {
    if field.is_empty() {
        Ok(None)
    } else {
        strip_nul(field, what).map(Some)
    }
}

/// UNLOCK_REQUEST / UNLOCK record: the lock dir's entry checksum and its path
/// (without the terminating NUL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unlock<'a> {
    pub csum: [u8; 32],
    pub path: &'a [u8],
}

impl<'a> Unlock<'a> {
    /// Decode with the checks of `dcdb_parse_unlock_request`.
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        if payload.len() < UNLOCK_MIN_LEN {
            return Err(WireError::TooShort {
                what: "unlock payload",
                need: UNLOCK_MIN_LEN,
                got: payload.len(),
            });
        }
        let mut r = Reader::new(payload, "unlock payload");
        let csum = r.array()?;
        let path = strip_nul(r.rest(), "unlock path")?;
        Ok(Unlock { csum, path })
    }

    /// Encode like `dcdb_send_unlock`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(UNLOCK_MIN_LEN + self.path.len());
        out.extend_from_slice(&self.csum);
        out.extend_from_slice(self.path);
        out.push(0);
        out
    }
}

/// A decoded dcdb NORMAL payload with its subtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DcdbMessage<'a> {
    /// Subtypes 1..=6.
    Fuse(DcdbSubtype, FuseOp<'a>),
    /// Subtypes 7 and 8.
    Unlock(DcdbSubtype, Unlock<'a>),
}

impl<'a> DcdbMessage<'a> {
    /// Decode the payload of a NORMAL message with the given subtype.
    pub fn decode(subtype: u16, payload: &'a [u8]) -> Result<Self, WireError> {
        let st = DcdbSubtype::from_u16(subtype).ok_or(WireError::InvalidValue {
            what: "dcdb message subtype",
            value: subtype.into(),
        })?;
        if st.is_unlock() {
            Ok(DcdbMessage::Unlock(st, Unlock::decode(payload)?))
        } else {
            Ok(DcdbMessage::Fuse(st, FuseOp::decode(payload)?))
        }
    }

    /// The subtype to put in the NORMAL header.
    pub fn subtype(&self) -> DcdbSubtype {
        match self {
            DcdbMessage::Fuse(st, _) | DcdbMessage::Unlock(st, _) => *st,
        }
    }

    /// Encode the payload (without the DFSM header).
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        match self {
            DcdbMessage::Fuse(_, op) => op.encode(),
            DcdbMessage::Unlock(_, u) => Ok(u.encode()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_op_round_trip_and_checks() {
        let op = FuseOp::rename("a/b", "a/c");
        let bytes = op.encode().unwrap();
        assert_eq!(bytes.len(), 20 + 4 + 4);
        assert_eq!(FuseOp::decode(&bytes).unwrap(), op);
        // missing NUL
        let mut bad = bytes.clone();
        bad[20 + 3] = b'x';
        assert!(FuseOp::decode(&bad).is_err());
        // length mismatch
        assert!(FuseOp::decode(&bytes[..bytes.len() - 1]).is_err());
        // huge length fields must not panic or allocate
        let mut huge = vec![0xffu8; 20];
        huge.extend_from_slice(b"x\0");
        assert!(FuseOp::decode(&huge).is_err());
    }

    #[test]
    fn unlock_checks() {
        assert!(Unlock::decode(&[0u8; 32]).is_err());
        let u = Unlock::decode(&[0u8; 33]).unwrap();
        assert_eq!(u.path, b"");
        let mut b = vec![1u8; 34];
        assert!(Unlock::decode(&b).is_err());
        b[33] = 0;
        assert_eq!(Unlock::decode(&b).unwrap().encode(), b);
    }
}
