//! The memdb index: the dcdb STATE payload (spec §5.1).
//!
//! The memdb index: the dcdb STATE payload (spec §5.1). A 32-byte header
//! (root version, last inode, root writer/mtime, entry count, byte length)
//! followed by 40-byte `{inode, SHA-256 digest}` entries sorted by inode.
//! Digests themselves are computed in [`super::update`].

use super::{len_u32, Reader, WireError};

/// Size of the index header.
pub const INDEX_HEADER_LEN: usize = 32;
/// Size of one index entry.
pub const INDEX_ENTRY_LEN: usize = 40;

/// One index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IndexEntry {
    pub inode: u64,
    pub digest: [u8; 32],
}

/// A decoded memdb index. `size` and `bytes` of the wire header are derived
/// from `entries`, and the decoder insists that they agree with the buffer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemdbIndex {
    pub version: u64,
    pub last_inode: u64,
    pub writer: u32,
    pub mtime: u32,
    pub entries: Vec<IndexEntry>,
}

impl MemdbIndex {
    /// Decode a STATE payload. Requires `len >= 32`, `bytes == len` (the
    /// original's check) and `bytes == 32 + 40 * size` (needed to read the
    /// entries safely). Entry order is not checked here.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload, "memdb index");
        let version = r.u64()?;
        let last_inode = r.u64()?;
        let writer = r.u32()?;
        let mtime = r.u32()?;
        let size = r.u32()?;
        let bytes = r.u32()?;
        if u64::from(bytes) != payload.len() as u64 {
            return Err(WireError::LengthMismatch {
                what: "memdb index bytes field",
                expected: bytes.into(),
                got: payload.len() as u64,
            });
        }
        let expected = INDEX_HEADER_LEN as u64 + INDEX_ENTRY_LEN as u64 * u64::from(size);
        if expected != payload.len() as u64 {
            return Err(WireError::LengthMismatch {
                what: "memdb index size field",
                expected,
                got: payload.len() as u64,
            });
        }
        // size is now bounded by the real buffer length.
        let mut entries = Vec::with_capacity(size as usize);
        for _ in 0..size {
            entries.push(IndexEntry {
                inode: r.u64()?,
                digest: r.array()?,
            });
        }
        Ok(MemdbIndex {
            version,
            last_inode,
            writer,
            mtime,
            entries,
        })
    }

    /// Encode like `memdb_encode_index`.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let total = INDEX_HEADER_LEN + INDEX_ENTRY_LEN * self.entries.len();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.last_inode.to_le_bytes());
        out.extend_from_slice(&self.writer.to_le_bytes());
        out.extend_from_slice(&self.mtime.to_le_bytes());
        out.extend_from_slice(&len_u32(self.entries.len(), "memdb index size")?.to_le_bytes());
        out.extend_from_slice(&len_u32(total, "memdb index bytes")?.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.inode.to_le_bytes());
            out.extend_from_slice(&e.digest);
        }
        Ok(out)
    }

    /// Look up the digest of `inode` (entries sorted by inode).
    pub fn digest_of(&self, inode: u64) -> Option<&[u8; 32]> {
        self.entries
            .binary_search_by_key(&inode, |e| e.inode)
            .ok()
            .map(|i| &self.entries[i].digest)
    }

    /// True if the entries are strictly ascending by inode.
    pub fn is_sorted(&self) -> bool {
        self.entries.windows(2).all(|w| w[0].inode < w[1].inode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trip_and_length_checks() {
        let idx = MemdbIndex {
            version: 3,
            last_inode: 2,
            writer: 0,
            mtime: 1795350134,
            entries: vec![
                IndexEntry {
                    inode: 0,
                    digest: [1; 32],
                },
                IndexEntry {
                    inode: 2,
                    digest: [2; 32],
                },
            ],
        };
        let b = idx.encode().unwrap();
        assert_eq!(b.len(), 112);
        assert_eq!(MemdbIndex::decode(&b).unwrap(), idx);
        assert_eq!(idx.digest_of(2), Some(&[2; 32]));
        for n in 0..b.len() {
            assert!(MemdbIndex::decode(&b[..n]).is_err());
        }
        let mut lie = b.clone();
        lie[24] = 0xff; // size field
        assert!(MemdbIndex::decode(&lie).is_err());
    }
}
