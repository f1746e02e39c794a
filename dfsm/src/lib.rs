//! pmxcfs-dfsm: the distributed state machine ("DFSM") of pmxcfs, wire
//! compatible with the original C daemon.
//!
//! * [`wire`]: pure encoders/decoders for every message of the `pve_dcdb_v1`
//!   and `pve_kvstore_v1` CPG groups.
//! * [`machine`]: the sans-I/O core ([`Dfsm`]): step it with confchg,
//!   deliver, tick and send requests; it returns [`Action`]s.
//! * [`app`]: the [`Application`] trait the dcdb and kvstore plug into.
//! * [`queue`]: the two message queues of a sync round.
//! * [`types`]: member ids, modes, outcomes, actions.
//! * [`testapp`]: a small in-memory application for tests.
//! * [`sim`]: a deterministic simulated CPG for tests.
//! * [`transport`]: the real corosync transport (CPG, quorum, cmap) and
//!   the [`transport::GroupRunner`] thread that drives a [`Dfsm`].
//!
//! The core does no I/O: the [`transport`] feeds events in and carries
//! actions out.

pub mod app;
pub mod machine;
pub mod queue;
pub mod sim;
pub mod testapp;
pub mod transport;
pub mod types;
pub mod wire;

pub use app::{AppError, Application, Context, Delivered, EffectHost, NoEffects, NormalMessage, SyncMember};
pub use machine::{Config, Dfsm};
pub use types::{Action, MemberId, MessageStream, Mode, Outcome};
