//! Cluster mode: the file tree and the status replicated through corosync CPG.

pub mod dcdb;
pub mod kvstore;
#[cfg(test)]
mod sim_tests;
