//! The cluster-log ring buffer (`clog_base_t`) as raw bytes: append, walk newest to oldest
//! with the original's rules, validate a received ring, sort, dump as JSON.

use std::collections::{BTreeMap, HashSet};

use pmxcfs_dfsm::wire::cstr_prefix;
use pmxcfs_dfsm::wire::kvstore::{fnv1a64, ClogHeader, ClogState};

use super::entry::LogEntry;
use super::{ClogError, CLOG_DEFAULT_SIZE, CLOG_HEADER_SIZE, CLOG_MAX_ENTRY_SIZE, CLOG_MIN_SIZE, ENTRY_HEADER_SIZE};

/// A u32 of the ring header (0 beyond the end).
fn rd_u32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0)
}

fn wr_u32(b: &mut [u8], off: usize, v: u32) {
    if let Some(s) = b.get_mut(off..off + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// The slot an entry of `n` bytes takes in the ring.
pub(super) fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// Result of walking a ring from `cpos` along the `prev` links.
struct Walk {
    /// Entry offsets, newest first.
    offsets: Vec<u32>,
    /// The walk ended because the last entry's `prev` pointed into overwritten space
    /// (the original's JSON dump leaves that last entry out).
    wrap_stop: bool,
    /// Why the walk was cut short, if the ring is corrupt.
    error: Option<ClogError>,
}

/// Walk newest → oldest with the original's rules, checking every visited entry.
///
/// Continue while `p != 0 && (p <= cpos || p > cpos + 4096)`; stop after an entry with
/// `p < prev <= cpos`. Each entry must lie inside the buffer and be at most 4096 bytes; a
/// revisited offset is a cycle. Both are errors that end the walk.
fn walk(b: &[u8]) -> Walk {
    let mut w = Walk {
        offsets: Vec::new(),
        wrap_stop: false,
        error: None,
    };
    let cpos = rd_u32(b, 4);
    let window =
        |p: u32| p <= cpos || u64::from(p) > u64::from(cpos) + u64::from(CLOG_MAX_ENTRY_SIZE);
    let mut seen = HashSet::new();
    let mut p = cpos;
    while p != 0 && window(p) {
        if !seen.insert(p) {
            w.error = Some(ClogError::RingCycle(p));
            break;
        }
        let prev = match check_entry_at(b, p) {
            Ok(h) => h.prev,
            Err(e) => {
                w.error = Some(e);
                break;
            }
        };
        w.offsets.push(p);
        if p < prev && prev <= cpos {
            w.wrap_stop = true;
            break;
        }
        p = prev;
    }
    w
}

/// The header of the entry at `p`, if the whole entry lies inside the ring.
fn check_entry_at(b: &[u8], p: u32) -> Result<ClogHeader, ClogError> {
    let bad = |reason| ClogError::RingBadEntry { offset: p, reason };
    let off = p as usize;
    if p < CLOG_HEADER_SIZE {
        return Err(bad("offset inside the ring header"));
    }
    if off + ENTRY_HEADER_SIZE > b.len() {
        return Err(bad("entry header beyond the end of the ring"));
    }
    let header = ClogHeader::decode(&b[off..]).map_err(|_| bad("entry header beyond the end of the ring"))?;
    let size = header.entry_len();
    if size > u64::from(CLOG_MAX_ENTRY_SIZE) {
        return Err(bad("entry larger than 4096 bytes"));
    }
    if off as u64 + size > b.len() as u64 {
        return Err(bad("entry data beyond the end of the ring"));
    }
    Ok(header)
}
/// A cluster-log ring buffer (`clog_base_t`) as raw bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct ClogRing {
    buf: Vec<u8>,
}

impl std::fmt::Debug for ClogRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClogRing")
            .field("size", &self.size())
            .field("cpos", &self.cpos())
            .field("entries", &self.entries().len())
            .finish()
    }
}

impl Default for ClogRing {
    fn default() -> Self {
        Self::new()
    }
}

impl ClogRing {
    /// An empty ring of the default size (131072 bytes).
    pub fn new() -> ClogRing {
        let mut buf = vec![0u8; CLOG_DEFAULT_SIZE as usize];
        wr_u32(&mut buf, 0, CLOG_DEFAULT_SIZE);
        ClogRing { buf }
    }

    /// An empty ring of `size` bytes (at least 40960, a multiple of 8).
    pub fn with_size(size: u32) -> Result<ClogRing, ClogError> {
        if size < CLOG_MIN_SIZE || !size.is_multiple_of(8) {
            return Err(ClogError::InvalidRingSize(u64::from(size)));
        }
        let mut buf = vec![0u8; size as usize];
        wr_u32(&mut buf, 0, size);
        Ok(ClogRing { buf })
    }

    /// Validate a ring received as a kvstore STATE payload.
    ///
    /// Requires `len > 8` and `size == len` (like the original), plus what the original
    /// trusts blindly: every entry reachable from `cpos` lies inside the buffer, is at most
    /// 4096 bytes, and the `prev` chain does not loop.
    pub fn from_state(state: &[u8]) -> Result<ClogRing, ClogError> {
        ClogState::decode(state).map_err(|_| {
            if state.len() <= CLOG_HEADER_SIZE as usize {
                ClogError::RingTooShort(state.len())
            } else {
                ClogError::RingSizeMismatch {
                    field: rd_u32(state, 0),
                    len: state.len(),
                }
            }
        })?;
        let w = walk(state);
        if let Some(e) = w.error {
            return Err(e);
        }
        Ok(ClogRing {
            buf: state.to_vec(),
        })
    }

    /// The raw buffer (what goes into a kvstore STATE message).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn size(&self) -> u32 {
        rd_u32(&self.buf, 0)
    }

    /// Offset of the newest entry, 0 when empty.
    pub fn cpos(&self) -> u32 {
        rd_u32(&self.buf, 4)
    }

    pub fn is_empty(&self) -> bool {
        self.cpos() == 0
    }

    /// Entries newest first, as far as the walk rules reach.
    pub fn entries(&self) -> Vec<LogEntry> {
        walk(&self.buf)
            .offsets
            .iter()
            .filter_map(|&p| LogEntry::at(&self.buf, p as usize))
            .collect()
    }

    /// Append an entry (`clog_alloc_entry` + `clog_copy`): the slot is the entry size
    /// rounded up to 8; it goes after the newest entry, or to offset 8 when it would reach
    /// the end of the buffer. `prev` = old `cpos`, `next` = offset + slot. Bytes after the
    /// entry inside its slot are left as they were. Entries over 4096 bytes are ignored.
    pub fn append(&mut self, e: &LogEntry) {
        let size = e.size();
        if size > CLOG_MAX_ENTRY_SIZE as usize {
            return;
        }
        let real = align8(size);
        let total = self.buf.len();
        let cpos = self.cpos();
        let mut newpos = if cpos == 0 {
            CLOG_HEADER_SIZE as usize
        } else {
            let newest = self.buf.get(cpos as usize..).and_then(|b| ClogHeader::decode(b).ok());
            newest.map_or(0, |h| h.next as usize)
        };
        if newpos < CLOG_HEADER_SIZE as usize || newpos + real >= total {
            newpos = CLOG_HEADER_SIZE as usize;
        }
        if newpos + real > total {
            return; // ring too small for this entry (not possible for valid ring sizes)
        }
        e.write_into(&mut self.buf[newpos..newpos + size], cpos, (newpos + real) as u32);
        wr_u32(&mut self.buf, 4, newpos as u32);
    }

    /// A new ring of the same size holding the entries sorted by `(time, node_digest, uid)`,
    /// oldest first, equal keys collapsed (`clog_sort`). `None` for an empty ring.
    pub fn sorted(&self) -> Option<ClogRing> {
        if self.is_empty() {
            return None;
        }
        let mut tree = BTreeMap::new();
        for e in self.entries() {
            tree.insert(e.key(), e);
        }
        let mut res = ClogRing {
            buf: vec![0u8; self.buf.len()],
        };
        wr_u32(&mut res.buf, 0, self.size());
        for e in tree.values() {
            res.append(e);
        }
        Some(res)
    }

    /// The JSON text of `.clusterlog` / `GET_CLUSTER_LOG` (`clog_dump_json`): newest first,
    /// at most `max_entries` entries, only those whose ident digest matches `ident` when it is
    /// non-empty. Strings are inserted verbatim (messages were escaped when stored).
    pub fn dump_json(&self, ident: Option<&[u8]>, max_entries: u32) -> Vec<u8> {
        let filter = ident.map(cstr_prefix).filter(|i| !i.is_empty()).map(|i| {
            let mut v = i.to_vec();
            v.push(0);
            fnv1a64(&v)
        });
        let w = walk(&self.buf);
        let mut offsets = w.offsets.as_slice();
        if w.wrap_stop {
            // the original stops before printing the entry whose prev wraps
            offsets = &offsets[..offsets.len() - 1];
        }
        let mut out = b"{\n\"data\": [\n".to_vec();
        let mut count = 0u32;
        for &p in offsets {
            if count >= max_entries {
                break;
            }
            let Some(e) = LogEntry::at(&self.buf, p as usize) else {
                continue;
            };
            if filter.is_some_and(|d| d != e.meta.ident_digest) {
                continue;
            }
            if count > 0 {
                out.extend_from_slice(b",\n");
            }
            e.dump_json_into(&mut out);
            count += 1;
        }
        if count > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(b"]\n}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_detects_cycle() {
        let mut r = ClogRing::with_size(CLOG_MIN_SIZE).unwrap();
        let e = LogEntry::pack(b"n", b"i", b"t", 1, 2, 6, b"m", 1).unwrap();
        r.append(&e);
        // entry at 8 pointing at itself
        wr_u32(&mut r.buf, 8, 8);
        assert_eq!(
            ClogRing::from_state(r.as_bytes()).unwrap_err(),
            ClogError::RingCycle(8)
        );
    }
}
