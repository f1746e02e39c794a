//! pmxcfs-ng FUSE adapter.
//!
//! Translates kernel requests into tree reads and [`pmxcfs_backend::Op`]s sent through a
//! [`pmxcfs_backend::ChangeSink`], and back into attributes with the original's ownership and
//! mode model. Writes to an open file go into the inode's ONE pending content, shared by every
//! handle ([`open_files`], mirrored for crash safety by [`crash_copy`]) until a commit point
//! (close of a writer, fsync, rename, shutdown): then the whole new content is one change.
//! Knows nothing of SQLite or corosync.

pub mod attrs;
mod core;
pub mod crash_copy;
pub mod filesystem;
pub mod handles;
pub mod inodes;
pub mod open_files;
pub mod recovery;
mod reply;
pub mod ring;
pub mod special;
pub mod workers;

pub use filesystem::{mount_options, FsConfig, FsCounters, PendingCommitter, PmxcfsFs, DEFAULT_PENDING_CAP};
pub use fuser::{Session, SessionUnmounter};
pub use special::{VirtualFiles, VIRTUAL_FILES};
