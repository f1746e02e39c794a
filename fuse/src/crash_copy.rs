//! Crash copies of pending content: while an inode has writes that are not in the tree yet,
//! its whole new content is mirrored into one file under the run directory (a tmpfs on a
//! real node), so a SIGKILL/panic/OOM of the daemon loses nothing a `write` returned.
//! The next start hands the leftovers to [`crate::recovery`]; a commit removes the copy.
//!
//! File layout (little endian): magic `PXNGOPN1`, inode u64, parent u64, name length u32,
//! name bytes, zero padding up to [`HEADER_LEN`], then the content. A committed copy's file
//! is kept open for the next one (magic `PXNGFREE`: ignored at start), so the commit of a
//! small file costs one `pwrite`, not a create and an unlink on the tmpfs.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tracing::warn;

const MAGIC: &[u8; 8] = b"PXNGOPN1";
/// Marks a copy file that holds nothing (kept for reuse).
const FREE: &[u8; 8] = b"PXNGFREE";
/// Free copy files kept open for reuse; more are removed.
const MAX_FREE: usize = 16;
/// A freed copy larger than this is cut back to its header (tmpfs memory).
const KEEP_FREE_BYTES: u64 = 64 * 1024;
/// Content starts here; the header (with the name) must fit before it.
pub const HEADER_LEN: u64 = 4096;
const FIXED_LEN: usize = 8 + 8 + 8 + 4;

/// Where a leftover belongs and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub file: PathBuf,
    pub inode: u64,
    pub parent: u64,
    pub name: String,
    pub content: Vec<u8>,
}

/// One crash-copy file, open.
#[derive(Debug)]
struct Slot {
    file: File,
    path: PathBuf,
    /// Content length mirrored (the file is this plus the header).
    len: u64,
}

/// The open crash-copy files, one per inode with pending content, and free ones for reuse.
#[derive(Debug, Default)]
pub struct CrashCopies {
    dir: Option<PathBuf>,
    files: pmxcfs_backend::tree::InodeMap<Slot>,
    free: Vec<Slot>,
    /// Names of this run's files: `<run>-<n>.pending` (never an earlier run's leftover).
    run: String,
    next: u64,
    /// Logged once: the directory is unusable.
    broken: bool,
}

impl CrashCopies {
    /// Copies live in `dir` (created if missing); `None` keeps no copies.
    pub fn new(dir: Option<PathBuf>) -> CrashCopies {
        if let Some(d) = &dir {
            if let Err(e) = std::fs::create_dir_all(d) {
                warn!(target: "fuse", "unable to create crash-copy directory '{}': {e}", d.display());
            }
        }
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let run = format!("{}x{started:x}", std::process::id());
        CrashCopies { dir, files: Default::default(), free: Vec::new(), run, next: 0, broken: false }
    }

    /// A free copy file (true: reused), or a new one.
    fn take_slot(&mut self, dir: &Path) -> std::io::Result<(Slot, bool)> {
        if let Some(slot) = self.free.pop() {
            return Ok((slot, true));
        }
        self.next += 1;
        let path = dir.join(format!("{}-{}.pending", self.run, self.next));
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        Ok((Slot { file, path, len: 0 }, false))
    }

    fn failed(&mut self, what: &str, e: std::io::Error) {
        if !self.broken {
            warn!(target: "fuse", "crash copy: {what} failed: {e} - open files are not protected against a daemon crash");
            self.broken = true;
        }
    }

    /// Starts (or restarts) the copy of `inode` with its whole `content`.
    pub fn begin(&mut self, inode: u64, parent: u64, name: &str, content: &[u8]) {
        let Some(dir) = self.dir.clone() else { return };
        let raw = pmxcfs_backend::name_bytes::encode(name);
        if FIXED_LEN + raw.len() > HEADER_LEN as usize {
            return;
        }
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&inode.to_le_bytes());
        header.extend_from_slice(&parent.to_le_bytes());
        header.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        header.extend_from_slice(&raw);
        let slot = match self.files.remove(&inode) {
            Some(slot) => Ok((slot, true)),
            None => self.take_slot(&dir),
        };
        let result = slot.and_then(|(mut slot, reused)| {
            slot.len = content.len() as u64;
            let f = &slot.file;
            // a new file is empty: writing the content extends it (the gap after the header
            // stays a hole); a reused one is cut to the new length first
            if reused || content.is_empty() {
                f.set_len(HEADER_LEN + content.len() as u64)?;
            }
            if !content.is_empty() {
                f.write_all_at(content, HEADER_LEN)?;
            }
            // the header last: a copy without a valid header is ignored at start
            f.write_all_at(&header, 0)?;
            Ok(slot)
        });
        match result {
            Ok(slot) => {
                self.files.insert(inode, slot);
            }
            Err(e) => self.failed("begin", e),
        }
    }

    /// Mirrors one write (`new_len` = content length after it).
    pub fn write(&mut self, inode: u64, offset: u64, data: &[u8], new_len: u64) {
        let Some(Slot { file: f, len, .. }) = self.files.get_mut(&inode) else { return };
        *len = new_len;
        let result = f.write_all_at(data, HEADER_LEN + offset).and_then(|_| {
            if offset + data.len() as u64 != new_len {
                f.set_len(HEADER_LEN + new_len)?;
            }
            Ok(())
        });
        if let Err(e) = result {
            self.failed("write", e);
        }
    }

    /// Mirrors a truncate.
    pub fn truncate(&mut self, inode: u64, len: u64) {
        let Some(slot) = self.files.get_mut(&inode) else { return };
        slot.len = len;
        if let Err(e) = slot.file.set_len(HEADER_LEN + len) {
            self.failed("truncate", e);
        }
    }

    /// True while `inode` has a copy.
    pub fn has(&self, inode: u64) -> bool {
        self.files.contains_key(&inode)
    }

    /// The content is in the tree (or gone for good): the copy is marked free (one `pwrite`)
    /// and kept for the next one, or removed when enough are kept.
    pub fn remove(&mut self, inode: u64) {
        let Some(slot) = self.files.remove(&inode) else { return };
        let freed = slot.file.write_all_at(FREE, 0).and_then(|_| {
            if slot.len > KEEP_FREE_BYTES {
                slot.file.set_len(HEADER_LEN)?;
            }
            Ok(())
        });
        if freed.is_ok() && self.free.len() < MAX_FREE {
            self.free.push(slot);
        } else {
            let _ = std::fs::remove_file(&slot.path);
        }
    }
}

impl Drop for CrashCopies {
    /// Free copies hold nothing: a clean stop leaves none behind.
    fn drop(&mut self) {
        for slot in self.free.drain(..) {
            let _ = std::fs::remove_file(&slot.path);
        }
    }
}

/// Reads the crash copies in `files` (listed at start, before this run made copies of its
/// own): a damaged one is logged and skipped, and stays on disk for the administrator; a
/// free one is removed.
pub fn leftovers_of(files: &[PathBuf]) -> Vec<Leftover> {
    let mut out = Vec::new();
    for path in files {
        match read_leftover(path) {
            Ok(Some(l)) => out.push(l),
            Ok(None) => {
                // a free copy file of an earlier run: nothing in it
                let _ = std::fs::remove_file(path);
            }
            Err(why) => warn!(target: "fuse", "ignoring damaged crash copy '{}': {why}", path.display()),
        }
    }
    out.sort_by_key(|l| l.inode);
    out
}

/// The crash-copy files in `dir` (names only: nothing is read).
pub fn copy_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(list) = std::fs::read_dir(dir) else { return Vec::new() };
    list.flatten().map(|e| e.path()).filter(|p| p.extension().and_then(|e| e.to_str()) == Some("pending")).collect()
}

/// The leftover in `path`; None for a free copy file.
fn read_leftover(path: &Path) -> Result<Option<Leftover>, String> {
    let mut bytes = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| e.to_string())?;
    if bytes.starts_with(FREE) {
        return Ok(None);
    }
    decode(path, &bytes).map(Some)
}

fn decode(path: &Path, bytes: &[u8]) -> Result<Leftover, String> {
    if bytes.len() < HEADER_LEN as usize || &bytes[..8] != MAGIC {
        return Err("no valid header".into());
    }
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap_or([0; 8]));
    let inode = u64_at(8);
    let parent = u64_at(16);
    let name_len = u32::from_le_bytes(bytes[24..28].try_into().unwrap_or([0; 4])) as usize;
    if FIXED_LEN + name_len > HEADER_LEN as usize {
        return Err("name length out of range".into());
    }
    let name = pmxcfs_backend::name_bytes::decode(&bytes[FIXED_LEN..FIXED_LEN + name_len]).into_owned();
    if name.is_empty() {
        return Err("empty name".into());
    }
    Ok(Leftover { file: path.to_path_buf(), inode, parent, name, content: bytes[HEADER_LEN as usize..].to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<Leftover> {
        leftovers_of(&copy_files(dir))
    }

    #[test]
    fn a_copy_follows_writes_and_truncates_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = CrashCopies::new(Some(dir.path().to_path_buf()));
        c.begin(7, 3, "a.conf", b"hello");
        c.write(7, 5, b" world", 11);
        c.write(7, 0, b"J", 11);
        c.truncate(7, 9);
        let left = leftovers(dir.path());
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].inode, left[0].parent, left[0].name.as_str()), (7, 3, "a.conf"));
        assert_eq!(left[0].content, b"Jello wor");
        c.remove(7);
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_committed_copy_file_is_reused_and_a_free_one_is_no_leftover() {
        let dir = tempfile::tempdir().unwrap();
        let mut crashed = CrashCopies::new(Some(dir.path().to_path_buf()));
        crashed.begin(7, 3, "a.conf", b"a long first content");
        crashed.remove(7);
        assert_eq!(copy_files(dir.path()).len(), 1, "kept for reuse");
        std::mem::forget(crashed); // the daemon died: no clean-up
        assert!(leftovers(dir.path()).is_empty(), "a free copy holds nothing");
        assert!(copy_files(dir.path()).is_empty(), "and is removed when found at start");
        let mut c = CrashCopies::new(Some(dir.path().to_path_buf()));
        c.begin(8, 3, "b.conf", b"a long first content");
        c.remove(8);
        c.begin(9, 3, "c.conf", b"short");
        assert_eq!(copy_files(dir.path()).len(), 1, "the free file was reused");
        let left = leftovers(dir.path());
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].inode, left[0].name.as_str(), left[0].content.as_slice()), (9, "c.conf", &b"short"[..]));
        c.remove(9);
        drop(c);
        assert!(copy_files(dir.path()).is_empty(), "dropping the copies removes the free files");
    }

    #[test]
    fn a_copy_without_header_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("9.pending"), vec![0u8; 5000]).unwrap();
        std::fs::write(dir.path().join("10.pending"), b"PXNG").unwrap();
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn no_directory_keeps_no_copies() {
        let mut c = CrashCopies::new(None);
        c.begin(1, 0, "x", b"abc");
        assert!(!c.has(1));
    }
}
