//! pmxcfs-ng backend: the in-RAM tree (the truth) and its SQLite store (its durable copy).
//!
//! Knows nothing of FUSE or corosync. [`Database`] is the entry point: it opens a
//! `config.db`, replays the crash record, applies [`Op`]s through one path and decides when
//! they are acknowledged, written to the store and made durable (policy: [`database`]).

pub mod database;
pub mod entry;
pub mod error;
pub mod db_sharing;
pub mod index;
pub mod locks;
pub mod memory;
pub mod open_gate;
pub mod name_bytes;
pub mod observed;
pub mod path;
pub mod record;
pub mod store;
pub mod tree;
pub mod vmlist;

pub use database::{ChangeSink, Database, DatabaseOptions, DbStats, Durability, LocalSink, Op, DEFAULT_SYNC_INTERVAL, GROUP_COMMIT_WINDOW};
pub use entry::{Children, Content, Entry, Name, DT_DIR, DT_REG};
pub use error::{FsError, FsResult};
pub use store::{Store, StoreError};
pub use tree::{apply_write, now_secs, write_content, Stamp, Tree, MAX_FILE_SIZE};
