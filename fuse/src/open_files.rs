//! Open files and their shared pending content. Every handle of an inode reads and writes
//! ONE pending content (POSIX sharing semantics); it reaches the tree as one whole-content
//! change at a commit point (close of a handle that wrote, fsync, rename, shutdown — driven
//! by [`crate::filesystem`]). Each pending content is mirrored by a [`CrashCopies`] file.
//!
//! This module does no tree I/O: callers pass the committed content when a pending content
//! must start from it.

use pmxcfs_backend::tree::InodeMap;
use pmxcfs_backend::{apply_write, now_secs, FsError, FsResult, MAX_FILE_SIZE};

use crate::crash_copy::CrashCopies;

/// One `open()` (a kernel file handle).
#[derive(Debug, Default, Clone)]
pub struct Handle {
    /// Tree inode (0 for virtual files).
    pub inode: u64,
    /// Opened with O_APPEND: every write goes to the shared end.
    pub append: bool,
    /// Wrote (or truncated) since this handle's last commit point.
    pub wrote: bool,
    /// Thread that opened the file for writing. A FLUSH from another process is the close
    /// of an inherited copy (fork + exec): it does not commit.
    pub opener_tid: Option<u32>,
    /// Snapshot of a virtual file's text, taken at open.
    pub virtual_text: Option<Vec<u8>>,
    /// Name of the virtual file this handle is open on.
    pub virtual_name: Option<&'static str>,
}

/// What a pending content needs to show through getattr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlay {
    /// Size of the pending content (None: the tree's size).
    pub size: Option<u64>,
    pub mtime: u32,
    /// 0 once the inode was unlinked or replaced while open.
    pub nlink: u32,
}

/// An inode that was unlinked or replaced while open: its descriptors keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Path it had, for its mode bits.
    pub path: String,
}

/// Per-inode state while at least one handle is open or content is pending.
#[derive(Debug, Default)]
pub struct InodeState {
    /// Open handles.
    pub handles: usize,
    /// The new content (Some = differs from the tree).
    pub content: Option<Vec<u8>>,
    /// Bumped on every change, so a commit knows whether it took the latest content.
    pub generation: u64,
    /// Time of the last change (or the time utimens set).
    pub mtime: u32,
    /// utimens set `mtime` after the last write: the commit carries it.
    pub explicit_mtime: bool,
    /// The create is not committed yet (folded into the first commit point).
    pub created: bool,
    /// Unlinked or replaced while open.
    pub orphan: Option<Orphan>,
    /// Where the inode lives, for its crash copy (parent inode, name).
    pub place: Option<(u64, String)>,
}

impl InodeState {
    fn dirty(&self) -> bool {
        self.orphan.is_none() && (self.content.is_some() || self.created || self.explicit_mtime)
    }
}

/// The committed content a pending content starts from, and where the inode lives
/// (parent inode, name) for its crash copy.
pub type Loaded = (Vec<u8>, Option<(u64, String)>);

/// A consistent copy of what a commit must write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitTake {
    pub generation: u64,
    /// New content, if any (None: only the create and/or the mtime).
    pub content: Option<Vec<u8>>,
    pub mtime: Option<u32>,
    pub created: bool,
}

/// fh → handle, inode → shared state, and the crash copies.
#[derive(Debug, Default)]
pub struct OpenFiles {
    next_fh: u64,
    handles: InodeMap<Handle>,
    inodes: InodeMap<InodeState>,
    copies: CrashCopies,
    /// Sum of all pending contents, in bytes.
    pending_bytes: u64,
}

impl OpenFiles {
    pub fn new(copies: CrashCopies) -> OpenFiles {
        OpenFiles { copies, ..Default::default() }
    }

    /// Registers a new handle; tree handles count towards their inode.
    pub fn open(&mut self, h: Handle) -> u64 {
        self.next_fh += 1;
        if h.inode != 0 && h.virtual_name.is_none() {
            self.inodes.entry(h.inode).or_default().handles += 1;
        }
        self.handles.insert(self.next_fh, h);
        self.next_fh
    }

    pub fn handle(&self, fh: u64) -> Option<&Handle> {
        self.handles.get(&fh)
    }

    pub fn handle_mut(&mut self, fh: u64) -> Option<&mut Handle> {
        self.handles.get_mut(&fh)
    }

    pub fn state(&self, inode: u64) -> Option<&InodeState> {
        self.inodes.get(&inode)
    }

    /// Marks `inode` as created but not committed yet; `place` is its parent and name.
    pub fn mark_created(&mut self, inode: u64, place: (u64, String)) {
        let s = self.inodes.entry(inode).or_default();
        s.created = true;
        s.mtime = now_secs();
        self.copies.begin(inode, place.0, &place.1, s.content.as_deref().unwrap_or_default());
        s.place = Some(place);
    }

    /// Removes a handle; returns it and whether it was the inode's last one.
    pub fn close(&mut self, fh: u64) -> Option<(Handle, bool)> {
        let h = self.handles.remove(&fh)?;
        let mut last = false;
        if let Some(s) = self.inodes.get_mut(&h.inode) {
            s.handles = s.handles.saturating_sub(1);
            last = s.handles == 0;
        }
        Some((h, last))
    }

    /// Forgets an inode that has neither handles nor pending content.
    pub fn forget_if_idle(&mut self, inode: u64) {
        let idle = self.inodes.get(&inode).is_some_and(|s| s.handles == 0 && !s.dirty());
        if idle {
            if let Some(s) = self.inodes.remove(&inode) {
                self.pending_bytes -= s.content.map(|c| c.len() as u64).unwrap_or(0);
            }
            self.copies.remove(inode);
        }
    }

    /// The pending content of `inode`, if any handle changed it (readers see it at once).
    pub fn content(&self, inode: u64) -> Option<&[u8]> {
        self.inodes.get(&inode).and_then(|s| s.content.as_deref())
    }

    /// Attribute overlay while content is pending, the mtime was set, or the inode is orphaned.
    pub fn overlay(&self, inode: u64) -> Option<Overlay> {
        let s = self.inodes.get(&inode)?;
        if s.content.is_none() && !s.explicit_mtime && s.orphan.is_none() {
            return None;
        }
        let size = s.content.as_ref().map(|c| c.len() as u64);
        Some(Overlay { size, mtime: s.mtime, nlink: if s.orphan.is_some() { 0 } else { 1 } })
    }

    /// Orphan state of an inode that left the tree while open.
    pub fn orphan(&self, inode: u64) -> Option<&Orphan> {
        self.inodes.get(&inode).and_then(|s| s.orphan.as_ref())
    }

    fn state_with_content(&mut self, inode: u64, load: impl FnOnce() -> Loaded) -> &mut InodeState {
        let s = self.inodes.entry(inode).or_default();
        if s.content.is_none() {
            let (c, place) = load();
            self.pending_bytes += c.len() as u64;
            // a new file's copy (begun at create, empty like its tree content) is reused
            if s.orphan.is_none() && !self.copies.has(inode) {
                if let Some(p) = place.or_else(|| s.place.clone()) {
                    self.copies.begin(inode, p.0, &p.1, &c);
                    s.place = Some(p);
                }
            }
            s.content = Some(c);
        }
        s
    }

    /// One write through handle `fh`. O_APPEND handles write at the shared end. A write
    /// that would pass 1 MiB fails with EFBIG and changes nothing; the handle stays usable.
    /// Returns the bytes written.
    pub fn write(&mut self, fh: u64, offset: u64, data: &[u8], load: impl FnOnce() -> Loaded) -> FsResult<usize> {
        let (inode, append) = match self.handles.get(&fh) {
            Some(h) if h.virtual_name.is_none() => (h.inode, h.append),
            _ => return Err(FsError::BadHandle),
        };
        if !append && offset.saturating_add(data.len() as u64) > MAX_FILE_SIZE {
            return Err(FsError::FileTooBig);
        }
        let s = self.state_with_content(inode, load);
        let content = s.content.as_mut().expect("content loaded");
        let offset = if append { content.len() as u64 } else { offset };
        let end = offset.checked_add(data.len() as u64).ok_or(FsError::FileTooBig)?;
        if end > MAX_FILE_SIZE {
            return Err(FsError::FileTooBig);
        }
        let before = content.len() as u64;
        apply_write(content, offset as usize, data, false);
        let after = content.len() as u64;
        s.generation += 1;
        s.mtime = now_secs();
        s.explicit_mtime = false;
        let orphan = s.orphan.is_some();
        self.pending_bytes += after - before;
        if !orphan {
            self.copies.write(inode, offset, data, after);
        }
        if let Some(h) = self.handles.get_mut(&fh) {
            h.wrote = true;
        }
        Ok(data.len())
    }

    /// truncate/ftruncate/O_TRUNC of `inode` to `size` (through `fh` if given).
    pub fn truncate(&mut self, inode: u64, fh: Option<u64>, size: u64, load: impl FnOnce() -> Loaded) -> FsResult<()> {
        if size > MAX_FILE_SIZE {
            return Err(FsError::FileTooBig);
        }
        let s = self.state_with_content(inode, load);
        let content = s.content.as_mut().expect("content loaded");
        let before = content.len() as u64;
        content.resize(size as usize, 0);
        s.generation += 1;
        s.mtime = now_secs();
        s.explicit_mtime = false;
        let orphan = s.orphan.is_some();
        self.pending_bytes = self.pending_bytes - before + size;
        if !orphan {
            self.copies.truncate(inode, size);
        }
        if let Some(h) = fh.and_then(|f| self.handles.get_mut(&f)) {
            h.wrote = true;
        }
        Ok(())
    }

    /// utimens while content is pending: the time travels with the content's commit.
    /// Returns false when nothing is pending (the caller applies the mtime at once).
    pub fn set_mtime(&mut self, inode: u64, mtime: u32) -> bool {
        match self.inodes.get_mut(&inode) {
            Some(s) if s.content.is_some() || s.created || s.orphan.is_some() => {
                s.mtime = mtime;
                s.explicit_mtime = s.orphan.is_none();
                s.generation += 1;
                true
            }
            _ => false,
        }
    }

    /// True when `inode` has something a commit point must write.
    pub fn is_dirty(&self, inode: u64) -> bool {
        self.inodes.get(&inode).is_some_and(|s| s.dirty())
    }

    /// What a commit of `inode` must write now (None: nothing pending).
    pub fn take_for_commit(&self, inode: u64) -> Option<CommitTake> {
        let s = self.inodes.get(&inode)?;
        if !s.dirty() {
            return None;
        }
        Some(CommitTake {
            generation: s.generation,
            content: s.content.clone(),
            mtime: s.explicit_mtime.then_some(s.mtime),
            created: s.created,
        })
    }

    /// The commit of `take` succeeded: drop what it wrote unless newer changes came meanwhile.
    pub fn committed(&mut self, inode: u64, take: &CommitTake) {
        let Some(s) = self.inodes.get_mut(&inode) else { return };
        if take.created {
            s.created = false;
        }
        if s.generation == take.generation {
            if let Some(c) = s.content.take() {
                self.pending_bytes -= c.len() as u64;
            }
            s.explicit_mtime = false;
            self.copies.remove(inode);
        }
        self.forget_if_idle(inode);
    }

    /// The inode left the tree (unlink, or replaced by a rename) while handles are open:
    /// its descriptors keep `committed` (or the pending content); nothing is committed any
    /// more and no crash copy brings it back.
    pub fn orphan_inode(&mut self, inode: u64, path: String, committed: impl FnOnce() -> Vec<u8>) {
        let Some(s) = self.inodes.get_mut(&inode) else { return };
        if s.handles == 0 {
            if let Some(c) = s.content.take() {
                self.pending_bytes -= c.len() as u64;
            }
            self.inodes.remove(&inode);
            self.copies.remove(inode);
            return;
        }
        if s.content.is_none() {
            let c = committed();
            self.pending_bytes += c.len() as u64;
            s.content = Some(c);
        }
        s.orphan = Some(Orphan { path });
        s.created = false;
        s.explicit_mtime = false;
        self.copies.remove(inode);
    }

    /// Inodes with something to commit (shutdown, retry).
    pub fn dirty_inodes(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.inodes.iter().filter(|(_, s)| s.dirty()).map(|(i, _)| *i).collect();
        v.sort_unstable();
        v
    }

    /// Total bytes of pending content.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    /// The inode with the largest pending content (for an early commit past the cap).
    pub fn largest_pending(&self) -> Option<u64> {
        self.inodes
            .iter()
            .filter(|(_, s)| s.orphan.is_none())
            .filter_map(|(i, s)| s.content.as_ref().map(|c| (c.len(), *i)))
            .max()
            .map(|(_, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> OpenFiles {
        OpenFiles::new(CrashCopies::new(None))
    }

    fn file(inode: u64) -> Handle {
        Handle { inode, ..Default::default() }
    }

    #[test]
    fn two_handles_share_one_content() {
        let mut t = table();
        let a = t.open(file(5));
        let b = t.open(file(5));
        t.write(a, 0, b"AAAA", || (b"........".to_vec(), None)).unwrap();
        t.write(b, 4, b"BBBB", || unreachable!()).unwrap();
        assert_eq!(t.content(5), Some(&b"AAAABBBB"[..]));
        assert_eq!(t.overlay(5).and_then(|o| o.size), Some(8));
    }

    #[test]
    fn append_handles_write_at_the_shared_end() {
        let mut t = table();
        let a = t.open(Handle { append: true, ..file(5) });
        let b = t.open(Handle { append: true, ..file(5) });
        t.write(a, 0, b"1\n", || (b"x\n".to_vec(), None)).unwrap();
        t.write(b, 0, b"2\n", || (Vec::new(), None)).unwrap();
        t.write(a, 2, b"3\n", || (Vec::new(), None)).unwrap();
        assert_eq!(t.content(5), Some(&b"x\n1\n2\n3\n"[..]));
    }

    #[test]
    fn efbig_refuses_only_that_write() {
        let mut t = table();
        let a = t.open(file(5));
        t.write(a, 0, b"keep", || (Vec::new(), None)).unwrap();
        assert_eq!(t.write(a, MAX_FILE_SIZE - 1, b"xx", || (Vec::new(), None)), Err(FsError::FileTooBig));
        t.write(a, 4, b"more", || (Vec::new(), None)).unwrap();
        assert_eq!(t.content(5), Some(&b"keepmore"[..]));
    }

    #[test]
    fn a_commit_keeps_changes_made_while_it_ran() {
        let mut t = table();
        let a = t.open(file(5));
        t.write(a, 0, b"one", || (Vec::new(), None)).unwrap();
        let take = t.take_for_commit(5).unwrap();
        t.write(a, 3, b"two", || (Vec::new(), None)).unwrap();
        t.committed(5, &take);
        assert_eq!(t.content(5), Some(&b"onetwo"[..]));
        let take = t.take_for_commit(5).unwrap();
        t.committed(5, &take);
        assert_eq!(t.content(5), None);
        assert_eq!(t.pending_bytes(), 0);
    }

    #[test]
    fn an_orphan_stays_readable_and_is_never_committed() {
        let mut t = table();
        let a = t.open(file(5));
        t.orphan_inode(5, "x.conf".into(), || b"data".to_vec());
        assert_eq!(t.content(5), Some(&b"data"[..]));
        assert_eq!(t.overlay(5).map(|o| o.nlink), Some(0));
        t.write(a, 4, b"+", || (Vec::new(), None)).unwrap();
        assert!(t.take_for_commit(5).is_none());
        let (_, last) = t.close(a).unwrap();
        assert!(last);
        t.forget_if_idle(5);
        assert!(t.state(5).is_none());
        assert_eq!(t.pending_bytes(), 0);
    }

    #[test]
    fn utimens_while_pending_travels_with_the_commit() {
        let mut t = table();
        let a = t.open(file(5));
        t.write(a, 0, b"x", || (Vec::new(), None)).unwrap();
        assert!(t.set_mtime(5, 1234));
        let take = t.take_for_commit(5).unwrap();
        assert_eq!(take.mtime, Some(1234));
        assert_eq!(t.overlay(5).map(|o| o.mtime), Some(1234));
    }
}
