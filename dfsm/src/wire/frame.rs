//! DFSM framing shared by both groups: base, normal and state headers, VERIFY payloads.
//!
//! DFSM framing shared by both groups: the 16-byte base header, the 24-byte
//! normal-message header (with the per-process `count`) and the 32-byte
//! state-message header (with the sync epoch), plus the VERIFY_REQUEST and
//! VERIFY payloads, which belong to the DFSM layer itself (spec §2, §3.3).

use super::{Reader, WireError};

/// Size of [`BaseHeader`] on the wire.
pub const BASE_HEADER_LEN: usize = 16;
/// Size of the normal-message header (base + u64 count).
pub const NORMAL_HEADER_LEN: usize = 24;
/// Size of the state-message header (base + epoch).
pub const STATE_HEADER_LEN: usize = 32;
/// Payload length of VERIFY_REQUEST (u64 csum_id).
pub const VERIFY_REQUEST_LEN: usize = 8;
/// Payload length of VERIFY (u64 csum_id + SHA-256).
pub const VERIFY_LEN: usize = 40;

/// DFSM message type (base header `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum MessageType {
    Normal = 0,
    SyncStart = 1,
    State = 2,
    Update = 3,
    UpdateComplete = 4,
    VerifyRequest = 5,
    Verify = 6,
}

impl MessageType {
    /// Map a raw `type` field; `None` for values the original does not know.
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            0 => Self::Normal,
            1 => Self::SyncStart,
            2 => Self::State,
            3 => Self::Update,
            4 => Self::UpdateComplete,
            5 => Self::VerifyRequest,
            6 => Self::Verify,
            _ => return None,
        })
    }

    /// True for the types carried with a 32-byte state header (1..=6).
    pub fn is_state(self) -> bool {
        self != Self::Normal
    }
}

/// The 16-byte header every message of both groups starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BaseHeader {
    /// Raw DFSM type (see [`MessageType`]).
    pub msg_type: u16,
    /// Application message type for NORMAL, 0 for state messages.
    pub subtype: u16,
    /// 1 for dcdb, 0 for kvstore.
    pub protocol_version: u32,
    /// Sender's `time(NULL)` at send.
    pub time: u32,
    /// Always 0 from the original; kept for byte-exact round trips.
    pub reserved: u32,
}

impl BaseHeader {
    /// Decode the first 16 bytes of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf, "base header");
        Ok(BaseHeader {
            msg_type: r.u16()?,
            subtype: r.u16()?,
            protocol_version: r.u32()?,
            time: r.u32()?,
            reserved: r.u32()?,
        })
    }

    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.msg_type.to_le_bytes());
        out.extend_from_slice(&self.subtype.to_le_bytes());
        out.extend_from_slice(&self.protocol_version.to_le_bytes());
        out.extend_from_slice(&self.time.to_le_bytes());
        out.extend_from_slice(&self.reserved.to_le_bytes());
    }
}

/// A sync epoch: `{counter, time, nodeid, pid}` of the node that created it.
/// Compared bytewise (all four fields) like the original's memcmp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Epoch {
    pub epoch: u32,
    pub time: u32,
    pub nodeid: u32,
    pub pid: u32,
}

impl Epoch {
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Epoch {
            epoch: r.u32()?,
            time: r.u32()?,
            nodeid: r.u32()?,
            pid: r.u32()?,
        })
    }

    fn put(&self, out: &mut Vec<u8>) {
        for v in [self.epoch, self.time, self.nodeid, self.pid] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// One DFSM message split into header(s) and payload (borrowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `type == 0`: an application message with the sender's count.
    Normal {
        header: BaseHeader,
        count: u64,
        payload: &'a [u8],
    },
    /// `type` in 1..=6: a state message carrying the sender's sync epoch.
    State {
        header: BaseHeader,
        kind: MessageType,
        epoch: Epoch,
        payload: &'a [u8],
    },
}

impl<'a> Frame<'a> {
    /// Decode a whole message. Fails for buffers shorter than the header of
    /// their type and for unknown type values.
    pub fn decode(buf: &'a [u8]) -> Result<Self, WireError> {
        let header = BaseHeader::decode(buf)?;
        let kind = MessageType::from_u16(header.msg_type).ok_or(WireError::InvalidValue {
            what: "DFSM message type",
            value: header.msg_type.into(),
        })?;
        if kind == MessageType::Normal {
            let mut r = Reader::new(buf, "normal message header");
            r.bytes(BASE_HEADER_LEN)?;
            let count = r.u64()?;
            Ok(Frame::Normal {
                header,
                count,
                payload: r.rest(),
            })
        } else {
            let mut r = Reader::new(buf, "state message header");
            r.bytes(BASE_HEADER_LEN)?;
            let epoch = Epoch::decode(&mut r)?;
            Ok(Frame::State {
                header,
                kind,
                epoch,
                payload: r.rest(),
            })
        }
    }

    /// The base header of either variant.
    pub fn header(&self) -> &BaseHeader {
        match self {
            Frame::Normal { header, .. } | Frame::State { header, .. } => header,
        }
    }

    /// The payload after the 24- or 32-byte header.
    pub fn payload(&self) -> &'a [u8] {
        match self {
            Frame::Normal { payload, .. } | Frame::State { payload, .. } => payload,
        }
    }

    /// Encode exactly as decoded (header fields are taken as they are).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Normal {
                header,
                count,
                payload,
            } => {
                let mut out = Vec::with_capacity(NORMAL_HEADER_LEN + payload.len());
                header.put(&mut out);
                out.extend_from_slice(&count.to_le_bytes());
                out.extend_from_slice(payload);
                out
            }
            Frame::State {
                header,
                epoch,
                payload,
                ..
            } => {
                let mut out = Vec::with_capacity(STATE_HEADER_LEN + payload.len());
                header.put(&mut out);
                epoch.put(&mut out);
                out.extend_from_slice(payload);
                out
            }
        }
    }
}

/// Split a state message of any type value (known or not) into base header,
/// epoch and payload. Only the 32-byte length is checked, as in the
/// original's receive path, which looks at the type only after the epoch.
pub fn split_state(buf: &[u8]) -> Result<(BaseHeader, Epoch, &[u8]), WireError> {
    let header = BaseHeader::decode(buf)?;
    let mut r = Reader::new(buf, "state message header");
    r.bytes(BASE_HEADER_LEN)?;
    let epoch = Epoch::decode(&mut r)?;
    Ok((header, epoch, r.rest()))
}

/// Build a NORMAL message the way the original sends it (reserved = 0).
pub fn encode_normal(
    protocol_version: u32,
    subtype: u16,
    time: u32,
    count: u64,
    payload: &[u8],
) -> Vec<u8> {
    Frame::Normal {
        header: BaseHeader {
            msg_type: MessageType::Normal as u16,
            subtype,
            protocol_version,
            time,
            reserved: 0,
        },
        count,
        payload,
    }
    .encode()
}

/// Build a state message (types 1..=6; subtype and reserved = 0).
pub fn encode_state(
    protocol_version: u32,
    kind: MessageType,
    time: u32,
    epoch: Epoch,
    payload: &[u8],
) -> Vec<u8> {
    Frame::State {
        header: BaseHeader {
            msg_type: kind as u16,
            subtype: 0,
            protocol_version,
            time,
            reserved: 0,
        },
        kind,
        epoch,
        payload,
    }
    .encode()
}

/// Decode a VERIFY_REQUEST payload: exactly 8 bytes (u64 csum_id).
pub fn decode_verify_request(payload: &[u8]) -> Result<u64, WireError> {
    if payload.len() != VERIFY_REQUEST_LEN {
        return Err(WireError::LengthMismatch {
            what: "VERIFY_REQUEST payload",
            expected: VERIFY_REQUEST_LEN as u64,
            got: payload.len() as u64,
        });
    }
    Reader::new(payload, "VERIFY_REQUEST payload").u64()
}

/// Encode a VERIFY_REQUEST payload.
pub fn encode_verify_request(csum_id: u64) -> Vec<u8> {
    csum_id.to_le_bytes().to_vec()
}

/// Decode a VERIFY payload: exactly 40 bytes (u64 csum_id + 32-byte checksum).
pub fn decode_verify(payload: &[u8]) -> Result<(u64, [u8; 32]), WireError> {
    if payload.len() != VERIFY_LEN {
        return Err(WireError::LengthMismatch {
            what: "VERIFY payload",
            expected: VERIFY_LEN as u64,
            got: payload.len() as u64,
        });
    }
    let mut r = Reader::new(payload, "VERIFY payload");
    Ok((r.u64()?, r.array()?))
}

/// Encode a VERIFY payload.
pub fn encode_verify(csum_id: u64, csum: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(VERIFY_LEN);
    out.extend_from_slice(&csum_id.to_le_bytes());
    out.extend_from_slice(csum);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_start_golden() {
        // node1.tsv line 10
        let hex = "01000000010000007cde026b00000000020000007cde026b01000000545c0000";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let f = Frame::decode(&bytes).unwrap();
        let Frame::State { kind, epoch, .. } = f else {
            panic!("not a state frame")
        };
        assert_eq!(kind, MessageType::SyncStart);
        assert_eq!(
            epoch,
            Epoch {
                epoch: 2,
                time: 1795350140,
                nodeid: 1,
                pid: 23636
            }
        );
        assert_eq!(
            encode_state(1, MessageType::SyncStart, 1795350140, epoch, &[]),
            bytes
        );
    }

    #[test]
    fn short_and_unknown_frames_are_errors() {
        for n in 0..32 {
            let mut b = vec![0u8; n];
            if n >= 2 {
                b[0] = 1;
            }
            let r = Frame::decode(&b);
            assert_eq!(r.is_ok(), n >= 24 && b.first() == Some(&0) || n >= 32);
        }
        let mut b = vec![0u8; 40];
        b[0] = 7;
        assert!(matches!(
            Frame::decode(&b),
            Err(WireError::InvalidValue { .. })
        ));
    }
}
