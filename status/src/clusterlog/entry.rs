//! One cluster-log entry as the ring stores it: built from a client's request (`clog_pack`),
//! decoded from a kvstore LOG message, written into a ring, printed as JSON.

use pmxcfs_dfsm::wire::cstr_prefix;
use pmxcfs_dfsm::wire::kvstore::{fnv1a64, ClogHeader, ClogMeta};

use super::escape::utf8_to_ascii;
use super::{ClogError, CLOG_MAX_ENTRY_SIZE, ENTRY_DATA_OFFSET, ENTRY_HEADER_SIZE};

/// One cluster-log entry (`clog_entry_t`) with its raw string fields.
///
/// The string fields keep their on-wire bytes including the terminating NUL, so an entry
/// received from another node is stored and forwarded byte for byte. The accessors
/// ([`LogEntry::node`] etc.) return the text before the first NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub(super) meta: ClogMeta,
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
            meta: ClogMeta {
                uid,
                time,
                node_digest,
                ident_digest,
                pid,
                priority,
            },
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
        let h = ClogHeader::decode(b).map_err(|_| ClogError::EntryTooShort(b.len()))?;
        let expected = h.entry_len();
        if expected != b.len() as u64 {
            return Err(ClogError::EntryLengthMismatch {
                actual: b.len(),
                expected,
            });
        }
        if expected > u64::from(CLOG_MAX_ENTRY_SIZE) {
            return Err(ClogError::EntryTooLarge(expected));
        }
        let e = LogEntry::from_header(&h, b).ok_or(ClogError::EntryTooShort(b.len()))?;
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

    /// The entry whose header `h` starts `bytes`, which hold at least `h.entry_len()` bytes
    /// (`None` otherwise).
    fn from_header(h: &ClogHeader, bytes: &[u8]) -> Option<LogEntry> {
        let ([node, ident, tag, msg], slack) = h.fields(bytes)?;
        Some(LogEntry {
            meta: h.meta,
            node: node.to_vec(),
            ident: ident.to_vec(),
            tag: tag.to_vec(),
            msg: msg.to_vec(),
            tail: slack.try_into().ok()?,
        })
    }

    /// The entry at offset `off` of a ring buffer; `None` if it does not fit (the ring walk
    /// checks that first).
    pub(super) fn at(ring: &[u8], off: usize) -> Option<LogEntry> {
        let b = ring.get(off..)?;
        let h = ClogHeader::decode(b).ok()?;
        LogEntry::from_header(&h, b)
    }

    /// Encode as a kvstore LOG payload: `prev = next = 0`, size `48 + Σ lengths`.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.size()];
        self.write_into(&mut b, 0, 0);
        b
    }

    /// Bytes of this entry in a ring or message (48 + the four string lengths).
    pub fn size(&self) -> usize {
        ENTRY_HEADER_SIZE + self.node.len() + self.ident.len() + self.tag.len() + self.msg.len()
    }

    /// Write the entry with the ring links `prev`/`next` into `b[..self.size()]` (nothing
    /// when `b` is shorter). The field lengths fit their header fields by construction
    /// (`pack` cuts, `decode` read them from those fields).
    pub(super) fn write_into(&self, b: &mut [u8], prev: u32, next: u32) {
        let Some(b) = b.get_mut(..self.size()) else {
            return;
        };
        let header = ClogHeader {
            prev,
            next,
            meta: self.meta,
            node_len: self.node.len() as u8,
            ident_len: self.ident.len() as u8,
            tag_len: self.tag.len() as u8,
            msg_len: self.msg.len() as u32,
        };
        b[..ClogHeader::LEN].copy_from_slice(&header.encode());
        let mut p = ClogHeader::LEN;
        for f in [&self.node, &self.ident, &self.tag, &self.msg] {
            b[p..p + f.len()].copy_from_slice(f);
            p += f.len();
        }
        b[p..p + 4].copy_from_slice(&self.tail);
    }

    pub fn uid(&self) -> u32 {
        self.meta.uid
    }
    pub fn time(&self) -> u32 {
        self.meta.time
    }
    pub fn node_digest(&self) -> u64 {
        self.meta.node_digest
    }
    pub fn ident_digest(&self) -> u64 {
        self.meta.ident_digest
    }
    pub fn pid(&self) -> u32 {
        self.meta.pid
    }
    pub fn priority(&self) -> u8 {
        self.meta.priority
    }
    /// Node name (text before the first NUL).
    pub fn node(&self) -> &[u8] {
        cstr_prefix(&self.node)
    }
    /// Ident, shown as `user` in the JSON dump.
    pub fn ident(&self) -> &[u8] {
        cstr_prefix(&self.ident)
    }
    pub fn tag(&self) -> &[u8] {
        cstr_prefix(&self.tag)
    }
    /// The stored (already escaped) message. Like C's `%s`, a message field without a NUL
    /// continues into the 4 slack bytes.
    pub fn msg(&self) -> Vec<u8> {
        let mut m = self.msg.clone();
        m.extend_from_slice(&self.tail);
        cstr_prefix(&m).to_vec()
    }
    /// The sort/merge key `(time, node_digest, uid)`.
    pub fn key(&self) -> (u32, u64, u32) {
        (self.meta.time, self.meta.node_digest, self.meta.uid)
    }

    /// One JSON object as in `.clusterlog` (strings inserted without further escaping).
    pub(super) fn dump_json_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(
            format!(
                "{{\"uid\": {}, \"time\": {}, \"pri\": {}, \"tag\": \"",
                self.meta.uid, self.meta.time, self.meta.priority
            )
            .as_bytes(),
        );
        out.extend_from_slice(self.tag());
        out.extend_from_slice(format!("\", \"pid\": {}, \"node\": \"", self.meta.pid).as_bytes());
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
    let s = cstr_prefix(s);
    let len = (s.len() + 1).min(255);
    let mut with_nul = s.to_vec();
    with_nul.push(0);
    let digest = fnv1a64(&with_nul[..len]);
    let mut field = s[..len - 1].to_vec();
    field.push(0);
    (field, digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_limits() {
        let long_node = vec![b'n'; 300];
        let e = LogEntry::pack(&long_node, b"root", b"t", 1, 2, 6, b"m", 1).unwrap();
        assert_eq!(e.node().len(), 254);
        assert_eq!(e.node_digest(), fnv1a64(&long_node[..255]));
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
}
