//! pmxcfs-ng daemon library: the modules behind the `pmxcfs` binary (CLI, logging,
//! daemonizing, wiring, status and virtual files, cluster mode, offline tools).

pub mod cli;
pub mod cluster;
pub mod daemonize;
pub mod instance_lock;
pub mod ipc_handler;
pub mod logging;
pub mod offline;
pub mod paths;
pub mod run;
pub mod sd_notify;
pub mod stats;
pub mod status;
pub mod status_files;
