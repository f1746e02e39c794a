//! The cluster log: a fixed-size ring buffer of log entries with the byte layout of the
//! original pmxcfs (`logger.c`/`logger.h`), so that it can be exchanged with C nodes as the
//! kvstore STATE payload and single entries as kvstore LOG messages.
//!
//! Layout (all integers little-endian):
//!
//! * Ring (`clog_base_t`): `size u32` @0 (whole buffer incl. header), `cpos u32` @4 (offset of
//!   the newest entry, 0 = empty), entries from offset 8, each at an 8-byte aligned offset.
//! * Entry (`clog_entry_t`, 48 bytes + strings): `prev`, `next`, `uid`, `time` (u32 each),
//!   `node_digest`, `ident_digest` (u64, FNV-1a-64 including the NUL), `pid` u32,
//!   `priority`, `node_len`, `ident_len`, `tag_len` (u8 each), `msg_len` u32, then
//!   `node\0ident\0tag\0msg\0` from offset 44, followed by 4 slack bytes.
//!
//! The local log is kept as the raw buffer (including the stale bytes the original leaves
//! behind after a wrap-around), so `get_state` produces the same bytes as the C daemon.
//! Rings received from other nodes are validated before use ([`ClogRing::from_state`]): a
//! corrupt ring is a typed error, never a panic or an endless walk.
//!
//! Locking is left to the caller (wrap [`ClusterLog`] in a mutex).

use std::collections::{BTreeMap, HashMap, HashSet};

/// Total size of the ring buffer the original uses (`CLOG_DEFAULT_SIZE`).
pub const CLOG_DEFAULT_SIZE: u32 = 8192 * 16;
/// Maximum size of one entry including its 48-byte header (`CLOG_MAX_ENTRY_SIZE`).
pub const CLOG_MAX_ENTRY_SIZE: u32 = 4096;
/// Smallest ring size the original accepts when creating a ring.
pub const CLOG_MIN_SIZE: u32 = CLOG_MAX_ENTRY_SIZE * 10;
/// Size of the ring header (`size`, `cpos`).
pub const CLOG_HEADER_SIZE: u32 = 8;
/// `sizeof(clog_entry_t)`: the fixed part of an entry, including the 4 slack bytes.
pub const ENTRY_HEADER_SIZE: usize = 48;
/// Offset of the string data inside an entry.
pub const ENTRY_DATA_OFFSET: usize = 44;
/// Default number of entries in `.clusterlog` and for `GET_CLUSTER_LOG` with `max_entries == 0`.
pub const DEFAULT_DUMP_MAX: u32 = 50;

const FNV1A_64_INIT: u64 = 0xcbf2_9ce4_8422_2325;
const FNV1A_64_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Errors of the cluster-log module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClogError {
    #[error("log entry too short ({0} < 48 bytes)")]
    EntryTooShort(usize),
    #[error("log entry has {actual} bytes but its lengths say {expected}")]
    EntryLengthMismatch { actual: usize, expected: u64 },
    #[error("log entry of {0} bytes exceeds the {CLOG_MAX_ENTRY_SIZE}-byte limit")]
    EntryTooLarge(u64),
    #[error("unterminated {0} string in log entry")]
    Unterminated(&'static str),
    #[error("log priority {0} out of range (must be < 8)")]
    InvalidPriority(u8),
    #[error("invalid ring size {0}")]
    InvalidRingSize(u64),
    #[error("ring state too short ({0} bytes)")]
    RingTooShort(usize),
    #[error("ring size field {field} does not match the state length {len}")]
    RingSizeMismatch { field: u32, len: usize },
    #[error("ring entry at offset {offset} is corrupt: {reason}")]
    RingBadEntry { offset: u32, reason: &'static str },
    #[error("ring prev links loop back to offset {0}")]
    RingCycle(u32),
    #[error("merge needs at least 2 logs and a local index inside them")]
    BadMergeInput,
    #[error("invalid cluster log request: {0}")]
    InvalidRequest(&'static str),
}

impl ClogError {
    /// The errno an IPC caller gets for this error (all are invalid input).
    pub fn errno(&self) -> i32 {
        libc::EINVAL
    }
}

/// FNV-1a 64-bit hash (basis `0xcbf29ce484222325`, prime `0x100000001b3`).
pub fn fnv1a_64(data: &[u8]) -> u64 {
    data.iter().fold(FNV1A_64_INIT, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV1A_64_PRIME)
    })
}

/// The bytes of a C string: everything before the first NUL (or all of it).
pub fn until_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(n) => &b[..n],
        None => b,
    }
}

/// Escape a message the way the original stores it (`cfs-utils.c:utf8_to_ascii`).
///
/// The input ends at its first NUL. `bufsize` is the size of the C destination buffer
/// (including its NUL): conversion stops once the output has reached `bufsize - 7` bytes, so
/// the result is at most `bufsize - 2` bytes long. A `bufsize` of 10 or less gives "".
///
/// * `"` becomes `\"` when `quotequote` is set;
/// * control characters (< 32, and 127 in valid UTF-8) become `#` + 3 decimal digits;
/// * other BMP characters above 127 become `\uXXXX` (lower-case hex), others are dropped;
/// * if the input is not valid UTF-8, bytes >= 127 become `?`.
pub fn utf8_to_ascii(input: &[u8], bufsize: usize, quotequote: bool) -> String {
    let input = until_nul(input);
    let mut out = String::new();
    if bufsize <= 10 {
        return out;
    }
    let end = bufsize - 7;
    match std::str::from_utf8(input) {
        Ok(s) => {
            for ch in s.chars() {
                if out.len() >= end {
                    break;
                }
                let u = u32::from(ch);
                if u == 34 && quotequote {
                    out.push_str("\\\"");
                } else if u < 32 || u == 127 {
                    out.push_str(&format!("#{u:03}"));
                } else if u < 127 {
                    out.push(ch);
                } else if u < 65536 {
                    out.push_str(&format!("\\u{u:04x}"));
                }
                // characters beyond the BMP are dropped
            }
        }
        Err(_) => {
            for &b in input {
                if out.len() >= end {
                    break;
                }
                if b == 34 && quotequote {
                    out.push_str("\\\"");
                } else if b < 32 {
                    out.push_str(&format!("#0{b:02}"));
                } else if b < 127 {
                    out.push(char::from(b));
                } else {
                    out.push('?');
                }
            }
        }
    }
    out
}

fn rd_u32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0)
}

fn rd_u64(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

fn wr_u32(b: &mut [u8], off: usize, v: u32) {
    if let Some(s) = b.get_mut(off..off + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// One cluster-log entry (`clog_entry_t`) with its raw string fields.
///
/// The string fields keep their on-wire bytes including the terminating NUL, so an entry
/// received from another node is stored and forwarded byte for byte. The accessors
/// ([`LogEntry::node`] etc.) return the text before the first NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    uid: u32,
    time: u32,
    node_digest: u64,
    ident_digest: u64,
    pid: u32,
    priority: u8,
    node: Vec<u8>,
    ident: Vec<u8>,
    tag: Vec<u8>,
    msg: Vec<u8>,
    tail: [u8; 4],
}

impl LogEntry {
    /// Build an entry like `clog_pack`: strings end at their first NUL, `node`, `ident` and
    /// `tag` are cut to 254 bytes, the message is escaped with [`utf8_to_ascii`] and cut so
    /// that the entry (48 + the four lengths) stays within 4096 bytes. The digests are the
    /// FNV-1a-64 of the first `len` bytes of node and ident including the NUL.
    ///
    /// Unlike the original, a cut message keeps its NUL inside `msg_len` (the C code can
    /// produce entries whose message field lacks the NUL, which C receivers then reject).
    #[allow(clippy::too_many_arguments)]
    pub fn pack(
        node: &[u8],
        ident: &[u8],
        tag: &[u8],
        pid: u32,
        time: u32,
        priority: u8,
        msg: &[u8],
        uid: u32,
    ) -> Result<LogEntry, ClogError> {
        if priority >= 8 {
            return Err(ClogError::InvalidPriority(priority));
        }
        let (node_f, node_digest) = pack_field(node);
        let (ident_f, ident_digest) = pack_field(ident);
        let (tag_f, _) = pack_field(tag);
        let strings = node_f.len() + ident_f.len() + tag_f.len();
        let bufsize = CLOG_MAX_ENTRY_SIZE as usize - ENTRY_DATA_OFFSET - strings;
        let mut text = utf8_to_ascii(msg, bufsize, true);
        if ENTRY_HEADER_SIZE + strings + text.len() + 1 > CLOG_MAX_ENTRY_SIZE as usize {
            // three bytes less room guarantees that text + NUL fit
            text = utf8_to_ascii(msg, bufsize - 3, true);
        }
        let mut msg_f = text.into_bytes();
        msg_f.push(0);
        Ok(LogEntry {
            uid,
            time,
            node_digest,
            ident_digest,
            pid,
            priority,
            node: node_f,
            ident: ident_f,
            tag: tag_f,
            msg: msg_f,
            tail: [0; 4],
        })
    }

    /// Parse one raw entry as carried by a kvstore LOG message
    /// (`kvstore_parse_log_message`): `len >= 48`, `len == 48 + Σ lengths`, every non-empty
    /// string field ends in NUL, and the entry is at most 4096 bytes. `prev`/`next` are
    /// ignored.
    pub fn decode(b: &[u8]) -> Result<LogEntry, ClogError> {
        if b.len() < ENTRY_HEADER_SIZE {
            return Err(ClogError::EntryTooShort(b.len()));
        }
        let expected = raw_entry_size(b, 0);
        if expected != b.len() as u64 {
            return Err(ClogError::EntryLengthMismatch {
                actual: b.len(),
                expected,
            });
        }
        if expected > u64::from(CLOG_MAX_ENTRY_SIZE) {
            return Err(ClogError::EntryTooLarge(expected));
        }
        let e = decode_fields(b, 0);
        for (name, f) in [
            ("node", &e.node),
            ("ident", &e.ident),
            ("tag", &e.tag),
            ("msg", &e.msg),
        ] {
            if f.last().is_some_and(|&c| c != 0) {
                return Err(ClogError::Unterminated(name));
            }
        }
        Ok(e)
    }

    /// Encode as a kvstore LOG payload: `prev = next = 0`, size `48 + Σ lengths`.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.size()];
        self.write_into(&mut b);
        b
    }

    /// Bytes of this entry in a ring or message (48 + the four string lengths).
    pub fn size(&self) -> usize {
        ENTRY_HEADER_SIZE + self.node.len() + self.ident.len() + self.tag.len() + self.msg.len()
    }

    /// Write bytes 8.. of the entry (everything but prev/next) into `b[..self.size()]`.
    fn write_into(&self, b: &mut [u8]) {
        if b.len() < self.size() {
            return;
        }
        wr_u32(b, 8, self.uid);
        wr_u32(b, 12, self.time);
        b[16..24].copy_from_slice(&self.node_digest.to_le_bytes());
        b[24..32].copy_from_slice(&self.ident_digest.to_le_bytes());
        wr_u32(b, 32, self.pid);
        b[36] = self.priority;
        b[37] = self.node.len() as u8;
        b[38] = self.ident.len() as u8;
        b[39] = self.tag.len() as u8;
        wr_u32(b, 40, self.msg.len() as u32);
        let mut p = ENTRY_DATA_OFFSET;
        for f in [&self.node, &self.ident, &self.tag, &self.msg] {
            b[p..p + f.len()].copy_from_slice(f);
            p += f.len();
        }
        b[p..p + 4].copy_from_slice(&self.tail);
    }

    pub fn uid(&self) -> u32 {
        self.uid
    }
    pub fn time(&self) -> u32 {
        self.time
    }
    pub fn node_digest(&self) -> u64 {
        self.node_digest
    }
    pub fn ident_digest(&self) -> u64 {
        self.ident_digest
    }
    pub fn pid(&self) -> u32 {
        self.pid
    }
    pub fn priority(&self) -> u8 {
        self.priority
    }
    /// Node name (text before the first NUL).
    pub fn node(&self) -> &[u8] {
        until_nul(&self.node)
    }
    /// Ident, shown as `user` in the JSON dump.
    pub fn ident(&self) -> &[u8] {
        until_nul(&self.ident)
    }
    pub fn tag(&self) -> &[u8] {
        until_nul(&self.tag)
    }
    /// The stored (already escaped) message. Like C's `%s`, a message field without a NUL
    /// continues into the 4 slack bytes.
    pub fn msg(&self) -> Vec<u8> {
        let mut m = self.msg.clone();
        m.extend_from_slice(&self.tail);
        until_nul(&m).to_vec()
    }
    /// The sort/merge key `(time, node_digest, uid)`.
    pub fn key(&self) -> (u32, u64, u32) {
        (self.time, self.node_digest, self.uid)
    }

    /// One JSON object as in `.clusterlog` (strings inserted without further escaping).
    fn dump_json_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(
            format!(
                "{{\"uid\": {}, \"time\": {}, \"pri\": {}, \"tag\": \"",
                self.uid, self.time, self.priority
            )
            .as_bytes(),
        );
        out.extend_from_slice(self.tag());
        out.extend_from_slice(format!("\", \"pid\": {}, \"node\": \"", self.pid).as_bytes());
        out.extend_from_slice(self.node());
        out.extend_from_slice(b"\", \"user\": \"");
        out.extend_from_slice(self.ident());
        out.extend_from_slice(b"\", \"msg\": \"");
        out.extend_from_slice(&self.msg());
        out.extend_from_slice(b"\"}");
    }
}

/// `(field bytes incl. NUL, digest)` for node/ident/tag as `clog_pack` computes them:
/// `len = min(strlen + 1, 255)`, the digest covers the first `len` bytes of the input
/// (so a 255+ byte name is hashed without a NUL), the stored field is cut to `len - 1`
/// bytes plus NUL.
fn pack_field(s: &[u8]) -> (Vec<u8>, u64) {
    let s = until_nul(s);
    let len = (s.len() + 1).min(255);
    let mut with_nul = s.to_vec();
    with_nul.push(0);
    let digest = fnv1a_64(&with_nul[..len]);
    let mut field = s[..len - 1].to_vec();
    field.push(0);
    (field, digest)
}

/// 48 + the four lengths of the entry starting at `off` (caller checked 48 bytes exist).
fn raw_entry_size(b: &[u8], off: usize) -> u64 {
    ENTRY_HEADER_SIZE as u64
        + u64::from(b[off + 37])
        + u64::from(b[off + 38])
        + u64::from(b[off + 39])
        + u64::from(rd_u32(b, off + 40))
}

/// Decode the entry at `off`; the caller checked that `off + size <= b.len()`.
fn decode_fields(b: &[u8], off: usize) -> LogEntry {
    let (nl, il, tl) = (
        b[off + 37] as usize,
        b[off + 38] as usize,
        b[off + 39] as usize,
    );
    let ml = rd_u32(b, off + 40) as usize;
    let mut p = off + ENTRY_DATA_OFFSET;
    let mut take = |n: usize| {
        let f = b.get(p..p + n).map(<[u8]>::to_vec).unwrap_or_default();
        p += n;
        f
    };
    let node = take(nl);
    let ident = take(il);
    let tag = take(tl);
    let msg = take(ml);
    let tail_v = take(4);
    let mut tail = [0u8; 4];
    if tail_v.len() == 4 {
        tail.copy_from_slice(&tail_v);
    }
    LogEntry {
        uid: rd_u32(b, off + 8),
        time: rd_u32(b, off + 12),
        node_digest: rd_u64(b, off + 16),
        ident_digest: rd_u64(b, off + 24),
        pid: rd_u32(b, off + 32),
        priority: b[off + 36],
        node,
        ident,
        tag,
        msg,
        tail,
    }
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
        if let Err(e) = check_entry_at(b, p) {
            w.error = Some(e);
            break;
        }
        w.offsets.push(p);
        let prev = rd_u32(b, p as usize);
        if p < prev && prev <= cpos {
            w.wrap_stop = true;
            break;
        }
        p = prev;
    }
    w
}

fn check_entry_at(b: &[u8], p: u32) -> Result<(), ClogError> {
    let bad = |reason| ClogError::RingBadEntry { offset: p, reason };
    let off = p as usize;
    if p < CLOG_HEADER_SIZE {
        return Err(bad("offset inside the ring header"));
    }
    if off + ENTRY_HEADER_SIZE > b.len() {
        return Err(bad("entry header beyond the end of the ring"));
    }
    let size = raw_entry_size(b, off);
    if size > u64::from(CLOG_MAX_ENTRY_SIZE) {
        return Err(bad("entry larger than 4096 bytes"));
    }
    if off as u64 + size > b.len() as u64 {
        return Err(bad("entry data beyond the end of the ring"));
    }
    Ok(())
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
        if state.len() <= CLOG_HEADER_SIZE as usize {
            return Err(ClogError::RingTooShort(state.len()));
        }
        let field = rd_u32(state, 0);
        if field as usize != state.len() {
            return Err(ClogError::RingSizeMismatch {
                field,
                len: state.len(),
            });
        }
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
            .map(|&p| decode_fields(&self.buf, p as usize))
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
            rd_u32(&self.buf, cpos as usize + 4) as usize
        };
        if newpos < CLOG_HEADER_SIZE as usize || newpos + real >= total {
            newpos = CLOG_HEADER_SIZE as usize;
        }
        if newpos + real > total {
            return; // ring too small for this entry (not possible for valid ring sizes)
        }
        let slot = &mut self.buf[newpos..newpos + size];
        e.write_into(slot);
        wr_u32(slot, 0, cpos);
        wr_u32(slot, 4, (newpos + real) as u32);
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
        let filter = ident.map(until_nul).filter(|i| !i.is_empty()).map(|i| {
            let mut v = i.to_vec();
            v.push(0);
            fnv1a_64(&v)
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
            let e = decode_fields(&self.buf, p as usize);
            if filter.is_some_and(|d| d != e.ident_digest) {
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

/// The cluster log of one node: ring buffer, per-node dedup table and uid counter
/// (`clusterlog_t` plus `logger.c`'s `uid_counter`).
#[derive(Debug, Clone)]
pub struct ClusterLog {
    ring: ClogRing,
    /// node_digest → newest (time, uid) accepted.
    dedup: HashMap<u64, (u32, u32)>,
    uid_counter: u32,
}

impl Default for ClusterLog {
    fn default() -> Self {
        Self::new()
    }
}

/// Record `e` in a dedup table; true when it is strictly newer than what was seen for its node.
fn dedup_check(dedup: &mut HashMap<u64, (u32, u32)>, e: &LogEntry) -> bool {
    match dedup.get_mut(&e.node_digest) {
        None => {
            dedup.insert(e.node_digest, (e.time, e.uid));
            true
        }
        Some(last) => {
            if e.time > last.0 || (e.time == last.0 && e.uid > last.1) {
                *last = (e.time, e.uid);
                true
            } else {
                false
            }
        }
    }
}

impl ClusterLog {
    pub fn new() -> ClusterLog {
        ClusterLog {
            ring: ClogRing::new(),
            dedup: HashMap::new(),
            uid_counter: 0,
        }
    }

    /// The current ring buffer.
    pub fn ring(&self) -> &ClogRing {
        &self.ring
    }

    /// Entries newest first.
    pub fn entries(&self) -> Vec<LogEntry> {
        self.ring.entries()
    }

    /// Pack a new local entry with the next uid (1, 2, ...). The uid is only consumed
    /// when the priority is valid.
    #[allow(clippy::too_many_arguments)]
    pub fn pack(
        &mut self,
        node: &[u8],
        ident: &[u8],
        tag: &[u8],
        pid: u32,
        time: u32,
        priority: u8,
        msg: &[u8],
    ) -> Result<LogEntry, ClogError> {
        if priority >= 8 {
            return Err(ClogError::InvalidPriority(priority));
        }
        self.uid_counter = self.uid_counter.wrapping_add(1);
        LogEntry::pack(node, ident, tag, pid, time, priority, msg, self.uid_counter)
    }

    /// Insert with dedup (`clusterlog_insert`): only entries strictly newer by `(time, uid)`
    /// than the last one accepted for the same node digest go in. Returns whether it did.
    pub fn insert(&mut self, e: &LogEntry) -> bool {
        if dedup_check(&mut self.dedup, e) {
            self.ring.append(e);
            true
        } else {
            tracing::info!("ignore insert of duplicate cluster log");
            false
        }
    }

    /// Pack and insert a local entry (`clusterlog_add`); returns the entry so that the
    /// caller can multicast it (only IPC-logged entries are sent to the cluster).
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        node: &[u8],
        ident: &[u8],
        tag: &[u8],
        pid: u32,
        time: u32,
        priority: u8,
        msg: &[u8],
    ) -> Result<LogEntry, ClogError> {
        let e = self.pack(node, ident, tag, pid, time, priority, msg)?;
        self.insert(&e);
        Ok(e)
    }

    /// JSON dump, see [`ClogRing::dump_json`].
    pub fn dump_json(&self, ident: Option<&[u8]>, max_entries: u32) -> Vec<u8> {
        self.ring.dump_json(ident, max_entries)
    }

    /// The kvstore STATE payload (`clusterlog_get_state`): the log is re-sorted in place
    /// first, then the whole buffer is returned.
    pub fn get_state(&mut self) -> Vec<u8> {
        if let Some(sorted) = self.ring.sorted() {
            self.ring = sorted;
        }
        self.ring.as_bytes().to_vec()
    }

    /// Merge the logs of all members after a kvstore sync (`clusterlog_merge`).
    ///
    /// `logs[local_index]` is ignored: the live local ring is used in its place. `None`
    /// stands for a member whose state was unusable. Repeatedly the newest entry (largest
    /// `time`, first log on ties, time 0 never) across all cursors is taken and put into a set
    /// keyed by `(time, node_digest, uid)` unless present; the merge stops once the slots of
    /// the taken entries reach `131072 - 8 - 4096` bytes. The set is written oldest first into
    /// a fresh default-size ring that replaces the local one; a dedup table rebuilt from the
    /// taken entries replaces the old one.
    pub fn merge(
        &mut self,
        logs: &[Option<&ClogRing>],
        local_index: usize,
    ) -> Result<(), ClogError> {
        if logs.len() < 2 || local_index >= logs.len() {
            return Err(ClogError::BadMergeInput);
        }
        let rings: Vec<Option<&ClogRing>> = logs
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if i == local_index {
                    Some(&self.ring)
                } else {
                    *l
                }
            })
            .collect();
        // each log's entries newest first, exactly the sequence the original's cursor visits
        let lists: Vec<Vec<LogEntry>> = rings
            .iter()
            .map(|r| r.map(|r| r.entries()).unwrap_or_default())
            .collect();
        let mut cursor = vec![0usize; lists.len()];
        let mut tree: BTreeMap<(u32, u64, u32), &LogEntry> = BTreeMap::new();
        let mut dedup = HashMap::new();
        let maxsize = (CLOG_DEFAULT_SIZE - CLOG_HEADER_SIZE - CLOG_MAX_ENTRY_SIZE) as usize;
        let mut logsize = 0usize;
        loop {
            let mut found = None;
            let mut last = 0u32;
            for (i, l) in lists.iter().enumerate() {
                if let Some(e) = l.get(cursor[i]) {
                    if e.time > last {
                        last = e.time;
                        found = Some(i);
                    }
                }
            }
            let Some(i) = found else { break };
            let e = &lists[i][cursor[i]];
            if let std::collections::btree_map::Entry::Vacant(v) = tree.entry(e.key()) {
                v.insert(e);
                dedup_check(&mut dedup, e);
                logsize += align8(e.size());
                if logsize >= maxsize {
                    break;
                }
            }
            cursor[i] += 1;
        }
        let mut res = ClogRing::new();
        for e in tree.values() {
            res.append(e);
        }
        self.ring = res;
        self.dedup = dedup;
        Ok(())
    }

    /// [`ClusterLog::merge`] on raw STATE payloads. Unusable states are logged and treated
    /// as missing (like the original); the errors are returned per index for the caller.
    pub fn merge_states(
        &mut self,
        states: &[Option<&[u8]>],
        local_index: usize,
    ) -> Result<Vec<Option<ClogError>>, ClogError> {
        if states.len() < 2 || local_index >= states.len() {
            return Err(ClogError::BadMergeInput);
        }
        let mut errors = vec![None; states.len()];
        let mut rings = Vec::with_capacity(states.len());
        for (i, s) in states.iter().enumerate() {
            if i == local_index {
                rings.push(None);
                continue;
            }
            match s.map(ClogRing::from_state) {
                Some(Ok(r)) => rings.push(Some(r)),
                Some(Err(e)) => {
                    tracing::error!("received unusable cluster log state from member {i}: {e}");
                    errors[i] = Some(e);
                    rings.push(None);
                }
                None => rings.push(None),
            }
        }
        let refs: Vec<Option<&ClogRing>> = rings.iter().map(Option::as_ref).collect();
        self.merge(&refs, local_index)?;
        Ok(errors)
    }
}

/// A parsed IPC `LOG_CLUSTER_MSG` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRequest {
    pub priority: u8,
    pub ident: Vec<u8>,
    pub tag: Vec<u8>,
    pub msg: Vec<u8>,
}

impl LogRequest {
    /// Parse the payload after the 16-byte IPC header: `priority u8`, `ident_len u8`,
    /// `tag_len u8`, then `ident\0 tag\0 msg`. The lengths include the NUL and must be ≥ 1;
    /// at least one message byte must follow (else EINVAL); ident and tag must end in NUL.
    /// The message runs to its first NUL or the end of the payload. A priority ≥ 8 parses
    /// fine (the original drops such entries silently and still returns 0).
    pub fn parse(payload: &[u8]) -> Result<LogRequest, ClogError> {
        if payload.len() < 3 {
            return Err(ClogError::InvalidRequest("short log request"));
        }
        let (priority, il, tl) = (payload[0], payload[1] as usize, payload[2] as usize);
        let data = &payload[3..];
        if data.len() < il + tl + 1 {
            return Err(ClogError::InvalidRequest("no message"));
        }
        if il == 0 || tl == 0 || data[il - 1] != 0 || data[il + tl - 1] != 0 {
            return Err(ClogError::InvalidRequest("ident or tag not NUL-terminated"));
        }
        Ok(LogRequest {
            priority,
            ident: until_nul(&data[..il]).to_vec(),
            tag: until_nul(&data[il..il + tl]).to_vec(),
            msg: until_nul(&data[il + tl..]).to_vec(),
        })
    }
}

/// Parse an IPC `GET_CLUSTER_LOG` payload (after the 16-byte header): `max_entries u32`,
/// 3 reserved u32, then the user (ident) filter string. Returns `(max, user)` with
/// `max = 50` when `max_entries == 0`; an empty user string means no filter. No user
/// bytes at all → EINVAL.
pub fn parse_get_log_request(payload: &[u8]) -> Result<(u32, Vec<u8>), ClogError> {
    if payload.len() <= 16 {
        return Err(ClogError::InvalidRequest("no user field"));
    }
    let max = rd_u32(payload, 0);
    let user = &payload[16..];
    // the original forces the last byte to NUL
    let user = until_nul(&user[..user.len() - 1]).to_vec();
    Ok((if max == 0 { DEFAULT_DUMP_MAX } else { max }, user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a_64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a_64(b"node3\0"), 0xe6fcafc220cec54e);
        assert_eq!(fnv1a_64(b"golden-ident\0"), 0xbbe612be89edece9);
    }

    #[test]
    fn escaping() {
        assert_eq!(utf8_to_ascii(b"plain", 100, true), "plain");
        assert_eq!(utf8_to_ascii(b"a\"b", 100, true), "a\\\"b");
        assert_eq!(utf8_to_ascii(b"a\"b", 100, false), "a\"b");
        assert_eq!(utf8_to_ascii(b"l1\nl2\x7f", 100, true), "l1#010l2#127");
        assert_eq!(utf8_to_ascii("é€".as_bytes(), 100, true), "\\u00e9\\u20ac");
        assert_eq!(utf8_to_ascii("a😀b".as_bytes(), 100, true), "ab");
        // invalid UTF-8: bytes >= 127 become '?', controls #0NN
        assert_eq!(utf8_to_ascii(b"x\xff\x7f\n\"", 100, true), "x??#010\\\"");
        assert_eq!(utf8_to_ascii(b"abc\0def", 100, true), "abc");
        // bounded: stops once 100 - 7 bytes are written
        let long = vec![b'x'; 500];
        assert_eq!(utf8_to_ascii(&long, 100, true).len(), 93);
        let long = "é".repeat(500);
        let s = utf8_to_ascii(long.as_bytes(), 100, true);
        assert!(s.len() <= 98 && s.len() >= 93, "{}", s.len());
        assert_eq!(utf8_to_ascii(b"abc", 10, true), "");
    }

    #[test]
    fn pack_limits() {
        let long_node = vec![b'n'; 300];
        let e = LogEntry::pack(&long_node, b"root", b"t", 1, 2, 6, b"m", 1).unwrap();
        assert_eq!(e.node().len(), 254);
        assert_eq!(e.node_digest(), fnv1a_64(&long_node[..255]));
        let huge = vec![b'"'; 10000];
        let e = LogEntry::pack(b"n", b"i", b"t", 1, 2, 6, &huge, 1).unwrap();
        assert!(e.size() <= 4096, "{}", e.size());
        assert_eq!(*e.msg.last().unwrap(), 0);
        let d = LogEntry::decode(&e.encode()).unwrap();
        assert_eq!(d, e);
        assert_eq!(
            LogEntry::pack(b"n", b"i", b"t", 1, 2, 8, b"m", 1),
            Err(ClogError::InvalidPriority(8))
        );
    }

    #[test]
    fn dump_empty_and_one() {
        let mut cl = ClusterLog::new();
        assert_eq!(cl.dump_json(None, 50), b"{\n\"data\": [\n]\n}\n");
        cl.add(
            b"testnode",
            b"root",
            b"cluster",
            12418,
            1795345923,
            6,
            b"starting cluster log",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(cl.dump_json(None, 50)).unwrap(),
            "{\n\"data\": [\n{\"uid\": 1, \"time\": 1795345923, \"pri\": 6, \"tag\": \"cluster\", \
             \"pid\": 12418, \"node\": \"testnode\", \"user\": \"root\", \"msg\": \"starting cluster log\"}\n]\n}\n"
        );
    }

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
