//! pmxcfs-ng FUSE adapter.
//!
//! Translates kernel requests into tree reads and [`pmxcfs_backend::Op`]s sent through a
//! [`pmxcfs_backend::ChangeSink`], and back into attributes with the original's ownership and
//! mode model. Writes to an open file stay in that handle's buffer ([`handles`]) until the
//! file is flushed, closed or fsynced: then the whole new content is one change.
//! Knows nothing of SQLite or corosync.

pub mod attrs;
pub mod filesystem;
pub mod handles;
pub mod inodes;
pub mod special;

pub use filesystem::{mount_options, FsConfig, FsCounters, PmxcfsFs};
pub use fuser::{Session, SessionUnmounter};
pub use special::{VirtualFiles, VIRTUAL_FILES};
