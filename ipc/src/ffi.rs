//! Hand-written declarations for the parts of the libqb server API that we use.
//!
//! Checked against Debian's libqb-dev 2.0.6 headers (`/usr/include/qb/qbipcs.h`,
//! `qbloop.h`, `qbipc_common.h`). C enums are `int`-sized, so they are passed as `c_int`.
//! Linking is done by `build.rs` (`-lqb`).

#![allow(non_camel_case_types, dead_code)]

use libc::{c_char, c_int, c_void, gid_t, iovec, mode_t, size_t, ssize_t, uid_t};

/// `enum qb_loop_priority`
pub const QB_LOOP_LOW: c_int = 0;
pub const QB_LOOP_MED: c_int = 1;
pub const QB_LOOP_HIGH: c_int = 2;

/// `enum qb_ipc_type`
pub const QB_IPC_SOCKET: c_int = 0;
pub const QB_IPC_SHM: c_int = 1;

/// Opaque `qb_loop_t`.
#[repr(C)]
pub struct qb_loop_t {
    _private: [u8; 0],
}

/// Opaque `qb_ipcs_service_t`.
#[repr(C)]
pub struct qb_ipcs_service_t {
    _private: [u8; 0],
}

/// Opaque `qb_ipcs_connection_t`.
#[repr(C)]
pub struct qb_ipcs_connection_t {
    _private: [u8; 0],
}

pub type qb_loop_poll_dispatch_fn =
    Option<unsafe extern "C" fn(fd: i32, revents: i32, data: *mut c_void) -> i32>;
pub type qb_loop_job_dispatch_fn = Option<unsafe extern "C" fn(data: *mut c_void)>;
pub type qb_ipcs_dispatch_fn_t = qb_loop_poll_dispatch_fn;

pub type qb_ipcs_dispatch_add_fn = Option<
    unsafe extern "C" fn(
        p: c_int,
        fd: i32,
        events: i32,
        data: *mut c_void,
        func: qb_ipcs_dispatch_fn_t,
    ) -> i32,
>;
pub type qb_ipcs_dispatch_mod_fn = qb_ipcs_dispatch_add_fn;
pub type qb_ipcs_dispatch_del_fn = Option<unsafe extern "C" fn(fd: i32) -> i32>;
pub type qb_ipcs_job_add_fn =
    Option<unsafe extern "C" fn(p: c_int, data: *mut c_void, func: qb_loop_job_dispatch_fn) -> i32>;

/// `struct qb_ipcs_poll_handlers`
#[repr(C)]
pub struct qb_ipcs_poll_handlers {
    pub job_add: qb_ipcs_job_add_fn,
    pub dispatch_add: qb_ipcs_dispatch_add_fn,
    pub dispatch_mod: qb_ipcs_dispatch_mod_fn,
    pub dispatch_del: qb_ipcs_dispatch_del_fn,
}

pub type qb_ipcs_connection_accept_fn =
    Option<unsafe extern "C" fn(c: *mut qb_ipcs_connection_t, uid: uid_t, gid: gid_t) -> i32>;
pub type qb_ipcs_connection_created_fn = Option<unsafe extern "C" fn(c: *mut qb_ipcs_connection_t)>;
pub type qb_ipcs_msg_process_fn = Option<
    unsafe extern "C" fn(c: *mut qb_ipcs_connection_t, data: *mut c_void, size: size_t) -> i32,
>;
pub type qb_ipcs_connection_closed_fn =
    Option<unsafe extern "C" fn(c: *mut qb_ipcs_connection_t) -> i32>;
pub type qb_ipcs_connection_destroyed_fn =
    Option<unsafe extern "C" fn(c: *mut qb_ipcs_connection_t)>;

/// `struct qb_ipcs_service_handlers` (copied by value inside `qb_ipcs_create`).
#[repr(C)]
pub struct qb_ipcs_service_handlers {
    pub connection_accept: qb_ipcs_connection_accept_fn,
    pub connection_created: qb_ipcs_connection_created_fn,
    pub msg_process: qb_ipcs_msg_process_fn,
    pub connection_closed: qb_ipcs_connection_closed_fn,
    pub connection_destroyed: qb_ipcs_connection_destroyed_fn,
}

/// `struct qb_ipcs_connection_stats`
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct qb_ipcs_connection_stats {
    pub client_pid: i32,
    pub requests: u64,
    pub responses: u64,
    pub events: u64,
    pub send_retries: u64,
    pub recv_retries: u64,
    pub flow_control_state: i32,
    pub flow_control_count: u64,
}

/// `struct qb_ipcs_stats`
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct qb_ipcs_stats {
    pub active_connections: u32,
    pub closed_connections: u32,
}

extern "C" {
    // qbloop.h
    pub fn qb_loop_create() -> *mut qb_loop_t;
    pub fn qb_loop_destroy(l: *mut qb_loop_t);
    pub fn qb_loop_stop(l: *mut qb_loop_t);
    pub fn qb_loop_run(l: *mut qb_loop_t);
    pub fn qb_loop_job_add(
        l: *mut qb_loop_t,
        p: c_int,
        data: *mut c_void,
        dispatch_fn: qb_loop_job_dispatch_fn,
    ) -> i32;
    pub fn qb_loop_poll_add(
        l: *mut qb_loop_t,
        p: c_int,
        fd: i32,
        events: i32,
        data: *mut c_void,
        dispatch_fn: qb_loop_poll_dispatch_fn,
    ) -> i32;
    pub fn qb_loop_poll_mod(
        l: *mut qb_loop_t,
        p: c_int,
        fd: i32,
        events: i32,
        data: *mut c_void,
        dispatch_fn: qb_loop_poll_dispatch_fn,
    ) -> i32;
    pub fn qb_loop_poll_del(l: *mut qb_loop_t, fd: i32) -> i32;

    // qbipcs.h
    pub fn qb_ipcs_create(
        name: *const c_char,
        service_id: i32,
        ipc_type: c_int,
        handlers: *mut qb_ipcs_service_handlers,
    ) -> *mut qb_ipcs_service_t;
    pub fn qb_ipcs_poll_handlers_set(s: *mut qb_ipcs_service_t, handlers: *mut qb_ipcs_poll_handlers);
    pub fn qb_ipcs_service_context_set(s: *mut qb_ipcs_service_t, context: *mut c_void);
    pub fn qb_ipcs_service_context_get(s: *mut qb_ipcs_service_t) -> *mut c_void;
    pub fn qb_ipcs_run(s: *mut qb_ipcs_service_t) -> i32;
    pub fn qb_ipcs_destroy(s: *mut qb_ipcs_service_t);
    pub fn qb_ipcs_response_send(c: *mut qb_ipcs_connection_t, data: *const c_void, size: size_t) -> ssize_t;
    pub fn qb_ipcs_response_sendv(
        c: *mut qb_ipcs_connection_t,
        iov: *const iovec,
        iov_len: size_t,
    ) -> ssize_t;
    pub fn qb_ipcs_disconnect(c: *mut qb_ipcs_connection_t);
    pub fn qb_ipcs_context_set(c: *mut qb_ipcs_connection_t, context: *mut c_void);
    pub fn qb_ipcs_context_get(c: *mut qb_ipcs_connection_t) -> *mut c_void;
    pub fn qb_ipcs_connection_service_context_get(c: *mut qb_ipcs_connection_t) -> *mut c_void;
    pub fn qb_ipcs_connection_stats_get(
        c: *mut qb_ipcs_connection_t,
        stats: *mut qb_ipcs_connection_stats,
        clear_after_read: i32,
    ) -> i32;
    pub fn qb_ipcs_stats_get(s: *mut qb_ipcs_service_t, stats: *mut qb_ipcs_stats, clear_after_read: i32) -> i32;
    pub fn qb_ipcs_connection_auth_set(c: *mut qb_ipcs_connection_t, uid: uid_t, gid: gid_t, mode: mode_t);
    pub fn qb_ipcs_connection_get_buffer_size(c: *mut qb_ipcs_connection_t) -> i32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_layouts_match_headers() {
        // x86_64 / aarch64 LP64 sizes as compiled from qbipcs.h.
        assert_eq!(std::mem::size_of::<qb_ipcs_connection_stats>(), 64);
        assert_eq!(std::mem::size_of::<qb_ipcs_poll_handlers>(), 4 * std::mem::size_of::<usize>());
        assert_eq!(std::mem::size_of::<qb_ipcs_service_handlers>(), 5 * std::mem::size_of::<usize>());
        assert_eq!(std::mem::size_of::<qb_ipcs_stats>(), 8);
    }
}
