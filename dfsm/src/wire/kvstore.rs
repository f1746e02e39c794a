//! kvstore (`pve_kvstore_v1`) payloads: the one codec of the UPDATE record, the cluster-log
//! entry layout (LOG) and the STATE ring's outer check.
//!
//! kvstore (`pve_kvstore_v1`) payloads: the key/value UPDATE record, the
//! cluster-log LOG record (`clog_entry_t`) and the STATE payload (the whole
//! cluster-log ring buffer, exposed here only as checked bytes). Spec §6.

use super::{cstr_prefix, len_u32, strip_nul, Reader, WireError};

/// DFSM protocol version of the kvstore group.
pub const KVSTORE_PROTOCOL_VERSION: u32 = 0;
/// CPG group name (without the NUL that must be part of `cpg_name.length`).
pub const KVSTORE_GROUP_NAME: &str = "pve_kvstore_v1";
/// NORMAL subtype of a key/value update.
pub const KVSTORE_MESSAGE_UPDATE: u16 = 1;
/// Defined by the original but never sent; receivers treat it as unknown.
pub const KVSTORE_MESSAGE_UPDATE_COMPLETE: u16 = 2;
/// NORMAL subtype of a cluster-log entry.
pub const KVSTORE_MESSAGE_LOG: u16 = 3;
/// Size of the fixed key field of an UPDATE.
pub const KV_KEY_FIELD_LEN: usize = 256;
/// `sizeof(clog_entry_t)` (44 bytes of fields + 4 bytes alignment padding).
pub const CLOG_ENTRY_HEADER_LEN: usize = 48;
/// Largest cluster-log entry.
pub const CLOG_MAX_ENTRY_SIZE: usize = 4096;
/// Default ring buffer size, i.e. the usual kvstore STATE payload length.
pub const CLOG_DEFAULT_SIZE: usize = 131072;
/// Offset of the packed strings inside a clog entry.
pub const CLOG_STRINGS_OFFSET: usize = 44;

/// FNV-1a 64-bit hash as used for `node_digest` / `ident_digest` (the caller
/// includes the trailing NUL in `bytes`).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// KVSTORE_UPDATE: key (without NUL, at most 255 bytes) and value bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvUpdate<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> KvUpdate<'a> {
    /// Decode: payload ≥ 256 bytes with a NUL inside the key field. Bytes
    /// after the key's NUL are ignored (the C sender leaves garbage there).
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload, "kvstore UPDATE payload");
        let field = r.bytes(KV_KEY_FIELD_LEN)?;
        let key = cstr_prefix(field);
        if key.len() == field.len() {
            return Err(WireError::NotNulTerminated {
                what: "kvstore UPDATE key",
            });
        }
        Ok(KvUpdate {
            key,
            value: r.rest(),
        })
    }

    /// Encode with a zero-filled key tail.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        if self.key.len() >= KV_KEY_FIELD_LEN {
            return Err(WireError::Unencodable {
                what: "kvstore UPDATE key",
                why: "longer than 255 bytes",
            });
        }
        if self.key.contains(&0) {
            return Err(WireError::Unencodable {
                what: "kvstore UPDATE key",
                why: "contains NUL",
            });
        }
        let mut out = vec![0u8; KV_KEY_FIELD_LEN];
        out[..self.key.len()].copy_from_slice(self.key);
        out.extend_from_slice(self.value);
        Ok(out)
    }
}

/// What a cluster-log entry says besides its ring links and strings: who logged it, when,
/// with which priority. The one definition of these fields, shared by [`ClogHeader`],
/// [`ClogEntry`] and the status crate's entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClogMeta {
    pub uid: u32,
    pub time: u32,
    /// [`fnv1a64`] of node name + NUL.
    pub node_digest: u64,
    /// [`fnv1a64`] of ident + NUL.
    pub ident_digest: u64,
    pub pid: u32,
    /// syslog priority 0..=7.
    pub priority: u8,
}

/// The fixed part of a cluster-log entry (`clog_entry_t` up to its `data`): the one
/// definition of the entry layout, used by [`ClogEntry`] and by the status crate's ring.
///
/// An entry is these 44 bytes, then `node`, `ident`, `tag` and `msg` back to back (each
/// `*_len` bytes, normally ending in NUL), then 4 slack bytes: 48 + Σ lengths in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClogHeader {
    /// Ring link: offset of the previous entry (0 in messages).
    pub prev: u32,
    /// Ring link: offset just after this entry's slot (0 in messages).
    pub next: u32,
    pub meta: ClogMeta,
    /// Field lengths, each including the field's NUL.
    pub node_len: u8,
    pub ident_len: u8,
    pub tag_len: u8,
    pub msg_len: u32,
}

impl ClogHeader {
    /// Bytes of the fixed part (the offset of the strings).
    pub const LEN: usize = CLOG_STRINGS_OFFSET;

    /// Read the fixed part at the start of `b` (bytes after it are not looked at).
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(b, "clog entry");
        Ok(ClogHeader {
            prev: r.u32()?,
            next: r.u32()?,
            meta: ClogMeta {
                uid: r.u32()?,
                time: r.u32()?,
                node_digest: r.u64()?,
                ident_digest: r.u64()?,
                pid: r.u32()?,
                priority: r.u8()?,
            },
            node_len: r.u8()?,
            ident_len: r.u8()?,
            tag_len: r.u8()?,
            msg_len: r.u32()?,
        })
    }

    /// The 44 bytes of the fixed part.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0..4].copy_from_slice(&self.prev.to_le_bytes());
        out[4..8].copy_from_slice(&self.next.to_le_bytes());
        let m = &self.meta;
        out[8..12].copy_from_slice(&m.uid.to_le_bytes());
        out[12..16].copy_from_slice(&m.time.to_le_bytes());
        out[16..24].copy_from_slice(&m.node_digest.to_le_bytes());
        out[24..32].copy_from_slice(&m.ident_digest.to_le_bytes());
        out[32..36].copy_from_slice(&m.pid.to_le_bytes());
        out[36..40].copy_from_slice(&[m.priority, self.node_len, self.ident_len, self.tag_len]);
        out[40..44].copy_from_slice(&self.msg_len.to_le_bytes());
        out
    }

    /// Size of the whole entry: 48 + the four lengths.
    pub fn entry_len(&self) -> u64 {
        CLOG_ENTRY_HEADER_LEN as u64
            + u64::from(self.node_len)
            + u64::from(self.ident_len)
            + u64::from(self.tag_len)
            + u64::from(self.msg_len)
    }

    /// The four string fields (node, ident, tag, msg, as the lengths cut them) and the
    /// 4 slack bytes of `entry`, the bytes of an entry that starts with this header.
    /// `None` when `entry` is shorter than [`ClogHeader::entry_len`].
    pub fn fields<'a>(&self, entry: &'a [u8]) -> Option<([&'a [u8]; 4], &'a [u8])> {
        let mut r = Reader::new(entry, "clog entry");
        r.bytes(Self::LEN).ok()?;
        let mut take = |n: usize| r.bytes(n).ok();
        let node = take(self.node_len.into())?;
        let ident = take(self.ident_len.into())?;
        let tag = take(self.tag_len.into())?;
        let msg = take(usize::try_from(self.msg_len).ok()?)?;
        let slack = take(4)?;
        Some(([node, ident, tag, msg], slack))
    }
}

/// One cluster-log entry (`clog_entry_t`) as carried by KVSTORE_LOG and
/// stored in the ring. Strings exclude their NUL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClogEntry<'a> {
    /// Ring link (0 in messages).
    pub prev: u32,
    /// Ring link (0 in messages).
    pub next: u32,
    pub meta: ClogMeta,
    pub node: &'a [u8],
    pub ident: &'a [u8],
    pub tag: &'a [u8],
    pub msg: &'a [u8],
}

impl<'a> ClogEntry<'a> {
    /// Decode with the checks of `kvstore_parse_log_message`: `len ≥ 48`,
    /// `len == 48 + Σ lens`, every string NUL-terminated. The 4 padding
    /// bytes are ignored.
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        if payload.len() < CLOG_ENTRY_HEADER_LEN {
            return Err(WireError::TooShort {
                what: "clog entry",
                need: CLOG_ENTRY_HEADER_LEN,
                got: payload.len(),
            });
        }
        let h = ClogHeader::decode(payload)?;
        let expected = h.entry_len();
        let mismatch = WireError::LengthMismatch {
            what: "clog entry",
            expected,
            got: payload.len() as u64,
        };
        if expected != payload.len() as u64 {
            return Err(mismatch);
        }
        let ([node, ident, tag, msg], _slack) = h.fields(payload).ok_or(mismatch)?;
        Ok(ClogEntry {
            prev: h.prev,
            next: h.next,
            meta: h.meta,
            node: strip_nul(node, "clog node")?,
            ident: strip_nul(ident, "clog ident")?,
            tag: strip_nul(tag, "clog tag")?,
            msg: strip_nul(msg, "clog msg")?,
        })
    }

    /// Encoded length: 48 + all string lengths with their NULs.
    pub fn encoded_len(&self) -> usize {
        CLOG_ENTRY_HEADER_LEN
            + self.node.len()
            + self.ident.len()
            + self.tag.len()
            + self.msg.len()
            + 4
    }

    /// Encode (padding bytes zero). node/ident/tag are limited to 254 bytes
    /// and the whole entry to [`CLOG_MAX_ENTRY_SIZE`].
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let short = |s: &[u8], what: &'static str| {
            u8::try_from(s.len() + 1).map_err(|_| WireError::Unencodable {
                what,
                why: "longer than 254 bytes",
            })
        };
        let header = ClogHeader {
            prev: self.prev,
            next: self.next,
            meta: self.meta,
            node_len: short(self.node, "clog node")?,
            ident_len: short(self.ident, "clog ident")?,
            tag_len: short(self.tag, "clog tag")?,
            msg_len: len_u32(self.msg.len() + 1, "clog msg")?,
        };
        if self.encoded_len() > CLOG_MAX_ENTRY_SIZE {
            return Err(WireError::Unencodable {
                what: "clog entry",
                why: "larger than 4096 bytes",
            });
        }
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&header.encode());
        for s in [self.node, self.ident, self.tag, self.msg] {
            out.extend_from_slice(s);
            out.push(0);
        }
        out.extend_from_slice(&[0u8; 4]);
        Ok(out)
    }

    /// The digests the fields must carry: fnv1a64 of node/ident with NUL.
    pub fn expected_digests(&self) -> (u64, u64) {
        let with_nul = |s: &[u8]| {
            let mut v = s.to_vec();
            v.push(0);
            fnv1a64(&v)
        };
        (with_nul(self.node), with_nul(self.ident))
    }
}

/// kvstore STATE payload: the cluster-log ring buffer. Only the outer check
/// of the original receiver is applied (`len > 8 && size field == len`);
/// walking the ring is the kvstore application's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClogState<'a> {
    pub bytes: &'a [u8],
}

impl<'a> ClogState<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload, "clog state");
        let size = r.u32()?;
        let _cpos = r.u32()?;
        if payload.len() <= 8 || u64::from(size) != payload.len() as u64 {
            return Err(WireError::LengthMismatch {
                what: "clog state size field",
                expected: size.into(),
                got: payload.len() as u64,
            });
        }
        Ok(ClogState { bytes: payload })
    }

    /// `size` header field (== buffer length).
    pub fn size(&self) -> u32 {
        self.field(0)
    }

    /// `cpos` header field: offset of the newest entry (0 = empty).
    pub fn cpos(&self) -> u32 {
        self.field(4)
    }

    fn field(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.bytes[off..off + 4]);
        u32::from_le_bytes(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        // README: fnv1a(b"node3\0") == 0xe6fcafc220cec54e
        assert_eq!(fnv1a64(b"node3\0"), 0xe6fc_afc2_20ce_c54e);
        assert_eq!(fnv1a64(b"golden-ident\0"), 0xbbe6_12be_89ed_ece9);
    }

    #[test]
    fn kv_update_accepts_garbage_tail() {
        let mut b = KvUpdate {
            key: b"nodeip",
            value: b"10.0.0.1\0",
        }
        .encode()
        .unwrap();
        b[100] = 0xaa;
        let u = KvUpdate::decode(&b).unwrap();
        assert_eq!(u.key, b"nodeip");
        assert_eq!(u.value, b"10.0.0.1\0");
        assert!(KvUpdate::decode(&[1u8; 300]).is_err());
        assert!(KvUpdate::decode(&[0u8; 255]).is_err());
    }

    #[test]
    fn clog_entry_checks() {
        let e = ClogEntry {
            prev: 0,
            next: 0,
            meta: ClogMeta {
                uid: 2,
                time: 5,
                node_digest: fnv1a64(b"n\0"),
                ident_digest: fnv1a64(b"i\0"),
                pid: 9,
                priority: 6,
            },
            node: b"n",
            ident: b"i",
            tag: b"t",
            msg: b"hello",
        };
        let b = e.encode().unwrap();
        assert_eq!(b.len(), 48 + 2 + 2 + 2 + 6);
        assert_eq!(ClogEntry::decode(&b).unwrap(), e);
        for n in 0..b.len() {
            assert!(ClogEntry::decode(&b[..n]).is_err());
        }
        assert_eq!(
            e.expected_digests(),
            (e.meta.node_digest, e.meta.ident_digest)
        );
    }

    #[test]
    fn clog_state_size_check() {
        let mut ring = vec![0u8; 64];
        ring[0] = 64;
        assert_eq!(ClogState::decode(&ring).unwrap().size(), 64);
        assert!(ClogState::decode(&ring[..63]).is_err());
        assert!(ClogState::decode(&ring[..8]).is_err());
    }
}
