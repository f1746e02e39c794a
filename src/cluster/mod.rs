//! Cluster mode: the file tree and the status replicated through corosync CPG.

pub mod dcdb;
#[cfg(test)]
mod dcdb_sim_tests;
