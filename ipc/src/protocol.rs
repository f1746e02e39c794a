//! Pure request parsing and response framing for the `pve2` IPC service (spec §7.2, §7.3).
//!
//! Nothing here touches libqb; every function accepts arbitrary bytes and never panics.
//!
//! Request header (`struct qb_ipc_request_header`): `id` i32 @0, `size` i32 @8 (whole
//! request including the header), payload @16. Response header
//! (`struct qb_ipc_response_header`): `id` i32 @0, `size` i32 @8 (= 24 + body length),
//! `error` i32 @16 (0 or −errno), body @24. Integers are in host byte order.

use crate::error::IpcError;

/// Size of `struct qb_ipc_request_header`.
pub const REQUEST_HEADER_SIZE: usize = 16;
/// Size of `struct qb_ipc_response_header`.
pub const RESPONSE_HEADER_SIZE: usize = 24;

pub const CFS_IPC_GET_FS_VERSION: i32 = 1;
pub const CFS_IPC_GET_CLUSTER_INFO: i32 = 2;
pub const CFS_IPC_GET_GUEST_LIST: i32 = 3;
pub const CFS_IPC_SET_STATUS: i32 = 4;
pub const CFS_IPC_GET_STATUS: i32 = 5;
pub const CFS_IPC_GET_CONFIG: i32 = 6;
pub const CFS_IPC_LOG_CLUSTER_MSG: i32 = 7;
pub const CFS_IPC_GET_CLUSTER_LOG: i32 = 8;
// 9 is unused.
pub const CFS_IPC_GET_RRD_DUMP: i32 = 10;
pub const CFS_IPC_GET_GUEST_CONFIG_PROPERTY: i32 = 11;
pub const CFS_IPC_VERIFY_TOKEN: i32 = 12;
pub const CFS_IPC_GET_GUEST_CONFIG_PROPERTIES: i32 = 13;

/// `name[256]` in SET_STATUS / GET_STATUS.
const NAME_LEN: usize = 256;
/// Default number of cluster-log entries when the request asks for 0.
pub const CLUSTER_LOG_DEFAULT_MAX: u32 = 50;

/// A validated request. Strings are C strings without their terminating NUL, borrowed from
/// the request buffer; they may contain any byte except NUL (pmxcfs does not require UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    GetFsVersion,
    GetClusterInfo,
    GetGuestList,
    SetStatus { name: &'a [u8], data: &'a [u8] },
    GetStatus { name: &'a [u8], nodename: &'a [u8] },
    GetConfig { path: &'a [u8] },
    LogClusterMsg { priority: u8, ident: &'a [u8], tag: &'a [u8], msg: &'a [u8] },
    /// `max_entries` is already defaulted (0 → 50). An empty `user` means no filter.
    GetClusterLog { max_entries: u32, user: &'a [u8] },
    GetRrdDump,
    GetGuestConfigProperty { vmid: u32, property: &'a [u8] },
    VerifyToken { token: &'a [u8] },
    GetGuestConfigProperties { vmid: u32, properties: Vec<&'a [u8]> },
}

impl Request<'_> {
    /// The wire id of this request.
    pub fn id(&self) -> i32 {
        match self {
            Request::GetFsVersion => CFS_IPC_GET_FS_VERSION,
            Request::GetClusterInfo => CFS_IPC_GET_CLUSTER_INFO,
            Request::GetGuestList => CFS_IPC_GET_GUEST_LIST,
            Request::SetStatus { .. } => CFS_IPC_SET_STATUS,
            Request::GetStatus { .. } => CFS_IPC_GET_STATUS,
            Request::GetConfig { .. } => CFS_IPC_GET_CONFIG,
            Request::LogClusterMsg { .. } => CFS_IPC_LOG_CLUSTER_MSG,
            Request::GetClusterLog { .. } => CFS_IPC_GET_CLUSTER_LOG,
            Request::GetRrdDump => CFS_IPC_GET_RRD_DUMP,
            Request::GetGuestConfigProperty { .. } => CFS_IPC_GET_GUEST_CONFIG_PROPERTY,
            Request::VerifyToken { .. } => CFS_IPC_VERIFY_TOKEN,
            Request::GetGuestConfigProperties { .. } => CFS_IPC_GET_GUEST_CONFIG_PROPERTIES,
        }
    }
}

/// Why a request could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer than 16 bytes: not even a header. The server closes the connection.
    ShortHeader,
    /// Reply with this error.
    Refused(IpcError),
}

/// Request header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub id: i32,
    pub size: i32,
}

fn rd_i32(b: &[u8], off: usize) -> Option<i32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(i32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn rd_u32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// The bytes before the first NUL (all of `b` if there is none).
pub fn cstr(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(n) => &b[..n],
        None => b,
    }
}

/// Read the request header (`None` when fewer than 16 bytes).
pub fn parse_header(buf: &[u8]) -> Option<RequestHeader> {
    if buf.len() < REQUEST_HEADER_SIZE {
        return None;
    }
    Some(RequestHeader { id: rd_i32(buf, 0)?, size: rd_i32(buf, 8)? })
}

/// Is `id` one of the request ids the original serves?
pub fn is_known_id(id: i32) -> bool {
    matches!(id, 1..=8 | 10..=13)
}

/// Does this request need write access (read-only clients get EPERM before any other check)?
pub fn needs_write_access(id: i32) -> bool {
    id == CFS_IPC_SET_STATUS || id == CFS_IPC_LOG_CLUSTER_MSG
}

/// `cfs-utils.c:path_is_private`: `priv`, `priv/…`, `nodes/<x>/priv`, `nodes/<x>/priv/…`
/// after stripping leading slashes.
pub fn path_is_private(path: &[u8]) -> bool {
    raw_path_is_private(path) || components_are_private(path)
}

/// The original's check on the raw path: `priv`, `priv/…`, `nodes/<x>/priv`, `nodes/<x>/priv/…`
/// after leading slashes (so `nodes//priv` counts too).
fn raw_path_is_private(path: &[u8]) -> bool {
    let mut p = path;
    while let [b'/', rest @ ..] = p {
        p = rest;
    }
    let is_priv = |s: &[u8]| s.starts_with(b"priv") && matches!(s.get(4), None | Some(b'/'));
    if is_priv(p) {
        return true;
    }
    if let Some(rest) = p.strip_prefix(b"nodes/") {
        if let Some(slash) = rest.iter().position(|&c| c == b'/') {
            return is_priv(&rest[slash + 1..]);
        }
    }
    false
}

/// The same rule on the components the tree looks up (it skips empty ones, so
/// `nodes/x//priv/…` reads `nodes/x/priv/…` and must count as private).
fn components_are_private(path: &[u8]) -> bool {
    let comps: Vec<&[u8]> = path.split(|&c| c == b'/').filter(|c| !c.is_empty()).collect();
    match comps.as_slice() {
        [first, ..] if *first == b"priv" => true,
        [first, _, third, ..] => *first == b"nodes" && *third == b"priv",
        _ => false,
    }
}

/// Parse and validate one request, in the original's order of checks (spec §7.3).
///
/// `buf` is the request as delivered (header included). The header's `size` field is the
/// request length the original trusts: bytes beyond it are ignored; a `size` larger than
/// `buf` (or smaller than the header) yields EINVAL for every known id. Unknown ids yield
/// ECHRNG. `vm_exists` answers the vmlist lookup that ids 11 and 13 perform between their
/// vmid and property checks.
///
/// Permission checks are *not* done here (see [`needs_write_access`], [`path_is_private`]);
/// the server applies them because their position in the check order differs per request.
pub fn parse_request<'a>(
    buf: &'a [u8],
    vm_exists: &dyn Fn(u32) -> bool,
) -> Result<Request<'a>, ParseError> {
    let hdr = parse_header(buf).ok_or(ParseError::ShortHeader)?;
    if !is_known_id(hdr.id) {
        return Err(ParseError::Refused(IpcError::UnknownRequest));
    }
    let einval = Err(ParseError::Refused(IpcError::Invalid));
    // The request as the original sees it: exactly `size` bytes.
    let size = match usize::try_from(hdr.size) {
        Ok(s) if (REQUEST_HEADER_SIZE..=buf.len()).contains(&s) => s,
        _ => return einval,
    };
    let req = &buf[..size];
    let payload = &req[REQUEST_HEADER_SIZE..];

    match hdr.id {
        CFS_IPC_GET_FS_VERSION | CFS_IPC_GET_CLUSTER_INFO | CFS_IPC_GET_GUEST_LIST
        | CFS_IPC_GET_RRD_DUMP => {
            if !payload.is_empty() {
                return einval;
            }
            Ok(match hdr.id {
                CFS_IPC_GET_FS_VERSION => Request::GetFsVersion,
                CFS_IPC_GET_CLUSTER_INFO => Request::GetClusterInfo,
                CFS_IPC_GET_GUEST_LIST => Request::GetGuestList,
                _ => Request::GetRrdDump,
            })
        }
        CFS_IPC_SET_STATUS => {
            if payload.len() < NAME_LEN {
                return einval;
            }
            // name[255] is forced to 0.
            let name = cstr(&payload[..NAME_LEN - 1]);
            Ok(Request::SetStatus { name, data: &payload[NAME_LEN..] })
        }
        CFS_IPC_GET_STATUS => {
            if payload.len() < 2 * NAME_LEN {
                return einval;
            }
            let name = cstr(&payload[..NAME_LEN - 1]);
            let nodename = cstr(&payload[NAME_LEN..2 * NAME_LEN - 1]);
            Ok(Request::GetStatus { name, nodename })
        }
        CFS_IPC_GET_CONFIG => {
            if payload.is_empty() {
                return einval;
            }
            // The last request byte is forced to 0.
            let path = cstr(&payload[..payload.len() - 1]);
            Ok(Request::GetConfig { path })
        }
        CFS_IPC_LOG_CLUSTER_MSG => parse_log_msg(req),
        CFS_IPC_GET_CLUSTER_LOG => {
            // max_entries u32 @16, 3 reserved u32, user string @32.
            if size <= 32 {
                return einval;
            }
            let max = rd_u32(req, 16).unwrap_or(0);
            let max_entries = if max == 0 { CLUSTER_LOG_DEFAULT_MAX } else { max };
            let user = cstr(&req[32..size - 1]);
            Ok(Request::GetClusterLog { max_entries, user })
        }
        CFS_IPC_GET_GUEST_CONFIG_PROPERTY => {
            let vmid = match rd_u32(req, 16) {
                Some(v) => v,
                None => return einval,
            };
            check_vmid(vmid, vm_exists)?;
            if size <= 20 {
                return einval;
            }
            // An empty C string (payload "\0") is passed on, as in the original: it then
            // matches lines starting with ':'.
            let property = cstr(&req[20..size - 1]);
            Ok(Request::GetGuestConfigProperty { vmid, property })
        }
        CFS_IPC_GET_GUEST_CONFIG_PROPERTIES => parse_guest_props(req, vm_exists),
        CFS_IPC_VERIFY_TOKEN => {
            // tokenlen = size - 16 - 1: the token plus its NUL.
            if payload.len() < 2 {
                return einval;
            }
            let token = &payload[..payload.len() - 1];
            if token.contains(&b'\n') {
                return einval;
            }
            if payload[payload.len() - 1] != 0 || token.contains(&0) {
                return einval;
            }
            Ok(Request::VerifyToken { token })
        }
        _ => Err(ParseError::Refused(IpcError::UnknownRequest)),
    }
}

fn check_vmid(vmid: u32, vm_exists: &dyn Fn(u32) -> bool) -> Result<(), ParseError> {
    if vmid != 0 && vmid < 100 {
        return Err(ParseError::Refused(IpcError::Invalid));
    }
    if vmid >= 100 && !vm_exists(vmid) {
        return Err(ParseError::Refused(IpcError::NotFound));
    }
    Ok(())
}

/// LOG_CLUSTER_MSG: `priority u8` @16, `ident_len u8` @17, `tag_len u8` @18, strings @19.
fn parse_log_msg(req: &[u8]) -> Result<Request<'_>, ParseError> {
    let einval = Err(ParseError::Refused(IpcError::Invalid));
    const DATA: usize = 19;
    let size = req.len();
    if size <= DATA {
        return einval;
    }
    let priority = req[16];
    let ident_len = req[17] as usize;
    let tag_len = req[18] as usize;
    // msg_len = size - 19 - ident_len - tag_len must be >= 1.
    if size < DATA + ident_len + tag_len + 1 {
        return einval;
    }
    // The original tests data[ident_len - 1] and data[ident_len + tag_len - 1]
    // relative to offset 19; with a zero length that is byte 18 (tag_len) – reproduced.
    let ident_end = DATA + ident_len - 1;
    let tag_end = DATA + ident_len + tag_len - 1;
    // The original also requires the byte *after* the request to be 0 (it reads one byte
    // past the end); we require the message to be NUL-terminated inside the request.
    if req[ident_end] != 0 || req[tag_end] != 0 || req[size - 1] != 0 {
        return einval;
    }
    let ident = cstr(&req[DATA..]);
    let tag = cstr(&req[DATA + ident_len..]);
    let msg = cstr(&req[DATA + ident_len + tag_len..]);
    Ok(Request::LogClusterMsg { priority, ident, tag, msg })
}

/// GET_GUEST_CONFIG_PROPERTIES: `vmid u32` @16, `num_props u8` @20, names from @21.
fn parse_guest_props<'a>(
    req: &'a [u8],
    vm_exists: &dyn Fn(u32) -> bool,
) -> Result<Request<'a>, ParseError> {
    let einval = Err(ParseError::Refused(IpcError::Invalid));
    let vmid = match rd_u32(req, 16) {
        Some(v) => v,
        None => return einval,
    };
    check_vmid(vmid, vm_exists)?;
    let num_props = match req.get(20) {
        Some(&n) => n,
        None => return einval,
    };
    if num_props == 0 {
        return einval;
    }
    let mut rest = &req[21..];
    if rest.len() <= 1 {
        return einval;
    }
    let mut properties = Vec::with_capacity(num_props as usize);
    for _ in 0..num_props {
        let len = match rest.iter().position(|&c| c == 0) {
            Some(0) => return einval,  // empty name
            None => return einval,     // not NUL-terminated
            Some(n) => n,
        };
        let name = &rest[..len];
        if !name[0].is_ascii_lowercase() {
            return einval;
        }
        properties.push(name);
        rest = &rest[len + 1..];
    }
    if !rest.is_empty() {
        return einval; // leftover bytes
    }
    Ok(Request::GetGuestConfigProperties { vmid, properties })
}

/// The 24-byte response header.
pub fn response_header(id: i32, body_len: usize, error: i32) -> [u8; RESPONSE_HEADER_SIZE] {
    let mut h = [0u8; RESPONSE_HEADER_SIZE];
    let size = i32::try_from(RESPONSE_HEADER_SIZE.saturating_add(body_len)).unwrap_or(i32::MAX);
    h[0..4].copy_from_slice(&id.to_ne_bytes());
    h[8..12].copy_from_slice(&size.to_ne_bytes());
    h[16..20].copy_from_slice(&error.to_ne_bytes());
    h
}

/// A whole response: header plus body on success, header only with `error = −errno` on
/// failure.
pub fn encode_response(id: i32, result: Result<&[u8], IpcError>) -> Vec<u8> {
    match result {
        Ok(body) => {
            let mut v = Vec::with_capacity(RESPONSE_HEADER_SIZE + body.len());
            v.extend_from_slice(&response_header(id, body.len(), 0));
            v.extend_from_slice(body);
            v
        }
        Err(e) => response_header(id, 0, e.wire_code()).to_vec(),
    }
}

/// Decoded response (for clients and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub id: i32,
    pub size: i32,
    pub error: i32,
    pub body: Vec<u8>,
}

/// Decode a response buffer (`None` when shorter than the header or when `size` disagrees).
pub fn decode_response(buf: &[u8]) -> Option<Response> {
    if buf.len() < RESPONSE_HEADER_SIZE {
        return None;
    }
    let id = rd_i32(buf, 0)?;
    let size = rd_i32(buf, 8)?;
    let error = rd_i32(buf, 16)?;
    let total = usize::try_from(size).ok()?;
    if total < RESPONSE_HEADER_SIZE || total > buf.len() {
        return None;
    }
    Some(Response { id, size, error, body: buf[RESPONSE_HEADER_SIZE..total].to_vec() })
}

/// Build a request with header (for clients and tests): `size` = 16 + payload length.
pub fn encode_request(id: i32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; REQUEST_HEADER_SIZE];
    let size = i32::try_from(REQUEST_HEADER_SIZE + payload.len()).unwrap_or(i32::MAX);
    v[0..4].copy_from_slice(&id.to_ne_bytes());
    v[8..12].copy_from_slice(&size.to_ne_bytes());
    v.extend_from_slice(payload);
    v
}

/// Request builders mirroring what `PVE::IPCC` / `Cluster.pm` send.
pub mod build {
    use super::*;

    fn name256(s: &[u8]) -> [u8; NAME_LEN] {
        let mut b = [0u8; NAME_LEN];
        let n = s.len().min(NAME_LEN - 1);
        b[..n].copy_from_slice(&s[..n]);
        b
    }

    pub fn simple(id: i32) -> Vec<u8> {
        encode_request(id, &[])
    }
    pub fn set_status(name: &[u8], data: &[u8]) -> Vec<u8> {
        let mut p = name256(name).to_vec();
        p.extend_from_slice(data);
        encode_request(CFS_IPC_SET_STATUS, &p)
    }
    pub fn get_status(name: &[u8], nodename: &[u8]) -> Vec<u8> {
        let mut p = name256(name).to_vec();
        p.extend_from_slice(&name256(nodename));
        encode_request(CFS_IPC_GET_STATUS, &p)
    }
    pub fn get_config(path: &[u8]) -> Vec<u8> {
        let mut p = path.to_vec();
        p.push(0);
        encode_request(CFS_IPC_GET_CONFIG, &p)
    }
    pub fn log_cluster_msg(priority: u8, ident: &[u8], tag: &[u8], msg: &[u8]) -> Vec<u8> {
        let il = (ident.len() + 1).min(255);
        let tl = (tag.len() + 1).min(255);
        let mut p = vec![priority, il as u8, tl as u8];
        p.extend_from_slice(&ident[..il - 1]);
        p.push(0);
        p.extend_from_slice(&tag[..tl - 1]);
        p.push(0);
        p.extend_from_slice(msg);
        p.push(0);
        encode_request(CFS_IPC_LOG_CLUSTER_MSG, &p)
    }
    pub fn get_cluster_log(max_entries: u32, user: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&max_entries.to_ne_bytes());
        p.extend_from_slice(&[0u8; 12]);
        p.extend_from_slice(user);
        p.push(0);
        encode_request(CFS_IPC_GET_CLUSTER_LOG, &p)
    }
    pub fn get_guest_config_property(vmid: u32, prop: &[u8]) -> Vec<u8> {
        let mut p = vmid.to_ne_bytes().to_vec();
        p.extend_from_slice(prop);
        p.push(0);
        encode_request(CFS_IPC_GET_GUEST_CONFIG_PROPERTY, &p)
    }
    pub fn get_guest_config_properties(vmid: u32, props: &[&[u8]]) -> Vec<u8> {
        let mut p = vmid.to_ne_bytes().to_vec();
        p.push(props.len().min(255) as u8);
        for pr in props {
            p.extend_from_slice(pr);
            p.push(0);
        }
        encode_request(CFS_IPC_GET_GUEST_CONFIG_PROPERTIES, &p)
    }
    pub fn verify_token(token: &[u8]) -> Vec<u8> {
        let mut p = token.to_vec();
        p.push(0);
        encode_request(CFS_IPC_VERIFY_TOKEN, &p)
    }
}

/// `priv/token.cfg` matching for VERIFY_TOKEN: true if some `\n`-separated line equals
/// `token` exactly.
pub fn token_cfg_contains(token_cfg: &[u8], token: &[u8]) -> bool {
    if token.is_empty() || token_cfg.len() < token.len() {
        return false;
    }
    token_cfg.split(|&c| c == b'\n').any(|line| line == token)
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    fn all(_: u32) -> bool {
        true
    }
    fn none(_: u32) -> bool {
        false
    }
    fn p(buf: &[u8]) -> Result<Request<'_>, ParseError> {
        parse_request(buf, &all)
    }
    fn with_size(mut v: Vec<u8>, size: i32) -> Vec<u8> {
        v[8..12].copy_from_slice(&size.to_ne_bytes());
        v
    }
    const E: Result<Request<'static>, ParseError> = Err(ParseError::Refused(IpcError::Invalid));

    #[test]
    fn simple_requests() {
        assert_eq!(p(&simple(1)), Ok(Request::GetFsVersion));
        assert_eq!(p(&simple(2)), Ok(Request::GetClusterInfo));
        assert_eq!(p(&simple(3)), Ok(Request::GetGuestList));
        assert_eq!(p(&simple(10)), Ok(Request::GetRrdDump));
        for id in [1, 2, 3, 10] {
            assert_eq!(p(&encode_request(id, b"x")), E);
        }
    }

    #[test]
    fn unknown_ids() {
        for id in [0, 9, 14, -1, -3, i32::MAX, i32::MIN] {
            assert_eq!(p(&simple(id)), Err(ParseError::Refused(IpcError::UnknownRequest)), "id {id}");
        }
        // even with a nonsense size
        assert_eq!(p(&with_size(simple(9), -5)), Err(ParseError::Refused(IpcError::UnknownRequest)));
    }

    #[test]
    fn short_and_bad_sizes() {
        assert_eq!(p(&[1, 0, 0]), Err(ParseError::ShortHeader));
        assert_eq!(p(&[]), Err(ParseError::ShortHeader));
        for id in [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13] {
            assert_eq!(p(&with_size(simple(id), 0)), E, "id {id}");
            assert_eq!(p(&with_size(simple(id), -1)), E, "id {id}");
            assert_eq!(p(&with_size(simple(id), 17)), E, "id {id}");
            assert_eq!(p(&with_size(simple(id), i32::MAX)), E, "id {id}");
        }
        // trailing bytes beyond `size` are ignored, as in the original
        let mut v = simple(1);
        v.extend_from_slice(b"garbage");
        assert_eq!(p(&v), Ok(Request::GetFsVersion));
    }

    #[test]
    fn parse_set_status() {
        assert_eq!(
            p(&set_status(b"tasklist", b"abc\0")),
            Ok(Request::SetStatus { name: b"tasklist", data: b"abc\0" })
        );
        assert_eq!(p(&set_status(b"k", b"")), Ok(Request::SetStatus { name: b"k", data: b"" }));
        // 271 bytes: too short
        let v = encode_request(4, &[b'a'; 255]);
        assert_eq!(p(&v), E);
        // name[255] forced to NUL
        let v = encode_request(4, &[b'a'; 256]);
        assert_eq!(p(&v), Ok(Request::SetStatus { name: &[b'a'; 255], data: b"" }));
    }

    #[test]
    fn parse_get_status() {
        assert_eq!(
            p(&get_status(b"tasklist", b"node1")),
            Ok(Request::GetStatus { name: b"tasklist", nodename: b"node1" })
        );
        let v = encode_request(5, &[0u8; 511]);
        assert_eq!(p(&v), E);
        let v = encode_request(5, &[b'x'; 512]);
        assert_eq!(p(&v), Ok(Request::GetStatus { name: &[b'x'; 255], nodename: &[b'x'; 255] }));
    }

    #[test]
    fn parse_get_config() {
        assert_eq!(p(&get_config(b"storage.cfg")), Ok(Request::GetConfig { path: b"storage.cfg" }));
        assert_eq!(p(&simple(6)), E);
        // last byte forced to 0
        assert_eq!(p(&encode_request(6, b"abc")), Ok(Request::GetConfig { path: b"ab" }));
        assert_eq!(p(&encode_request(6, b"\0")), Ok(Request::GetConfig { path: b"" }));
    }

    #[test]
    fn private_paths() {
        for path in ["priv", "/priv", "//priv/", "priv/token.cfg", "nodes/n1/priv", "/nodes/n1/priv/x", "nodes//priv", "nodes/n1//priv/x", "nodes//n1/priv"] {
            assert!(path_is_private(path.as_bytes()), "{path}");
        }
        for path in ["private", "privx/a", "nodes/priv", "nodes/n1/private", "nodes/n1/x/priv", "", "a/priv", "nodes/n1"] {
            assert!(!path_is_private(path.as_bytes()), "{path}");
        }
    }

    #[test]
    fn parse_log_cluster_msg() {
        assert_eq!(
            p(&log_cluster_msg(6, b"root@pam", b"cluster", b"hello")),
            Ok(Request::LogClusterMsg { priority: 6, ident: b"root@pam", tag: b"cluster", msg: b"hello" })
        );
        // msg_len < 1
        let mut v = encode_request(7, &[6, 2, 2, b'a', 0, b'b', 0]);
        assert_eq!(p(&v), E);
        v = encode_request(7, &[6, 2, 2, b'a', 0, b'b', 0, 0]);
        assert_eq!(p(&v), Ok(Request::LogClusterMsg { priority: 6, ident: b"a", tag: b"b", msg: b"" }));
        // ident not terminated
        v = encode_request(7, &[6, 2, 2, b'a', b'a', b'b', 0, b'm', 0]);
        assert_eq!(p(&v), E);
        // tag not terminated
        v = encode_request(7, &[6, 2, 2, b'a', 0, b'b', b'b', b'm', 0]);
        assert_eq!(p(&v), E);
        // msg not terminated
        v = encode_request(7, &[6, 2, 2, b'a', 0, b'b', 0, b'm']);
        assert_eq!(p(&v), E);
        // zero lengths: the original checks byte 18 (tag_len) – both 0 passes
        v = encode_request(7, &[6, 0, 0, b'm', 0]);
        assert_eq!(p(&v), Ok(Request::LogClusterMsg { priority: 6, ident: b"m", tag: b"m", msg: b"m" }));
        v = encode_request(7, &[6, 0, 3, b'm', 0, 0, b'x', 0]);
        assert_eq!(p(&v), E);
        // lengths beyond the request
        v = encode_request(7, &[6, 255, 255, 0, 0]);
        assert_eq!(p(&v), E);
        assert_eq!(p(&encode_request(7, &[6, 1, 1])), E);
    }

    #[test]
    fn parse_get_cluster_log() {
        assert_eq!(
            p(&get_cluster_log(0, b"")),
            Ok(Request::GetClusterLog { max_entries: 50, user: b"" })
        );
        assert_eq!(
            p(&get_cluster_log(7, b"root@pam")),
            Ok(Request::GetClusterLog { max_entries: 7, user: b"root@pam" })
        );
        assert_eq!(p(&encode_request(8, &[0u8; 16])), E);
        assert_eq!(p(&encode_request(8, &[0u8; 4])), E);
    }

    #[test]
    fn guest_config_property() {
        assert_eq!(
            p(&get_guest_config_property(100, b"lock")),
            Ok(Request::GetGuestConfigProperty { vmid: 100, property: b"lock" })
        );
        assert_eq!(
            p(&get_guest_config_property(0, b"lock")),
            Ok(Request::GetGuestConfigProperty { vmid: 0, property: b"lock" })
        );
        assert_eq!(p(&get_guest_config_property(99, b"lock")), E);
        assert_eq!(p(&get_guest_config_property(1, b"lock")), E);
        assert_eq!(
            parse_request(&get_guest_config_property(100, b"lock"), &none),
            Err(ParseError::Refused(IpcError::NotFound))
        );
        // ENOENT is checked before the property
        assert_eq!(parse_request(&encode_request(11, &100u32.to_ne_bytes()), &none), Err(ParseError::Refused(IpcError::NotFound)));
        assert_eq!(
            p(&get_guest_config_property(100, b"")),
            Ok(Request::GetGuestConfigProperty { vmid: 100, property: b"" })
        );
        assert_eq!(p(&encode_request(11, &100u32.to_ne_bytes())), E);
        assert_eq!(p(&encode_request(11, &[1, 0])), E);
    }

    #[test]
    fn guest_config_properties() {
        assert_eq!(
            p(&get_guest_config_properties(100, &[b"lock", b"tags"])),
            Ok(Request::GetGuestConfigProperties { vmid: 100, properties: vec![b"lock", b"tags"] })
        );
        assert_eq!(p(&get_guest_config_properties(50, &[b"lock"])), E);
        assert_eq!(
            parse_request(&get_guest_config_properties(101, &[b"lock"]), &none),
            Err(ParseError::Refused(IpcError::NotFound))
        );
        assert_eq!(p(&get_guest_config_properties(0, &[])), E);
        // num_props larger than the names present
        let mut v = get_guest_config_properties(0, &[b"lock"]);
        v[20] = 2;
        assert_eq!(p(&v), E);
        // fewer than announced → leftover
        v[20] = 1;
        v.extend_from_slice(b"x\0");
        let n = v.len() as i32;
        assert_eq!(p(&with_size(v, n)), E);
        // empty name, uppercase start, unterminated
        assert_eq!(p(&get_guest_config_properties(0, &[b"lock", b""])), E);
        assert_eq!(p(&get_guest_config_properties(0, &[b"Lock"])), E);
        let mut v = encode_request(13, &[0, 0, 0, 0, 1, b'a', b'b']);
        assert_eq!(p(&v), E);
        v = encode_request(13, &[0, 0, 0, 0, 1, 0]);
        assert_eq!(p(&v), E);
        v = encode_request(13, &[0, 0, 0, 0, 1, b'a', 0]);
        assert_eq!(p(&v), Ok(Request::GetGuestConfigProperties { vmid: 0, properties: vec![b"a"] }));
        assert_eq!(p(&encode_request(13, &[0, 0, 0, 0])), E);
    }

    #[test]
    fn parse_verify_token() {
        assert_eq!(p(&verify_token(b"a@pam!t abc")), Ok(Request::VerifyToken { token: b"a@pam!t abc" }));
        assert_eq!(p(&verify_token(b"")), E);
        assert_eq!(p(&verify_token(b"a\nb")), E);
        assert_eq!(p(&verify_token(b"a\0b")), E);
        assert_eq!(p(&encode_request(12, b"ab")), E);
        assert_eq!(p(&simple(12)), E);
    }

    #[test]
    fn token_matching() {
        let cfg = b"a@pam!x 123\nb@pve!y 456\n";
        assert!(token_cfg_contains(cfg, b"b@pve!y 456"));
        assert!(!token_cfg_contains(cfg, b"b@pve!y 45"));
        assert!(!token_cfg_contains(cfg, b""));
        assert!(token_cfg_contains(b"tok", b"tok"));
        assert!(!token_cfg_contains(b"", b"tok"));
    }

    #[test]
    fn response_framing() {
        let r = encode_response(3, Ok(b"hello"));
        assert_eq!(r.len(), 29);
        assert_eq!(decode_response(&r), Some(Response { id: 3, size: 29, error: 0, body: b"hello".to_vec() }));
        let r = encode_response(6, Err(IpcError::NotFound));
        assert_eq!(decode_response(&r), Some(Response { id: 6, size: 24, error: -libc::ENOENT, body: vec![] }));
        let r = encode_response(6, Err(IpcError::Errno(0)));
        assert_eq!(decode_response(&r).map(|r| r.error), Some(-libc::EIO));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // Small deterministic fuzz: xorshift-generated buffers with plausible headers.
        let mut rng = crate::test_rng::Rng(0x9e3779b97f4a7c15);
        let mut next = || rng.next();
        for _ in 0..200_000 {
            let len = (next() % 80) as usize;
            let mut v: Vec<u8> = (0..len).map(|_| (next() % 4) as u8 * 0x3f).collect();
            if len >= 16 {
                let id = (next() % 16) as i32 - 1;
                v[0..4].copy_from_slice(&id.to_ne_bytes());
                let size = if next() % 4 == 0 { (next() % 100) as i32 - 10 } else { len as i32 };
                v[8..12].copy_from_slice(&size.to_ne_bytes());
            }
            let _ = parse_request(&v, &|x| x % 2 == 0);
            let _ = decode_response(&v);
        }
    }
}
