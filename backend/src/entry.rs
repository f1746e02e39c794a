//! One node of the in-RAM tree (the original's `memdb_tree_entry`).

use std::collections::BTreeMap;
use std::sync::Arc;

use compact_str::CompactString;

/// An entry's name: inline up to 24 bytes (every usual name), on the heap beyond; the same
/// UTF-8 as a `String` (see [`crate::name_bytes`] for names that are not UTF-8).
pub type Name = CompactString;

/// A directory's name → inode table, in name order (readdir order).
pub type Children = BTreeMap<Name, u64>;

/// `DT_DIR` from `<dirent.h>`: the `type` column of a directory row.
pub const DT_DIR: u8 = 4;
/// `DT_REG` from `<dirent.h>`: the `type` column of a file row.
pub const DT_REG: u8 = 8;

/// What an entry holds: file bytes or a directory's name → inode table.
/// File bytes are one allocation shared with readers: a write swaps in a new buffer unless
/// nobody else holds the old one (see [`crate::tree::write_content`]). The table is boxed
/// so that the (far more numerous) files do not pay for its size in every hash table slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    File(Arc<[u8]>),
    Dir(Box<Children>),
}

/// A file or directory with the metadata the original replicates and persists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub inode: u64,
    pub parent: u64,
    pub version: u64,
    pub writer: u32,
    pub mtime: u32,
    pub name: Name,
    pub content: Content,
}

impl Entry {
    pub fn new_dir(inode: u64, parent: u64, name: &str) -> Entry {
        Entry {
            inode,
            parent,
            version: 0,
            writer: 0,
            mtime: 0,
            name: Name::from(name),
            content: Content::Dir(Box::default()),
        }
    }

    pub fn new_file(inode: u64, parent: u64, name: &str, data: impl Into<Arc<[u8]>>) -> Entry {
        Entry {
            inode,
            parent,
            version: 0,
            writer: 0,
            mtime: 0,
            name: Name::from(name),
            content: Content::File(data.into()),
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.content, Content::Dir(_))
    }

    /// The `type` column value: [`DT_DIR`] or [`DT_REG`].
    pub fn kind(&self) -> u8 {
        if self.is_dir() {
            DT_DIR
        } else {
            DT_REG
        }
    }

    /// File length; 0 for directories.
    pub fn size(&self) -> u32 {
        match &self.content {
            Content::File(d) => d.len() as u32,
            Content::Dir(_) => 0,
        }
    }

    /// File bytes; empty for directories.
    pub fn data(&self) -> &[u8] {
        match &self.content {
            Content::File(d) => d,
            Content::Dir(_) => &[],
        }
    }

    pub fn children(&self) -> Option<&Children> {
        match &self.content {
            Content::Dir(c) => Some(c),
            Content::File(_) => None,
        }
    }

    pub fn children_mut(&mut self) -> Option<&mut Children> {
        match &mut self.content {
            Content::Dir(c) => Some(c),
            Content::File(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree keeps one `Entry` per hash table slot: these sizes are what 100,000 entries
    /// cost there. A change that makes them grow should be a deliberate one.
    #[test]
    fn entry_sizes_stay_small() {
        assert_eq!(std::mem::size_of::<Name>(), 24);
        assert_eq!(std::mem::size_of::<Content>(), CONTENT_SIZE);
        assert_eq!(std::mem::size_of::<Entry>(), ENTRY_SIZE);
    }

    const CONTENT_SIZE: usize = 16;
    const ENTRY_SIZE: usize = 72;

    #[test]
    fn short_names_are_inline_long_ones_kept_whole() {
        let e = Entry::new_dir(1, 0, "qemu-server");
        assert!(!e.name.is_heap_allocated());
        let long = "x".repeat(255);
        let e = Entry::new_file(2, 0, &long, b"data".to_vec());
        assert_eq!(e.name, long.as_str());
        assert_eq!(e.data(), b"data");
    }

    #[test]
    fn children_iterate_in_name_order_and_look_up_by_str() {
        let mut d = Entry::new_dir(1, 0, "d");
        let c = d.children_mut().expect("a directory");
        for (i, n) in ["b", "a\u{e0ff}", "A", "a", "ab", "\u{e001}x"].iter().enumerate() {
            c.insert(Name::from(*n), i as u64);
        }
        let names: Vec<&str> = d.children().into_iter().flatten().map(|(n, _)| n.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert_eq!(d.children().and_then(|c| c.get("ab")), Some(&4));
    }
}
