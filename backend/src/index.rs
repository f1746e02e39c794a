//! The memdb index (DFSM state of the file tree) and the SHA-256 checksums over entries.
//!
//! Layouts are the original's, integers little-endian: index header
//! `version u64, last_inode u64, writer u32, mtime u32, size u32, bytes u32`, then per entry
//! `inode u64, digest [u8; 32]`, sorted by inode.

use sha2::{Digest, Sha256};

use crate::entry::Entry;

/// Size of the index header.
pub const INDEX_HEADER_LEN: usize = 32;
/// Size of one index entry.
pub const INDEX_ENTRY_LEN: usize = 40;

fn hash_fields(h: &mut Sha256, e: &Entry) {
    h.update(e.version.to_le_bytes());
    h.update(e.writer.to_le_bytes());
    h.update(e.mtime.to_le_bytes());
    h.update(e.size().to_le_bytes());
    h.update([e.kind()]);
    h.update(e.parent.to_le_bytes());
    h.update(crate::name_bytes::encode(&e.name));
    if !e.data().is_empty() {
        h.update(e.data());
    }
}

/// Per-entry digest used in the index: everything but the inode.
pub fn entry_digest(e: &Entry) -> [u8; 32] {
    let mut h = Sha256::new();
    hash_fields(&mut h, e);
    h.finalize().into()
}

/// Lock checksum (`memdb_tree_entry_csum`): inode, version, writer, mtime, size, type,
/// parent, name, data.
pub fn entry_csum(e: &Entry) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(e.inode.to_le_bytes());
    hash_fields(&mut h, e);
    h.finalize().into()
}

/// Whole-tree checksum (`memdb_compute_checksum`): entries in inode order, each as
/// `inode` followed by the digest fields.
pub fn tree_checksum<'a>(sorted_entries: impl Iterator<Item = &'a Entry>) -> [u8; 32] {
    let mut h = Sha256::new();
    for e in sorted_entries {
        h.update(e.inode.to_le_bytes());
        hash_fields(&mut h, e);
    }
    h.finalize().into()
}

/// Encodes the index of entries sorted by inode; `root` supplies version/writer/mtime.
pub fn encode_index<'a>(root: &Entry, sorted_entries: impl Iterator<Item = &'a Entry>) -> Vec<u8> {
    let mut body = Vec::new();
    let mut count: u32 = 0;
    let mut last_inode = 0u64;
    for e in sorted_entries {
        body.extend_from_slice(&e.inode.to_le_bytes());
        body.extend_from_slice(&entry_digest(e));
        last_inode = last_inode.max(e.inode);
        count += 1;
    }
    let mut out = Vec::with_capacity(INDEX_HEADER_LEN + body.len());
    out.extend_from_slice(&root.version.to_le_bytes());
    out.extend_from_slice(&last_inode.to_le_bytes());
    out.extend_from_slice(&root.writer.to_le_bytes());
    out.extend_from_slice(&root.mtime.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&((INDEX_HEADER_LEN as u32) + INDEX_ENTRY_LEN as u32 * count).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A borrowed, checked view of an encoded index: header fields, then the `(inode, digest)`
/// entries in strictly increasing inode order.
#[derive(Debug, Clone, Copy)]
pub struct IndexView<'a> {
    pub version: u64,
    pub last_inode: u64,
    pub writer: u32,
    pub mtime: u32,
    body: &'a [u8],
}

impl<'a> IndexView<'a> {
    /// Checks the layout (lengths, counts, sorted inodes, `last_inode`) of `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<IndexView<'a>, String> {
        let header = bytes.get(..INDEX_HEADER_LEN).ok_or("index shorter than its header")?;
        let u64_at = |o: usize| u64::from_le_bytes(header[o..o + 8].try_into().expect("8 bytes"));
        let u32_at = |o: usize| u32::from_le_bytes(header[o..o + 4].try_into().expect("4 bytes"));
        let count = u32_at(24) as usize;
        let size = u32_at(28) as usize;
        if size != bytes.len() || size != INDEX_HEADER_LEN + count * INDEX_ENTRY_LEN {
            return Err(format!("index of {} bytes claims {size} bytes and {count} entries", bytes.len()));
        }
        let view = IndexView { version: u64_at(0), last_inode: u64_at(8), writer: u32_at(16), mtime: u32_at(20), body: &bytes[INDEX_HEADER_LEN..] };
        let mut prev: Option<u64> = None;
        for i in 0..count {
            let ino = view.inode(i);
            if prev.is_some_and(|p| p >= ino) {
                return Err(format!("index entries not sorted at inode {ino}"));
            }
            prev = Some(ino);
        }
        if prev.unwrap_or(0) != view.last_inode {
            return Err(format!("index last_inode {} but its highest entry is {}", view.last_inode, prev.unwrap_or(0)));
        }
        Ok(view)
    }

    pub fn len(&self) -> usize {
        self.body.len() / INDEX_ENTRY_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// Inode of entry `i`.
    pub fn inode(&self, i: usize) -> u64 {
        let o = i * INDEX_ENTRY_LEN;
        u64::from_le_bytes(self.body[o..o + 8].try_into().expect("8 bytes"))
    }

    /// Digest of entry `i`.
    pub fn digest(&self, i: usize) -> &'a [u8] {
        let o = i * INDEX_ENTRY_LEN + 8;
        &self.body[o..o + 32]
    }

    /// Whether `inode` is listed (binary search).
    pub fn contains(&self, inode: u64) -> bool {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.inode(mid).cmp(&inode) {
                std::cmp::Ordering::Equal => return true,
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        false
    }
}
