//! Cluster mode: the file tree (`pve_dcdb_v1`) and the status (`pve_kvstore_v1`) replicated
//! through corosync CPG, quorum and cluster info from corosync.

pub mod corosync_conf;
pub mod dcdb;
pub mod kvstore;
pub mod services;
#[cfg(test)]
mod sim_random_tests;
#[cfg(test)]
mod sim_tests;
pub mod sink;
