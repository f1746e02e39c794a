//! The payloads of the status IPC calls as the status tables read them: `SET_STATUS`,
//! `GET_STATUS`, `LOG_CLUSTER_MSG`, `GET_CLUSTER_LOG` (after the 16-byte IPC header).

use pmxcfs_dfsm::wire::cstr_prefix;

use crate::clusterlog::{ClogError, DEFAULT_DUMP_MAX};
use crate::kvstore::{KvError, KEY_FIELD_SIZE};

/// Text before the first NUL of a fixed-size key field, as UTF-8.
fn key_from_field(field: &[u8]) -> Result<&str, KvError> {
    std::str::from_utf8(cstr_prefix(field)).map_err(|_| KvError::InvalidKey("key is not UTF-8"))
}

/// Parse an IPC `SET_STATUS` payload (after the 16-byte header): `name[256]` (byte 255 is
/// treated as NUL) + data. Less than 256 bytes → EINVAL.
pub fn parse_set_status_request(payload: &[u8]) -> Result<(&str, &[u8]), KvError> {
    if payload.len() < KEY_FIELD_SIZE {
        return Err(KvError::InvalidMessage("short SET_STATUS request"));
    }
    Ok((
        key_from_field(&payload[..KEY_FIELD_SIZE - 1])?,
        &payload[KEY_FIELD_SIZE..],
    ))
}

/// Parse an IPC `GET_STATUS` payload: `name[256]` + `nodename[256]`, each forced to end in
/// NUL. Less than 512 bytes → EINVAL. Returns `(key, nodename)`.
pub fn parse_get_status_request(payload: &[u8]) -> Result<(&str, &str), KvError> {
    if payload.len() < 2 * KEY_FIELD_SIZE {
        return Err(KvError::InvalidMessage("short GET_STATUS request"));
    }
    let key = key_from_field(&payload[..KEY_FIELD_SIZE - 1])?;
    let node = key_from_field(&payload[KEY_FIELD_SIZE..2 * KEY_FIELD_SIZE - 1])?;
    Ok((key, node))
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
            ident: cstr_prefix(&data[..il]).to_vec(),
            tag: cstr_prefix(&data[il..il + tl]).to_vec(),
            msg: cstr_prefix(&data[il + tl..]).to_vec(),
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
    let max = payload[..4].try_into().map_or(0, u32::from_le_bytes);
    let user = &payload[16..];
    // the original forces the last byte to NUL
    let user = cstr_prefix(&user[..user.len() - 1]).to_vec();
    Ok((if max == 0 { DEFAULT_DUMP_MAX } else { max }, user))
}
