//! The libqb types and constants we declare by hand (`qbipcs.h`, `qbloop.h`,
//! `qbipc_common.h`); `build.rs` includes this file too and checks their layout in C.
//!
//! C enums are `int`-sized, so they are passed as `c_int`. This file may only use `std`
//! and `libc` (it is compiled into the build script as well).

#![allow(non_camel_case_types, dead_code)]

use libc::{c_int, c_void, gid_t, size_t, uid_t};

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
