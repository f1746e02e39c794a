//! pmxcfs-ng daemon library: the modules behind the `pmxcfs` binary (CLI, logging,
//! daemonizing, wiring, IPC handler, virtual files, offline tools). Cluster mode lives in
//! the `pmxcfs-cluster` crate, the node's status in `pmxcfs-status`.

pub mod cli;
pub mod daemonize;
pub mod instance_lock;
pub mod ipc_handler;
pub mod logging;
pub mod offline;
pub mod paths;
pub mod run;
pub mod sd_notify;
pub mod stats;
pub mod status_files;
