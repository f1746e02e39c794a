//! One node of the in-RAM tree (the original's `memdb_tree_entry`).

use std::collections::BTreeMap;
use std::sync::Arc;

/// `DT_DIR` from `<dirent.h>`: the `type` column of a directory row.
pub const DT_DIR: u8 = 4;
/// `DT_REG` from `<dirent.h>`: the `type` column of a file row.
pub const DT_REG: u8 = 8;

/// What an entry holds: file bytes or a directory's name → inode table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    File(Arc<Vec<u8>>),
    Dir(BTreeMap<String, u64>),
}

/// A file or directory with the metadata the original replicates and persists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub inode: u64,
    pub parent: u64,
    pub version: u64,
    pub writer: u32,
    pub mtime: u32,
    pub name: String,
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
            name: name.to_string(),
            content: Content::Dir(BTreeMap::new()),
        }
    }

    pub fn new_file(inode: u64, parent: u64, name: &str, data: Vec<u8>) -> Entry {
        Entry {
            inode,
            parent,
            version: 0,
            writer: 0,
            mtime: 0,
            name: name.to_string(),
            content: Content::File(Arc::new(data)),
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
            Content::File(d) => d.as_slice(),
            Content::Dir(_) => &[],
        }
    }

    pub fn children(&self) -> Option<&BTreeMap<String, u64>> {
        match &self.content {
            Content::Dir(c) => Some(c),
            Content::File(_) => None,
        }
    }

    pub fn children_mut(&mut self) -> Option<&mut BTreeMap<String, u64>> {
        match &mut self.content {
            Content::Dir(c) => Some(c),
            Content::File(_) => None,
        }
    }
}
