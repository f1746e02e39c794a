//! Ownership and mode model of the original (spec §4.4): root:www-data, modes derived from
//! quorum and the path (private paths 0700/0600), nothing stored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType};
use pmxcfs_backend::{path::is_private, Entry};

use crate::open_files::Overlay;

/// Owner and group every entry reports.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub gid: u32,
}

fn time(secs: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

/// The openvz legacy action scripts get the owner's execute bit.
fn is_openvz_script(name: &str) -> bool {
    const ACTIONS: [&str; 6] = ["mount", "umount", "start", "stop", "premount", "postumount"];
    let Some((stem, ext)) = name.rsplit_once('.') else { return false };
    ACTIONS.contains(&ext)
        && (stem == "vps" || (!stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit())))
}

/// Permission bits after the original's masking for `path`.
pub fn mode_for(path: &str, is_dir_or_link: bool, base: u32) -> u32 {
    if is_private(path) {
        base & 0o700
    } else if is_dir_or_link {
        base & 0o755
    } else {
        base & 0o750
    }
}

fn attr(ino: u64, kind: FileType, perm: u32, size: u64, mtime: u32, nlink: u32, owner: Owner) -> FileAttr {
    let t = time(mtime);
    FileAttr {
        ino,
        size,
        blocks: size.div_ceil(4096),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind,
        perm: perm as u16,
        nlink,
        uid: 0,
        gid: owner.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// Attributes of a tree entry at `path`; `overlay` shows the pending content's size and
/// mtime while open handles hold changes not yet in the tree (and nlink 0 for an orphan).
pub fn entry_attr(ino: u64, e: &Entry, path: &str, quorate: bool, overlay: Option<Overlay>, owner: Owner) -> FileAttr {
    if e.is_dir() {
        let base = if e.inode == 0 || quorate { 0o777 } else { 0o555 };
        let perm = if e.inode == 0 { base & 0o755 } else { mode_for(path, true, base) };
        attr(ino, FileType::Directory, perm, 0, e.mtime, 2, owner)
    } else {
        let mut base = if quorate { 0o666 } else { 0o444 };
        if is_openvz_script(&e.name) {
            base |= 0o100;
        }
        let size = overlay.and_then(|o| o.size).unwrap_or(e.size() as u64);
        let mtime = overlay.map(|o| o.mtime).unwrap_or(e.mtime);
        let nlink = overlay.map(|o| o.nlink).unwrap_or(1);
        attr(ino, FileType::RegularFile, mode_for(path, false, base), size, mtime, nlink, owner)
    }
}

/// Attributes of a node symlink.
pub fn symlink_attr(ino: u64, target_len: usize, quorate: bool, owner: Owner) -> FileAttr {
    let base = if quorate { 0o777 } else { 0o555 };
    FileAttr { blocks: 0, ..attr(ino, FileType::Symlink, base & 0o755, target_len as u64, 0, 1, owner) }
}

/// Attributes of a virtual file with its freshly generated size. Virtual files and the
/// symlinks occupy no blocks (`st_blocks` 0), as with the original.
pub fn virtual_attr(ino: u64, mode: u32, size: usize, owner: Owner) -> FileAttr {
    FileAttr { blocks: 0, ..attr(ino, FileType::RegularFile, mode, size as u64, 0, 1, owner) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_match_the_originals_table() {
        assert_eq!(mode_for("datacenter.cfg", false, 0o666), 0o640);
        assert_eq!(mode_for("datacenter.cfg", false, 0o444), 0o440);
        assert_eq!(mode_for("priv/authkey.key", false, 0o666), 0o600);
        assert_eq!(mode_for("nodes", true, 0o777), 0o755);
        assert_eq!(mode_for("nodes/pve1/priv", true, 0o777), 0o700);
        assert_eq!(mode_for("nodes", true, 0o555), 0o555);
        assert!(is_openvz_script("101.mount"));
        assert!(is_openvz_script("vps.premount"));
        assert!(!is_openvz_script("101.conf"));
    }
}
