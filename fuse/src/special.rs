//! The special root entries: the node symlinks and the virtual status files.
//!
//! They shadow tree entries of the same name. Their contents come from a
//! [`VirtualFiles`] provider owned by the daemon (status side).

/// A virtual file: name, permission bits, writable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualFile {
    pub name: &'static str,
    pub mode: u32,
    pub writable: bool,
}

/// The original's virtual files with their modes.
pub const VIRTUAL_FILES: [VirtualFile; 6] = [
    VirtualFile { name: ".version", mode: 0o440, writable: false },
    VirtualFile { name: ".members", mode: 0o440, writable: false },
    VirtualFile { name: ".vmlist", mode: 0o440, writable: false },
    VirtualFile { name: ".rrd", mode: 0o440, writable: false },
    VirtualFile { name: ".clusterlog", mode: 0o440, writable: false },
    VirtualFile { name: ".debug", mode: 0o640, writable: true },
];

/// The node symlinks and their targets relative to the mount (`<n>` = node name).
pub const SYMLINKS: [(&str, &str); 4] = [
    ("local", ""),
    ("qemu-server", "/qemu-server"),
    ("openvz", "/openvz"),
    ("lxc", "/lxc"),
];

/// Contents of the virtual files, produced by the daemon.
pub trait VirtualFiles: Send + Sync {
    /// Current contents of `name`, or None if this daemon does not serve it.
    fn read(&self, name: &str) -> Option<Vec<u8>>;
    /// Write to a writable virtual file at offset 0; returns bytes accepted.
    fn write(&self, name: &str, data: &[u8]) -> pmxcfs_backend::FsResult<usize>;
}

/// One special entry as the filesystem sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Special {
    Symlink { name: &'static str, target: String },
    Virtual(VirtualFile),
}

impl Special {
    pub fn name(&self) -> &'static str {
        match self {
            Special::Symlink { name, .. } => name,
            Special::Virtual(v) => v.name,
        }
    }
}

/// All special entries for node `nodename`, in readdir order (symlinks, then files).
pub fn special_entries(nodename: &str) -> Vec<Special> {
    let mut v: Vec<Special> = SYMLINKS
        .iter()
        .map(|(name, suffix)| Special::Symlink { name, target: format!("nodes/{nodename}{suffix}") })
        .collect();
    v.extend(VIRTUAL_FILES.iter().map(|f| Special::Virtual(*f)));
    v
}
