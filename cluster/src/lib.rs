//! pmxcfs-ng cluster mode as a library: the file tree (`pve_dcdb_v1`) and the status
//! (`pve_kvstore_v1`) replicated through corosync CPG, the change sink and the services.
//!
//! * [`dcdb`]: [`dcdb::DcdbApp`], the replicated file tree, and the fuse-op codec glue;
//! * [`kvstore`]: [`kvstore::KvstoreApp`], node status key/values and the cluster log;
//! * [`sink`]: [`sink::ClusterSink`], the FUSE layer's way into the dcdb group;
//! * [`corosync_conf`]: the host's corosync.conf kept in step with the tree's copy;
//! * [`services`]: starts and stops quorum/cmap tracking and both groups.

pub mod corosync_conf;
pub mod dcdb;
#[cfg(test)]
mod effects_tests;
pub mod kvstore;
pub mod services;
#[cfg(test)]
mod sim_random_tests;
#[cfg(test)]
mod sim_tests;
pub mod sink;
