//! The libqb server API we call: the hand-written declarations of [`types`] (their layout
//! is checked against the installed headers when the crate is built) and the functions.

#[cfg(test)]
mod layout;
pub mod types;

pub use types::*;

use libc::{c_char, c_int, c_void, gid_t, iovec, mode_t, size_t, ssize_t, uid_t};

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
    pub fn qb_ipcs_connection_ref(c: *mut qb_ipcs_connection_t);
    pub fn qb_ipcs_connection_unref(c: *mut qb_ipcs_connection_t);
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
