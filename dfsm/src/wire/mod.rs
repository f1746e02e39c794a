//! Wire formats of the two pmxcfs CPG groups, as pure functions over bytes.
//!
//! Every decoder takes `&[u8]`, reads little-endian integers explicitly, checks
//! every length before using it and returns a typed [`WireError`]; none of them
//! panics or allocates from an unchecked length field. Encoders produce the
//! exact bytes the original C daemon puts on the wire (garbage areas are
//! zero-filled). This module knows nothing about modes, queues or I/O.

pub mod dcdb;
pub mod frame;
pub mod index;
pub mod kvstore;
pub mod update;

pub use frame::{BaseHeader, Epoch, Frame, MessageType};

/// Why a byte buffer could not be decoded (or a value could not be encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the fixed part of the structure.
    #[error("{what}: need at least {need} bytes, got {got}")]
    TooShort {
        what: &'static str,
        need: usize,
        got: usize,
    },
    /// A length field disagrees with the actual buffer length.
    #[error("{what}: length mismatch (fields say {expected} bytes, buffer has {got})")]
    LengthMismatch {
        what: &'static str,
        expected: u64,
        got: u64,
    },
    /// A string that must end in NUL does not.
    #[error("{what}: string not NUL-terminated")]
    NotNulTerminated { what: &'static str },
    /// A field holds a value outside its allowed set.
    #[error("{what}: invalid value {value}")]
    InvalidValue { what: &'static str, value: u64 },
    /// A value given to an encoder cannot be represented on the wire.
    #[error("cannot encode {what}: {why}")]
    Unencodable {
        what: &'static str,
        why: &'static str,
    },
}

/// Bounds-checked little-endian cursor over a byte slice.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.remaining() < n {
            return Err(WireError::TooShort {
                what: self.what,
                need: self.pos.saturating_add(n),
                got: self.buf.len(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Everything not consumed yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

/// Strip the terminating NUL of a C string field of known length.
///
/// `field` must be non-empty and end in NUL; interior NULs are kept (the C code
/// only checks the last byte), use [`cstr_prefix`] for C string semantics.
pub(crate) fn strip_nul<'a>(field: &'a [u8], what: &'static str) -> Result<&'a [u8], WireError> {
    match field.split_last() {
        Some((0, head)) => Ok(head),
        _ => Err(WireError::NotNulTerminated { what }),
    }
}

/// The bytes of `s` up to (not including) its first NUL, like C `strlen`.
pub fn cstr_prefix(s: &[u8]) -> &[u8] {
    match s.iter().position(|&b| b == 0) {
        Some(n) => &s[..n],
        None => s,
    }
}

/// A length that must fit a u32 wire field.
pub(crate) fn len_u32(n: usize, what: &'static str) -> Result<u32, WireError> {
    u32::try_from(n).map_err(|_| WireError::Unencodable {
        what,
        why: "length does not fit in 32 bits",
    })
}
