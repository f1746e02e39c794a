//! The dcdb inode record of UPDATE messages and the per-entry hashing built on it.
//!
//! The dcdb inode record: payload of the leader's UPDATE messages (spec §4.6),
//! and the per-entry hashing that the memdb index (§5.2), the VERIFY checksum
//! (§5.3) and the lock checksum (§5.4) are built from.

use sha2::{Digest, Sha256};

use super::{len_u32, strip_nul, Reader, WireError};

/// `DT_DIR` as stored in the `type` byte.
pub const DT_DIR: u8 = 4;
/// `DT_REG` as stored in the `type` byte.
pub const DT_REG: u8 = 8;
/// Fixed part of an inode record before the name.
pub const INODE_RECORD_HEADER_LEN: usize = 41;

/// One memdb tree entry as sent in an UPDATE. `name` excludes its NUL (empty
/// for the root, inode 0). `data` is the file content; its length is the
/// wire `size` field (0 for directories).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InodeRecord<'a> {
    pub parent: u64,
    pub inode: u64,
    pub version: u64,
    pub writer: u32,
    pub mtime: u32,
    /// [`DT_DIR`] or [`DT_REG`].
    pub entry_type: u8,
    pub name: &'a [u8],
    pub data: &'a [u8],
}

impl<'a> InodeRecord<'a> {
    /// Decode with the checks of `dcdb_parse_update_inode`.
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload, "UPDATE inode record");
        let parent = r.u64()?;
        let inode = r.u64()?;
        let version = r.u64()?;
        let writer = r.u32()?;
        let mtime = r.u32()?;
        let size = r.u32()?;
        let namelen = r.u32()?;
        let entry_type = r.u8()?;
        if entry_type != DT_DIR && entry_type != DT_REG {
            return Err(WireError::InvalidValue {
                what: "UPDATE inode record type",
                value: entry_type.into(),
            });
        }
        let expected = u64::from(size) + u64::from(namelen);
        if expected != r.remaining() as u64 {
            return Err(WireError::LengthMismatch {
                what: "UPDATE inode record",
                expected: expected + INODE_RECORD_HEADER_LEN as u64,
                got: payload.len() as u64,
            });
        }
        let name = strip_nul(r.bytes(namelen as usize)?, "UPDATE inode record name")?;
        let data = r.rest();
        Ok(InodeRecord {
            parent,
            inode,
            version,
            writer,
            mtime,
            entry_type,
            name,
            data,
        })
    }

    /// Encode like `dcdb_send_update_inode`.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let size = len_u32(self.data.len(), "inode record data")?;
        let namelen = len_u32(self.name.len() + 1, "inode record name")?;
        let mut out =
            Vec::with_capacity(INODE_RECORD_HEADER_LEN + self.name.len() + 1 + self.data.len());
        out.extend_from_slice(&self.parent.to_le_bytes());
        out.extend_from_slice(&self.inode.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.writer.to_le_bytes());
        out.extend_from_slice(&self.mtime.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&namelen.to_le_bytes());
        out.push(self.entry_type);
        out.extend_from_slice(self.name);
        out.push(0);
        out.extend_from_slice(self.data);
        Ok(out)
    }

    /// The `size` field: data length (saturating; real entries are ≤ 1 MiB).
    pub fn size(&self) -> u32 {
        u32::try_from(self.data.len()).unwrap_or(u32::MAX)
    }

    /// Feed the fields common to all three hashes, starting at `version`.
    fn hash_tail(&self, h: &mut Sha256) {
        h.update(self.version.to_le_bytes());
        h.update(self.writer.to_le_bytes());
        h.update(self.mtime.to_le_bytes());
        h.update(self.size().to_le_bytes());
        h.update([self.entry_type]);
        h.update(self.parent.to_le_bytes());
        h.update(self.name);
        if self.entry_type == DT_REG && !self.data.is_empty() {
            h.update(self.data);
        }
    }

    /// Index digest (§5.2): SHA-256 of version‖writer‖mtime‖size‖type‖parent‖
    /// name (no NUL)‖data (regular files only). The inode is not hashed.
    pub fn index_digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        self.hash_tail(&mut h);
        h.finalize().into()
    }

    /// Single-entry checksum (§5.4, used by lock requests): like the index
    /// digest but with the inode in front.
    pub fn entry_csum(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        self.feed_checksum(&mut h);
        h.finalize().into()
    }

    fn feed_checksum(&self, h: &mut Sha256) {
        h.update(self.inode.to_le_bytes());
        self.hash_tail(h);
    }
}

/// Whole-database checksum for VERIFY (§5.3): feed every entry, root
/// included, in ascending inode order, then [`DbChecksum::finish`].
#[derive(Debug, Clone, Default)]
pub struct DbChecksum(Sha256);

impl DbChecksum {
    pub fn new() -> Self {
        Self::default()
    }
    /// Add one entry (caller guarantees ascending inode order).
    pub fn add(&mut self, entry: &InodeRecord<'_>) {
        entry.feed_checksum(&mut self.0);
    }
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_rejects() {
        let rec = InodeRecord {
            parent: 6,
            inode: 12,
            version: 15,
            writer: 0,
            mtime: 1795350131,
            entry_type: DT_REG,
            name: b"102.conf",
            data: b"name: vm102\n",
        };
        let b = rec.encode().unwrap();
        assert_eq!(InodeRecord::decode(&b).unwrap(), rec);
        for n in 0..b.len() {
            assert!(InodeRecord::decode(&b[..n]).is_err());
        }
        let mut bad = b.clone();
        bad[40] = 5;
        assert!(InodeRecord::decode(&bad).is_err());
    }
}
