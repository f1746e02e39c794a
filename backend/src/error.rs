//! Typed errors of tree operations and their single mapping to errno.
//!
//! Every refusal a filesystem operation can produce is one variant here; the FUSE layer and
//! (later) the IPC and DFSM layers turn them into the original's errno values through
//! [`FsError::errno`] and nowhere else.

use thiserror::Error;

/// Why a tree operation was refused or failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotADirectory,
    #[error("bad file handle")]
    BadHandle,
    #[error("is a directory")]
    IsADirectory,
    #[error("function not implemented")]
    NotImplemented,
    #[error("file exists")]
    Exists,
    #[error("permission denied")]
    AccessDenied,
    #[error("operation not permitted")]
    NotPermitted,
    #[error("directory not empty")]
    NotEmpty,
    #[error("file too large (limit is 1 MiB)")]
    FileTooBig,
    #[error("file name too long")]
    NameTooLong,
    #[error("invalid argument")]
    Invalid,
    #[error("no space left")]
    NoSpace,
    #[error("device or resource busy")]
    Busy,
    #[error("input/output error: {0}")]
    Io(String),
}

impl FsError {
    /// The errno the original daemon returns for this refusal (positive value).
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::NotADirectory => libc::ENOTDIR,
            FsError::BadHandle => libc::EBADF,
            FsError::IsADirectory => libc::EISDIR,
            FsError::NotImplemented => libc::ENOSYS,
            FsError::Exists => libc::EEXIST,
            FsError::AccessDenied => libc::EACCES,
            FsError::NotPermitted => libc::EPERM,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::FileTooBig => libc::EFBIG,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::Invalid => libc::EINVAL,
            FsError::NoSpace => libc::ENOSPC,
            FsError::Busy => libc::EBUSY,
            FsError::Io(_) => libc::EIO,
        }
    }
}

impl FsError {
    /// The refusal a (positive) errno stands for, e.g. a replicated operation's result.
    pub fn from_errno(errno: i32) -> FsError {
        match errno {
            libc::ENOENT => FsError::NotFound,
            libc::ENOTDIR => FsError::NotADirectory,
            libc::EBADF => FsError::BadHandle,
            libc::EISDIR => FsError::IsADirectory,
            libc::ENOSYS => FsError::NotImplemented,
            libc::EEXIST => FsError::Exists,
            libc::EACCES => FsError::AccessDenied,
            libc::EPERM => FsError::NotPermitted,
            libc::ENOTEMPTY => FsError::NotEmpty,
            libc::EFBIG => FsError::FileTooBig,
            libc::ENAMETOOLONG => FsError::NameTooLong,
            libc::EINVAL => FsError::Invalid,
            libc::ENOSPC => FsError::NoSpace,
            libc::EBUSY => FsError::Busy,
            other => FsError::Io(format!("errno {other}")),
        }
    }
}

pub type FsResult<T> = Result<T, FsError>;
