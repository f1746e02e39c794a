//! The typed error of IPC requests and handlers, and the one place it becomes the errno a
//! `PVE::IPCC` client receives.

/// Why a request gets an error reply instead of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IpcError {
    /// A read-only client asked to write, or for a private path.
    #[error("permission denied")]
    PermissionDenied,
    /// The request is malformed or an argument is out of range.
    #[error("invalid request")]
    Invalid,
    /// A request id the original does not serve.
    #[error("unknown request id")]
    UnknownRequest,
    /// No such file, status key, guest or token.
    #[error("not found")]
    NotFound,
    /// A value over the size limit.
    #[error("value too large")]
    TooLarge,
    /// The handler failed (or panicked) without a more precise reason.
    #[error("input/output error")]
    Io,
    /// An error of a lower layer that already has its own errno mapping (the tree's
    /// `FsError::errno`, the status tables' `StatusError::errno`). A value that is not a
    /// positive errno is reported as EIO, so that a failure never looks like success.
    #[error("{}", std::io::Error::from_raw_os_error(*.0))]
    Errno(i32),
}

impl IpcError {
    /// The positive errno of this error.
    pub fn errno(&self) -> i32 {
        match self {
            IpcError::PermissionDenied => libc::EPERM,
            IpcError::Invalid => libc::EINVAL,
            IpcError::UnknownRequest => libc::ECHRNG,
            IpcError::NotFound => libc::ENOENT,
            IpcError::TooLarge => libc::EFBIG,
            IpcError::Io => libc::EIO,
            IpcError::Errno(e) if *e > 0 => *e,
            IpcError::Errno(_) => libc::EIO,
        }
    }

    /// The response header's `error` field: `-errno`.
    pub fn wire_code(&self) -> i32 {
        -self.errno()
    }
}

#[cfg(test)]
mod tests {
    use super::IpcError;

    #[test]
    fn errnos() {
        assert_eq!(IpcError::PermissionDenied.wire_code(), -libc::EPERM);
        assert_eq!(IpcError::UnknownRequest.errno(), libc::ECHRNG);
        assert_eq!(IpcError::Errno(libc::ENOMEM).errno(), libc::ENOMEM);
        assert_eq!(IpcError::Errno(0).errno(), libc::EIO);
        assert_eq!(IpcError::Errno(-3).wire_code(), -libc::EIO);
    }
}
