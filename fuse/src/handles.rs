//! Open files. A handle that writes keeps the file's new content in its own buffer; nothing
//! reaches the tree until flush/release/fsync turns the buffer into ONE change. Other
//! openers keep reading the committed content until then; the writer reads its own buffer.

use std::collections::HashMap;

use pmxcfs_backend::{apply_write, FsError, FsResult, MAX_FILE_SIZE};

/// One open file.
#[derive(Debug, Default)]
pub struct OpenFile {
    /// Tree inode of the file (0 for special entries).
    pub inode: u64,
    /// Uncommitted new content (Some once the handle wrote or truncated).
    pub buffer: Option<Vec<u8>>,
    /// The handle created the file: its create is committed with the first close.
    pub created: bool,
    /// A write failed (EFBIG): the handle's changes are dropped, close reports the error.
    pub failed: Option<FsError>,
    /// Snapshot of a virtual file's text, taken at open.
    pub virtual_text: Option<Vec<u8>>,
    /// Name of the virtual file this handle is open on.
    pub virtual_name: Option<&'static str>,
    /// Process (thread group) that opened the file. A FLUSH from another process is the
    /// close of an inherited copy of the descriptor (fork + exec): it does not commit; the
    /// opener's own close or the final release does.
    pub opener_tgid: Option<u32>,
}

/// The thread group (process) id of kernel thread id `tid`, from /proc.
pub fn tgid_of(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok())
}

impl OpenFile {
    /// True when the buffer holds changes that are not in the tree yet.
    pub fn dirty(&self) -> bool {
        self.buffer.is_some()
    }

    /// Writes into the buffer (loaded from `committed` on first use).
    pub fn write(&mut self, offset: u64, data: &[u8], committed: impl FnOnce() -> Vec<u8>) -> FsResult<usize> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let end = offset.checked_add(data.len() as u64).ok_or(FsError::FileTooBig)?;
        if end > MAX_FILE_SIZE {
            self.failed = Some(FsError::FileTooBig);
            self.buffer = None;
            return Err(FsError::FileTooBig);
        }
        let buf = self.buffer.get_or_insert_with(committed);
        apply_write(buf, offset as usize, data, false);
        Ok(data.len())
    }

    /// ftruncate / O_TRUNC on this handle.
    pub fn truncate(&mut self, size: u64, committed: impl FnOnce() -> Vec<u8>) -> FsResult<()> {
        if size > MAX_FILE_SIZE {
            return Err(FsError::FileTooBig);
        }
        let buf = self.buffer.get_or_insert_with(committed);
        buf.resize(size as usize, 0);
        Ok(())
    }
}

/// fh → open file.
#[derive(Debug, Default)]
pub struct HandleTable {
    next: u64,
    open: HashMap<u64, OpenFile>,
}

impl HandleTable {
    pub fn insert(&mut self, f: OpenFile) -> u64 {
        self.next += 1;
        self.open.insert(self.next, f);
        self.next
    }

    pub fn get_mut(&mut self, fh: u64) -> Option<&mut OpenFile> {
        self.open.get_mut(&fh)
    }

    pub fn get(&self, fh: u64) -> Option<&OpenFile> {
        self.open.get(&fh)
    }

    pub fn remove(&mut self, fh: u64) -> Option<OpenFile> {
        self.open.remove(&fh)
    }

    /// Size of the largest unflushed buffer for tree inode `inode`, if any handle has one
    /// (what the kernel must see as the file size while the writer works).
    pub fn pending_size(&self, inode: u64) -> Option<u64> {
        self.open
            .values()
            .filter(|f| f.inode == inode && f.inode != 0)
            .filter_map(|f| f.buffer.as_ref().map(|b| b.len() as u64))
            .max()
    }
}
