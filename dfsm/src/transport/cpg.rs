//! A thin libcpg wrapper, used exactly as the original uses it (spec §1.2).
//!
//! A thin libcpg wrapper, used exactly as the original uses it (spec §1.2):
//! `cpg_initialize` (the old API: no model, no totem confchg callback) with
//! a deliver and a confchg callback, `cpg_local_get`, `cpg_join` of a group
//! whose `cpg_name.length` counts the trailing NUL, `cpg_mcast_joined` with
//! `CPG_TYPE_AGREED`, `cpg_dispatch`, `cpg_leave`, `cpg_finalize`.
//!
//! The `rust-corosync` crate is not used for CPG: its `cpg::initialize`
//! calls `cpg_model_initialize` with a totem confchg callback, sets
//! `cpg_name.length = str.len()` and runs callbacks under a global mutex.
//! The few declarations below bind libcpg directly (the crate's build
//! script links it too). Callbacks only append to a per-handle event queue
//! found through the CPG context pointer; [`CpgHandle::dispatch`] returns
//! them as [`CpgEvent`]s, so no user code ever runs inside libcpg.

use std::cell::RefCell;
use std::fmt;
use std::os::fd::RawFd;
use std::os::raw::{c_int, c_uint, c_void};
use std::time::Duration;

use tracing::{debug, warn};

use crate::types::MemberId;

/// dcdb group name (`DCDB_CPG_GROUP_NAME`); joined with length 12.
pub const DCDB_GROUP: &str = "pve_dcdb_v1";
/// kvstore group name (`KVSTORE_CPG_GROUP_NAME`); joined with length 15.
pub const KVSTORE_GROUP: &str = "pve_kvstore_v1";

/// `CPG_MAX_NAME_LENGTH`.
const CPG_MAX_NAME_LENGTH: usize = 128;
/// `CPG_TYPE_AGREED`.
const CPG_TYPE_AGREED: c_uint = 2;
const CS_OK: u32 = 1;
const CS_DISPATCH_ONE: u32 = 1;
const CS_DISPATCH_ALL: u32 = 2;

/// A corosync `cs_error_t` other than `CS_OK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CsError(pub u32);

impl CsError {
    pub const LIBRARY: CsError = CsError(2);
    pub const TRY_AGAIN: CsError = CsError(6);
    pub const INVALID_PARAM: CsError = CsError(7);
    pub const BAD_HANDLE: CsError = CsError(9);
    pub const NOT_EXIST: CsError = CsError(12);
    pub const NAME_TOO_LONG: CsError = CsError(13);

    /// The connection to corosync is gone (it died or restarted): the handle
    /// must be finalized and a new one initialized.
    pub fn is_connection_lost(self) -> bool {
        self == Self::LIBRARY || self == Self::BAD_HANDLE
    }

    fn check(rc: u32) -> Result<(), CsError> {
        if rc == CS_OK {
            Ok(())
        } else {
            Err(CsError(rc))
        }
    }

    fn name(self) -> &'static str {
        match self.0 {
            2 => "CS_ERR_LIBRARY",
            3 => "CS_ERR_VERSION",
            4 => "CS_ERR_INIT",
            5 => "CS_ERR_TIMEOUT",
            6 => "CS_ERR_TRY_AGAIN",
            7 => "CS_ERR_INVALID_PARAM",
            8 => "CS_ERR_NO_MEMORY",
            9 => "CS_ERR_BAD_HANDLE",
            10 => "CS_ERR_BUSY",
            11 => "CS_ERR_ACCESS",
            12 => "CS_ERR_NOT_EXIST",
            13 => "CS_ERR_NAME_TOO_LONG",
            14 => "CS_ERR_EXIST",
            15 => "CS_ERR_NO_SPACE",
            18 => "CS_ERR_NO_RESOURCES",
            19 => "CS_ERR_NOT_SUPPORTED",
            23 => "CS_ERR_QUEUE_FULL",
            26 => "CS_ERR_TOO_BIG",
            100 => "CS_ERR_SECURITY",
            _ => "CS_ERR",
        }
    }
}

impl fmt::Display for CsError {
    /// Like the original's logs, which print the numeric code.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl std::error::Error for CsError {}

impl From<rust_corosync::CsError> for CsError {
    fn from(e: rust_corosync::CsError) -> Self {
        CsError(e as u32)
    }
}

// ----- libcpg declarations -------------------------------------------------

#[repr(C)]
#[derive(Clone, Copy)]
struct CpgNameC {
    length: u32,
    value: [u8; CPG_MAX_NAME_LENGTH],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CpgAddressC {
    nodeid: u32,
    pid: u32,
    reason: u32,
}

type DeliverFn = unsafe extern "C" fn(
    handle: u64,
    group_name: *const CpgNameC,
    nodeid: u32,
    pid: u32,
    msg: *mut c_void,
    msg_len: usize,
);

type ConfchgFn = unsafe extern "C" fn(
    handle: u64,
    group_name: *const CpgNameC,
    member_list: *const CpgAddressC,
    member_list_entries: usize,
    left_list: *const CpgAddressC,
    left_list_entries: usize,
    joined_list: *const CpgAddressC,
    joined_list_entries: usize,
);

#[repr(C)]
struct CpgCallbacksC {
    cpg_deliver_fn: Option<DeliverFn>,
    cpg_confchg_fn: Option<ConfchgFn>,
}

#[link(name = "cpg")]
extern "C" {
    fn cpg_initialize(handle: *mut u64, callbacks: *mut CpgCallbacksC) -> u32;
    fn cpg_finalize(handle: u64) -> u32;
    fn cpg_fd_get(handle: u64, fd: *mut c_int) -> u32;
    fn cpg_context_get(handle: u64, context: *mut *mut c_void) -> u32;
    fn cpg_context_set(handle: u64, context: *mut c_void) -> u32;
    fn cpg_dispatch(handle: u64, dispatch_types: u32) -> u32;
    fn cpg_join(handle: u64, group: *const CpgNameC) -> u32;
    fn cpg_leave(handle: u64, group: *const CpgNameC) -> u32;
    fn cpg_mcast_joined(
        handle: u64,
        guarantee: c_uint,
        iovec: *const libc::iovec,
        iov_len: c_uint,
    ) -> u32;
    fn cpg_local_get(handle: u64, local_nodeid: *mut c_uint) -> u32;
}

// ----- group names ---------------------------------------------------------

/// A CPG group name as the original builds it: the C string with its NUL,
/// `length = strlen(name) + 1` (spec §0: `pve_dcdb_v1` → 12,
/// `pve_kvstore_v1` → 15). Corosync compares names by length first, so a
/// length without the NUL would be a different group.
#[derive(Clone, Copy)]
pub struct GroupName {
    raw: CpgNameC,
}

impl GroupName {
    /// `name` without a NUL; at most 127 bytes.
    pub fn new(name: &str) -> Result<Self, CsError> {
        let b = name.as_bytes();
        if b.contains(&0) {
            return Err(CsError::INVALID_PARAM);
        }
        if b.len() + 1 > CPG_MAX_NAME_LENGTH {
            return Err(CsError::NAME_TOO_LONG);
        }
        let mut value = [0u8; CPG_MAX_NAME_LENGTH];
        value[..b.len()].copy_from_slice(b);
        Ok(GroupName {
            raw: CpgNameC {
                length: b.len() as u32 + 1,
                value,
            },
        })
    }

    /// The `cpg_name.length` sent to corosync (includes the NUL).
    pub fn wire_len(&self) -> u32 {
        self.raw.length
    }

    /// The name without the NUL.
    pub fn as_str(&self) -> &str {
        let n = self.raw.length as usize - 1;
        std::str::from_utf8(&self.raw.value[..n]).unwrap_or("")
    }

    /// The `length` bytes corosync compares (name and NUL).
    pub fn wire_bytes(&self) -> &[u8] {
        &self.raw.value[..self.raw.length as usize]
    }
}

impl fmt::Debug for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}[len={}]", self.as_str(), self.raw.length)
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ----- events and callbacks -------------------------------------------------

/// What a dispatch produced, in delivery order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpgEvent {
    /// A configuration change of the joined group.
    Confchg {
        members: Vec<MemberId>,
        left: Vec<MemberId>,
        joined: Vec<MemberId>,
    },
    /// A message multicast by `sender` (our own ones included).
    Deliver { sender: MemberId, bytes: Vec<u8> },
}

type Sink = RefCell<Vec<CpgEvent>>;

/// Finds the sink of `handle`. Only called from inside `cpg_dispatch`, on
/// the thread that called it, while [`CpgHandle::dispatch`] holds `&mut`.
unsafe fn sink_of<'a>(handle: u64) -> Option<&'a Sink> {
    let mut ctx: *mut c_void = std::ptr::null_mut();
    if cpg_context_get(handle, &mut ctx) != CS_OK || ctx.is_null() {
        return None;
    }
    Some(&*(ctx as *const Sink))
}

unsafe fn addresses(list: *const CpgAddressC, n: usize) -> Vec<MemberId> {
    if list.is_null() || n == 0 {
        return Vec::new();
    }
    std::slice::from_raw_parts(list, n)
        .iter()
        .map(|a| MemberId::new(a.nodeid, a.pid))
        .collect()
}

unsafe extern "C" fn deliver_cb(
    handle: u64,
    _group_name: *const CpgNameC,
    nodeid: u32,
    pid: u32,
    msg: *mut c_void,
    msg_len: usize,
) {
    let Some(sink) = sink_of(handle) else { return };
    let bytes = if msg.is_null() || msg_len == 0 {
        Vec::new()
    } else {
        std::slice::from_raw_parts(msg as *const u8, msg_len).to_vec()
    };
    if let Ok(mut q) = sink.try_borrow_mut() {
        q.push(CpgEvent::Deliver {
            sender: MemberId::new(nodeid, pid),
            bytes,
        });
    }
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn confchg_cb(
    handle: u64,
    _group_name: *const CpgNameC,
    member_list: *const CpgAddressC,
    member_list_entries: usize,
    left_list: *const CpgAddressC,
    left_list_entries: usize,
    joined_list: *const CpgAddressC,
    joined_list_entries: usize,
) {
    let Some(sink) = sink_of(handle) else { return };
    let ev = CpgEvent::Confchg {
        members: addresses(member_list, member_list_entries),
        left: addresses(left_list, left_list_entries),
        joined: addresses(joined_list, joined_list_entries),
    };
    if let Ok(mut q) = sink.try_borrow_mut() {
        q.push(ev);
    }
}

// ----- the handle -----------------------------------------------------------

/// Pause between `CS_ERR_TRY_AGAIN` retries (the original's 100 ms).
pub const TRY_AGAIN_DELAY: Duration = Duration::from_millis(100);

/// One libcpg connection. Not `Sync`: use it from one thread at a time.
/// Dropping it finalizes the connection.
pub struct CpgHandle {
    handle: u64,
    sink: Box<Sink>,
}

impl fmt::Debug for CpgHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpgHandle({:#x})", self.handle)
    }
}

impl CpgHandle {
    /// `cpg_initialize` with the deliver and confchg callbacks, then
    /// `cpg_context_set` to this handle's event queue.
    pub fn initialize() -> Result<Self, CsError> {
        let mut cbs = CpgCallbacksC {
            cpg_deliver_fn: Some(deliver_cb),
            cpg_confchg_fn: Some(confchg_cb),
        };
        let mut handle = 0u64;
        // SAFETY: valid out pointer and callbacks struct (copied by libcpg).
        CsError::check(unsafe { cpg_initialize(&mut handle, &mut cbs) })?;
        let me = CpgHandle {
            handle,
            sink: Box::new(RefCell::new(Vec::new())),
        };
        let ctx = &*me.sink as *const Sink as *mut c_void;
        // SAFETY: the sink box lives as long as the handle (finalized in Drop).
        CsError::check(unsafe { cpg_context_set(handle, ctx) })?;
        Ok(me)
    }

    /// `cpg_fd_get`: poll it for `POLLIN`, then [`CpgHandle::dispatch`].
    pub fn fd(&self) -> Result<RawFd, CsError> {
        let mut fd: c_int = -1;
        // SAFETY: valid out pointer.
        CsError::check(unsafe { cpg_fd_get(self.handle, &mut fd) })?;
        Ok(fd)
    }

    /// `cpg_local_get`: the local nodeid.
    pub fn local_nodeid(&self) -> Result<u32, CsError> {
        let mut id: c_uint = 0;
        // SAFETY: valid out pointer.
        CsError::check(unsafe { cpg_local_get(self.handle, &mut id) })?;
        Ok(id)
    }

    /// One `cpg_join` attempt.
    pub fn try_join(&mut self, group: &GroupName) -> Result<(), CsError> {
        // SAFETY: valid handle and name.
        CsError::check(unsafe { cpg_join(self.handle, &group.raw) })
    }

    /// `cpg_join`, retrying `CS_ERR_TRY_AGAIN` every 100 ms up to
    /// `max_tries` attempts (the original retries without limit).
    pub fn join(&mut self, group: &GroupName, max_tries: u32) -> Result<(), CsError> {
        retry(max_tries, "cpg_join", || self.try_join(group))
    }

    /// One `cpg_leave` attempt.
    pub fn try_leave(&mut self, group: &GroupName) -> Result<(), CsError> {
        // SAFETY: valid handle and name.
        CsError::check(unsafe { cpg_leave(self.handle, &group.raw) })
    }

    /// `cpg_leave`, retrying `CS_ERR_TRY_AGAIN` every 100 ms.
    pub fn leave(&mut self, group: &GroupName, max_tries: u32) -> Result<(), CsError> {
        retry(max_tries, "cpg_leave", || self.try_leave(group))
    }

    /// One `cpg_mcast_joined(CPG_TYPE_AGREED)` attempt. On
    /// `CS_ERR_TRY_AGAIN` the caller resends the same bytes ~100 ms later.
    pub fn try_mcast_agreed(&mut self, bytes: &[u8]) -> Result<(), CsError> {
        let iov = libc::iovec {
            iov_base: bytes.as_ptr() as *mut c_void,
            iov_len: bytes.len(),
        };
        // SAFETY: one valid iovec over `bytes`, which outlives the call.
        CsError::check(unsafe { cpg_mcast_joined(self.handle, CPG_TYPE_AGREED, &iov, 1) })
    }

    /// AGREED multicast with the original's policy: on `CS_ERR_TRY_AGAIN`
    /// sleep 100 ms and resend, at most `max_tries` attempts (100 ≈ 10 s).
    /// Blocks the calling thread; [`crate::transport::GroupRunner`] retries
    /// without blocking instead.
    pub fn mcast_agreed(&mut self, bytes: &[u8], max_tries: u32) -> Result<(), CsError> {
        retry(max_tries, "cpg_mcast_joined", || {
            self.try_mcast_agreed(bytes)
        })
    }

    /// `cpg_dispatch(CS_DISPATCH_ALL)`: runs every pending callback and
    /// appends the resulting events to `out` (also on error: events
    /// collected before the failure are kept).
    pub fn dispatch(&mut self, out: &mut Vec<CpgEvent>) -> Result<(), CsError> {
        self.dispatch_flags(CS_DISPATCH_ALL, out)
    }

    /// `cpg_dispatch(CS_DISPATCH_ONE)` (what the original runs per wake-up).
    pub fn dispatch_one(&mut self, out: &mut Vec<CpgEvent>) -> Result<(), CsError> {
        self.dispatch_flags(CS_DISPATCH_ONE, out)
    }

    fn dispatch_flags(&mut self, flags: u32, out: &mut Vec<CpgEvent>) -> Result<(), CsError> {
        // SAFETY: callbacks run on this thread and only touch self.sink.
        let rc = unsafe { cpg_dispatch(self.handle, flags) };
        out.append(&mut self.sink.borrow_mut());
        CsError::check(rc)
    }

    /// `cpg_finalize` (also done on drop).
    pub fn finalize(mut self) -> Result<(), CsError> {
        let h = std::mem::replace(&mut self.handle, 0);
        // SAFETY: h is our handle, finalized once.
        CsError::check(unsafe { cpg_finalize(h) })
    }
}

impl Drop for CpgHandle {
    fn drop(&mut self) {
        if self.handle != 0 {
            // SAFETY: our handle, finalized once; the sink outlives it.
            let rc = unsafe { cpg_finalize(self.handle) };
            if rc != CS_OK {
                debug!(target: "cpg", "cpg_finalize failed: {}", CsError(rc));
            }
            self.handle = 0;
        }
    }
}

fn retry(
    max_tries: u32,
    what: &str,
    mut f: impl FnMut() -> Result<(), CsError>,
) -> Result<(), CsError> {
    let mut tries = 0u32;
    loop {
        match f() {
            Err(CsError::TRY_AGAIN) => {
                tries += 1;
                if tries >= max_tries.max(1) {
                    warn!(target: "cpg", "{what} failed: {}", CsError::TRY_AGAIN);
                    return Err(CsError::TRY_AGAIN);
                }
                if tries.is_multiple_of(10) {
                    debug!(target: "cpg", "{what} retry {tries}");
                }
                std::thread::sleep(TRY_AGAIN_DELAY);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_count_the_trailing_nul_like_the_original() {
        let d = GroupName::new(DCDB_GROUP).unwrap();
        assert_eq!(d.wire_len(), 12);
        assert_eq!(d.wire_bytes(), b"pve_dcdb_v1\0");
        let k = GroupName::new(KVSTORE_GROUP).unwrap();
        assert_eq!(k.wire_len(), 15);
        assert_eq!(k.wire_bytes(), b"pve_kvstore_v1\0");
        assert_eq!(k.as_str(), "pve_kvstore_v1");
        assert!(GroupName::new("a\0b").is_err());
        assert!(GroupName::new(&"x".repeat(128)).is_err());
        assert!(GroupName::new(&"x".repeat(127)).is_ok());
    }

    #[test]
    fn cpg_name_layout_matches_the_c_struct() {
        assert_eq!(std::mem::size_of::<CpgNameC>(), 4 + 128);
        assert_eq!(std::mem::size_of::<CpgAddressC>(), 12);
    }
}
