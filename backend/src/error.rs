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
    /// The disk (or the crash record's tmpfs) is full: the change could not be kept.
    #[error("no space left on device: {0}")]
    DiskFull(String),
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
            FsError::DiskFull(_) => libc::ENOSPC,
            FsError::Busy => libc::EBUSY,
            FsError::Io(_) => libc::EIO,
        }
    }
}

impl FsError {
    /// The refusal a failed disk operation stands for: ENOSPC/EDQUOT → [`FsError::DiskFull`],
    /// EFBIG → [`FsError::FileTooBig`], anything else → [`FsError::Io`].
    pub fn from_io(what: &str, e: &std::io::Error) -> FsError {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => FsError::DiskFull(format!("{what}: {e}")),
            Some(libc::EFBIG) => FsError::FileTooBig,
            _ => FsError::Io(format!("{what}: {e}")),
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_errors_keep_their_errno() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(FsError::from_io("x", &full).errno(), libc::ENOSPC);
        assert_eq!(FsError::from_io("x", &std::io::Error::from_raw_os_error(libc::EFBIG)).errno(), libc::EFBIG);
        assert_eq!(FsError::from_io("x", &std::io::Error::from_raw_os_error(libc::EIO)).errno(), libc::EIO);
    }
}
