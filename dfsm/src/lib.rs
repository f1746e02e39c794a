//! pmxcfs-dfsm: the distributed state machine ("DFSM") of pmxcfs, wire
//! compatible with the original C daemon.
//!
//! * [`wire`]: pure encoders/decoders for every message of the `pve_dcdb_v1`
//!   and `pve_kvstore_v1` CPG groups.
//!
//! This crate does no I/O: the corosync transport lives elsewhere and only
//! feeds events in and carries actions out.

pub mod wire;
