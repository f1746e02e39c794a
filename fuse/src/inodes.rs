//! Kernel inode numbers: tree inodes shifted by one (the tree root 0 is FUSE's root 1), and a
//! fixed high range for the special root entries (symlinks and virtual files).
//!
//! Tree inode numbers are never reused (a new inode is the new global version), so the
//! mapping is stable for the life of the mount.

/// First kernel inode of the special entries (index added).
pub const SPECIAL_BASE: u64 = u64::MAX - 64;

/// Kernel inode of a tree inode.
pub fn from_tree(inode: u64) -> u64 {
    inode + 1
}

/// What a kernel inode names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ino {
    Tree(u64),
    Special(usize),
}

pub fn classify(ino: u64) -> Ino {
    if ino >= SPECIAL_BASE {
        Ino::Special((ino - SPECIAL_BASE) as usize)
    } else {
        Ino::Tree(ino.saturating_sub(1))
    }
}

pub fn from_special(index: usize) -> u64 {
    SPECIAL_BASE + index as u64
}
