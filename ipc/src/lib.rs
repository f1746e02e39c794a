//! pmxcfs IPC server: the libqb service `pve2` that `PVE::IPCC` (pvestatd, pvedaemon,
//! pveproxy, pvecm, pvesh) talks to. Spec: `pmxcfs-local.md` §7.
//!
//! * [`protocol`]: pure request parsing / response framing (never panics on any input);
//! * [`server`]: [`IpcServer`] on libqb (`-lqb`) with its own qb loop thread, the
//!   authentication rule and the permission-checking [`dispatch`];
//! * [`error`]: [`IpcError`], the typed error of requests and handlers, and its errno;
//! * [`stale_rings`]: ring directories a killed server of the service left in /dev/shm;
//! * [`guest_props`]: the guest-config-property JSON used by ids 11 and 13;
//! * [`ffi`]: hand-written libqb declarations, their layout checked against the installed
//!   headers by `build.rs`.

pub mod error;
pub mod ffi;
pub mod guest_props;
pub mod protocol;
pub mod server;
pub mod stale_rings;

pub use error::IpcError;
pub use protocol::{ParseError, Request};
pub use server::{dispatch, Client, IpcHandler, IpcServer, Outcome, DEFAULT_SERVICE_NAME, SERVICE_ID};

/// The workspace's test RNG (shared with the integration tests by path).
#[cfg(test)]
#[path = "../../tests/common/rng.rs"]
mod test_rng;
