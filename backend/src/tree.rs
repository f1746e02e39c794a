//! The in-RAM tree (the original's memdb): the truth every read is served from.
//!
//! Every mutating operation checks in the original's order, bumps the global version once,
//! stamps the entry and the root with the operation's writer and mtime, and records the
//! touched inodes as dirty for the store. Side tables (guest list, observed-file counters,
//! lock table) are kept current here, under the same lock as the tree.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::entry::{Content, Entry, Name};
use crate::error::{FsError, FsResult};
use crate::index;
use crate::locks::LockTable;
use crate::observed::ObservedCounters;
use crate::path::{self, check_new_name};
use crate::vmlist::{parse_vm_config_path, VmConfigPath, VmList};

mod resync;
pub use resync::{ResyncOutcome, ResyncPlan};

/// Largest file the tree accepts (`MEMDB_MAX_FILE_SIZE`).
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;
/// Reported (not enforced) filesystem size limit.
pub const MAX_FS_SIZE: u64 = 128 * 1024 * 1024;
/// Reported (not enforced) inode limit.
pub const MAX_INODES: u64 = 256 * 1024;
/// Block size used for statfs and st_blocks.
pub const BLOCK_SIZE: u64 = 4096;

/// Who made a change and when: the `writer` (corosync nodeid, 0 locally) and `mtime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub writer: u32,
    pub mtime: u32,
}

/// Seconds since the epoch, as the original stores them (u32).
pub fn now_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// The original's write arithmetic on a file buffer (spec §3.5), shared by the tree and by
/// open-file buffers: a new or empty file gets exactly `offset + len` bytes, a longer write
/// grows the file, `truncate` cuts it after the write; gaps are zero-filled. The caller has
/// checked the 1 MiB limit.
pub fn apply_write(buf: &mut Vec<u8>, offset: usize, data: &[u8], truncate: bool) {
    let end = offset + data.len();
    if buf.is_empty() || end > buf.len() {
        buf.resize(end, 0);
    } else if truncate {
        buf.truncate(end);
    }
    buf[offset..end].copy_from_slice(data);
}

/// [`apply_write`] on a file's shared buffer, copy-on-write: the bytes are changed in place
/// only when nobody else holds them and the length stays; otherwise a new buffer of the
/// resulting length is built (one allocation) and swapped in, so a reader holding the old
/// one keeps seeing the old bytes.
pub fn write_content(buf: &mut Arc<[u8]>, offset: usize, data: &[u8], truncate: bool) {
    let end = offset + data.len();
    let old_len = buf.len();
    let new_len = if truncate || end > old_len { end } else { old_len };
    if new_len == old_len {
        if let Some(bytes) = Arc::get_mut(buf) {
            bytes[offset..end].copy_from_slice(data);
            return;
        }
    }
    let mut fresh: Arc<[u8]> = std::iter::repeat_n(0u8, new_len).collect();
    let bytes = Arc::get_mut(&mut fresh).expect("a buffer just built has no other holder");
    let kept = old_len.min(offset);
    bytes[..kept].copy_from_slice(&buf[..kept]);
    bytes[offset..end].copy_from_slice(data);
    if new_len > end {
        bytes[end..].copy_from_slice(&buf[end..new_len]);
    }
    *buf = fresh;
}

/// statfs figures as the original computes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    pub blocks: u64,
    pub bfree: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

/// Hashes inode numbers with one rotate, xor and multiply (the Fx hash): inodes are small
/// integers chosen by the tree, so SipHash's flooding resistance buys nothing, and it cost
/// about a tenth of the daemon's instructions per `cat`.
#[derive(Debug, Default, Clone, Copy)]
pub struct InodeHasher(u64);

impl Hasher for InodeHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by inode.
pub type InodeMap<V> = HashMap<u64, V, BuildHasherDefault<InodeHasher>>;

/// The tree plus the tables derived from it.
#[derive(Debug, Clone)]
pub struct Tree {
    entries: InodeMap<Entry>,
    pub vmlist: VmList,
    pub observed: ObservedCounters,
    pub locks: LockTable,
    dirty: BTreeSet<u64>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

impl Tree {
    /// An empty tree: only the root (inode 0, version 0).
    pub fn new() -> Tree {
        let mut entries = InodeMap::default();
        entries.insert(0, Entry::new_dir(0, 0, ""));
        Tree {
            entries,
            vmlist: VmList::default(),
            observed: ObservedCounters::default(),
            locks: LockTable::default(),
            dirty: BTreeSet::new(),
        }
    }

    /// Builds a tree from loaded entries (root included, children tables empty), linking
    /// children to parents with the original's consistency checks.
    pub fn from_entries(list: Vec<Entry>) -> Result<Tree, String> {
        let mut entries: InodeMap<Entry> = InodeMap::with_capacity_and_hasher(list.len(), Default::default());
        for e in list {
            let ino = e.inode;
            if entries.insert(ino, e).is_some() {
                return Err(format!("duplicate inode {ino}"));
            }
        }
        if !entries.get(&0).is_some_and(|r| r.is_dir()) {
            return Err("root entry missing".into());
        }
        let mut inodes: Vec<u64> = entries.keys().copied().filter(|i| *i != 0).collect();
        inodes.sort_unstable();
        // The original links entries one by one in inode order and stops at the first
        // problem. Here each directory's (name, inode) list is gathered in inode order, then
        // sorted by name and built in bulk (full B-tree nodes: a third less memory than
        // inserting one by one); the problem reported is the one at the lowest inode, as the
        // original's would be.
        let mut lists: InodeMap<Vec<(Name, u64)>> = InodeMap::default();
        let mut problem: Option<(u64, String)> = None;
        for ino in &inodes {
            let e = &entries[ino];
            let (parent, name) = (e.parent, &e.name);
            match entries.get(&parent).map(|p| p.is_dir()) {
                None => problem = Some((*ino, format!("missing directory inode {parent} (parent of inode {ino} '{name}')"))),
                Some(false) => problem = Some((*ino, format!("parent inode {parent} of inode {ino} '{name}' is not a directory"))),
                Some(true) => {
                    lists.entry(parent).or_default().push((name.clone(), *ino));
                    continue;
                }
            }
            break;
        }
        for (parent, list) in &mut lists {
            // stable: within one name, inode order stays, so the first of a run is the one
            // the original keeps and the second the one it fails on
            list.sort_by(|a, b| a.0.cmp(&b.0));
            for pair in list.windows(2) {
                let ((name, kept), (next, ino)) = (&pair[0], &pair[1]);
                if name == next && problem.as_ref().is_none_or(|(at, _)| ino < at) {
                    problem = Some((
                        *ino,
                        format!("found entry with duplicate name '{name}' in directory inode {parent} (inodes {kept} and {ino})"),
                    ));
                }
            }
        }
        if let Some((_, why)) = problem {
            return Err(why);
        }
        for (parent, list) in lists {
            if let Some(children) = entries.get_mut(&parent).and_then(|p| p.children_mut()) {
                *children = list.into_iter().collect();
            }
        }
        let tree = Tree { entries, ..Tree::new() };
        // Every entry must be reachable from the root (no cycles through parents).
        let mut seen = 0usize;
        let mut stack = vec![0u64];
        while let Some(i) = stack.pop() {
            seen += 1;
            if let Some(c) = tree.entries[&i].children() {
                stack.extend(c.values().copied());
            }
        }
        if seen != tree.entries.len() {
            return Err("some entries are not reachable from the root (parent cycle)".into());
        }
        Ok(tree)
    }

    // ----- read side -------------------------------------------------------------------

    pub fn root(&self) -> &Entry {
        &self.entries[&0]
    }

    /// Global version (the root's version).
    pub fn version(&self) -> u64 {
        self.root().version
    }

    pub fn get(&self, inode: u64) -> Option<&Entry> {
        self.entries.get(&inode)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.len() <= 1
    }

    /// Entries sorted by inode.
    pub fn sorted_entries(&self) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = self.entries.values().collect();
        v.sort_unstable_by_key(|e| e.inode);
        v
    }

    /// Looks up a relative path (`""` is the root).
    pub fn lookup(&self, path: &str) -> Option<&Entry> {
        let mut cur = self.root();
        for comp in path::components(path) {
            let child = cur.children()?.get(comp)?;
            cur = self.entries.get(child)?;
        }
        Some(cur)
    }

    /// Looks up `name` inside directory `dir_inode`.
    pub fn lookup_child(&self, dir_inode: u64, name: &str) -> Option<&Entry> {
        let ino = self.entries.get(&dir_inode)?.children()?.get(name)?;
        self.entries.get(ino)
    }

    /// The relative path of an inode (`""` for the root); None if it is not in the tree.
    /// One allocation: the length is summed on a first walk up, the names are copied in
    /// from the end on a second.
    pub fn path_of(&self, inode: u64) -> Option<String> {
        let mut len = 0usize;
        let mut cur = self.entries.get(&inode)?;
        let mut depth = 0;
        while cur.inode != 0 {
            len += cur.name.len() + 1;
            cur = self.entries.get(&cur.parent)?;
            depth += 1;
            if depth > 4096 {
                return None;
            }
        }
        let mut buf = vec![b'/'; len.saturating_sub(1)];
        let mut end = buf.len();
        let mut cur = &self.entries[&inode];
        while cur.inode != 0 {
            let start = end - cur.name.len();
            buf[start..end].copy_from_slice(cur.name.as_bytes());
            end = start.saturating_sub(1);
            cur = &self.entries[&cur.parent];
        }
        // names are whole UTF-8 strings joined by '/'
        String::from_utf8(buf).ok()
    }

    /// File contents; directories and missing paths are ENOENT (like `memdb_read`).
    pub fn read(&self, path: &str) -> FsResult<Arc<[u8]>> {
        match self.lookup(path).map(|e| &e.content) {
            Some(Content::File(d)) => Ok(d.clone()),
            _ => Err(FsError::NotFound),
        }
    }

    pub fn statfs(&self) -> FsStats {
        let total: u64 = self.entries.values().map(|e| e.size() as u64).sum();
        let blocks = MAX_FS_SIZE / BLOCK_SIZE;
        let used = total.div_ceil(BLOCK_SIZE);
        FsStats {
            blocks,
            bfree: blocks.saturating_sub(used),
            files: MAX_INODES,
            ffree: MAX_INODES.saturating_sub(self.entries.len() as u64),
            bsize: BLOCK_SIZE as u32,
            namelen: path::MAX_NAME_LEN as u32,
        }
    }

    /// The encoded memdb index (DFSM state).
    pub fn encode_index(&self) -> Vec<u8> {
        index::encode_index(self.root(), self.sorted_entries().into_iter())
    }

    /// Whole-tree checksum (inode order).
    pub fn checksum(&self) -> [u8; 32] {
        index::tree_checksum(self.sorted_entries().into_iter())
    }

    // ----- dirty tracking for the store -----------------------------------------------

    /// True when changes are waiting for the store.
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Takes the dirty set: for each inode, the current entry (to write) or None (deleted).
    pub fn take_dirty(&mut self) -> Vec<(u64, Option<Entry>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|ino| (ino, self.entries.get(&ino).cloned()))
            .collect()
    }

    /// Puts inodes back into the dirty set (after a failed commit).
    pub fn mark_dirty(&mut self, inodes: impl IntoIterator<Item = u64>) {
        self.dirty.extend(inodes);
    }

    /// Sets the global version without a change (fresh database starts at 1).
    pub fn init_version(&mut self, version: u64) {
        if let Some(r) = self.entries.get_mut(&0) {
            r.version = version;
        }
        self.dirty.insert(0);
    }

    // ----- derived tables -------------------------------------------------------------

    /// Rebuilds the guest list from the tree. Returns the duplicate VMIDs found
    /// (path kept, path ignored); the first path in inode order wins.
    pub fn rebuild_vmlist(&mut self) -> Vec<(u32, String, String)> {
        let mut found: Vec<(u64, VmConfigPath, String)> = Vec::new();
        if let Some(nodes) = self.lookup("nodes").filter(|e| e.is_dir()) {
            for (node, ino) in nodes.children().into_iter().flatten() {
                if !path::valid_nodename(node) {
                    continue;
                }
                for tdir in ["qemu-server", "openvz", "lxc"] {
                    let Some(d) = self.lookup_child(*ino, tdir) else { continue };
                    for (name, fino) in d.children().into_iter().flatten() {
                        let p = format!("nodes/{node}/{tdir}/{name}");
                        if let (Some(cfg), Some(f)) = (parse_vm_config_path(&p), self.entries.get(fino)) {
                            if !f.is_dir() {
                                found.push((*fino, cfg, p));
                            }
                        }
                    }
                }
            }
        }
        found.sort_by_key(|(ino, _, _)| *ino);
        let mut seen: HashMap<u32, String> = HashMap::new();
        let mut dups = Vec::new();
        let mut configs = Vec::new();
        for (_, cfg, p) in found {
            if let Some(first) = seen.get(&cfg.vmid) {
                dups.push((cfg.vmid, first.clone(), p));
                continue;
            }
            seen.insert(cfg.vmid, p);
            configs.push(cfg);
        }
        self.vmlist.replace(&configs);
        dups
    }

    /// Rebuilds the lock table from `priv/lock/*` (every lock gets a fresh timeout).
    pub fn rebuild_locks(&mut self, now: u32) {
        let mut locks = LockTable::default();
        if let Some(dir) = self.lookup("priv/lock").filter(|e| e.is_dir()) {
            for (name, ino) in dir.children().into_iter().flatten() {
                if let Some(e) = self.entries.get(ino).filter(|e| e.is_dir()) {
                    locks.reset(&format!("priv/lock/{name}"), now, index::entry_csum(e));
                }
            }
        }
        self.locks = locks;
    }

    /// Everything the original does after loading a tree: observed counters, guest list,
    /// lock table. Returns duplicate VMIDs (see [`Tree::rebuild_vmlist`]).
    pub fn after_load(&mut self, now: u32) -> Vec<(u32, String, String)> {
        self.observed.record_reload();
        let dups = self.rebuild_vmlist();
        self.rebuild_locks(now);
        dups
    }

    // ----- cluster resync ----------------------------------------------------------

    /// The tree a resync produces (`bdb_backend_commit_update`): this tree's entries whose
    /// inodes the leader still lists (`keep`), replaced or extended by the leader's `updates`
    /// (an update for inode 0 carries the root's version, writer and mtime). Side tables are
    /// carried over and refreshed like after a load. Returns the new tree and the inodes
    /// that disappear. Builds a whole new tree: the cluster path uses [`Tree::plan_resync`]
    /// and [`Tree::apply_resync`] instead (in place, O(K) plus one index pass); this stays
    /// as their reference in tests.
    pub fn resynced(&self, keep: &std::collections::HashSet<u64>, updates: Vec<Entry>, now: u32) -> Result<(Tree, Vec<u64>), String> {
        let mut map: InodeMap<Entry> = InodeMap::default();
        let mut deleted = Vec::new();
        for (ino, e) in &self.entries {
            if *ino == 0 || keep.contains(ino) {
                let mut c = e.clone();
                if let Some(children) = c.children_mut() {
                    children.clear();
                }
                map.insert(*ino, c);
            } else {
                deleted.push(*ino);
            }
        }
        for mut u in updates {
            if let Some(children) = u.children_mut() {
                children.clear();
            }
            if u.inode == 0 {
                let root = map.get_mut(&0).expect("root kept");
                root.version = u.version;
                root.writer = u.writer;
                root.mtime = u.mtime;
            } else {
                map.insert(u.inode, u);
            }
        }
        deleted.sort_unstable();
        let mut tree = Tree::from_entries(map.into_values().collect())?;
        tree.vmlist = self.vmlist.clone();
        tree.observed = self.observed.clone();
        for (vmid, kept, ignored) in tree.after_load(now) {
            tracing::warn!(target: "database", "detected duplicate VMID {vmid}: '{kept}' and '{ignored}' (using the first)");
        }
        Ok((tree, deleted))
    }

    // ----- mutations ------------------------------------------------------------------

    fn bump(&mut self, stamp: Stamp) -> u64 {
        let root = self.entries.get_mut(&0).expect("root always exists");
        root.version += 1;
        root.writer = stamp.writer;
        root.mtime = stamp.mtime;
        self.dirty.insert(0);
        root.version
    }

    /// Resolves the parent directory of `path`: (parent inode, basename), without allocating
    /// (the basename is the last non-empty component; `""` for the root).
    fn parent_dir<'p>(&self, path: &'p str) -> FsResult<(u64, &'p str)> {
        let trimmed = path.trim_end_matches('/');
        let (dir, base) = match trimmed.rfind('/') {
            Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
            None => ("", trimmed),
        };
        let parent = self.lookup(dir).ok_or(FsError::NotFound)?;
        if !parent.is_dir() {
            return Err(FsError::NotADirectory);
        }
        Ok((parent.inode, base))
    }

    fn insert_child(&mut self, parent: u64, name: &str, inode: u64) {
        if let Some(c) = self.entries.get_mut(&parent).and_then(|p| p.children_mut()) {
            c.insert(Name::from(name), inode);
        }
    }

    fn remove_child(&mut self, parent: u64, name: &str) {
        if let Some(c) = self.entries.get_mut(&parent).and_then(|p| p.children_mut()) {
            c.remove(name);
        }
    }

    /// `memdb_mkdir`. Returns the new inode.
    pub fn mkdir(&mut self, path: &str, stamp: Stamp) -> FsResult<u64> {
        let (parent, name) = self.parent_dir(path)?;
        check_new_name(name)?;
        if self.lookup_child(parent, name).is_some() {
            return Err(FsError::Exists);
        }
        let version = self.bump(stamp);
        let mut e = Entry::new_dir(version, parent, name);
        e.version = version;
        e.writer = stamp.writer;
        e.mtime = stamp.mtime;
        let csum = index::entry_csum(&e);
        self.entries.insert(version, e);
        self.insert_child(parent, name, version);
        self.dirty.insert(version);
        let norm = path::normalize(path);
        if path::parent_is_lock_root(&norm) {
            self.locks.reset(&norm, now_secs(), csum);
        }
        Ok(version)
    }

    /// `memdb_create`: a new empty file. Returns the new inode.
    pub fn create(&mut self, path: &str, stamp: Stamp) -> FsResult<u64> {
        self.pwrite(path, 0, &[], false, true, stamp)?;
        let (parent, name) = self.parent_dir(path)?;
        Ok(self.lookup_child(parent, name).map(|e| e.inode).unwrap_or(0))
    }

    /// `memdb_write`: writes `data` at `offset`; with `truncate` the file ends after it.
    pub fn write(&mut self, path: &str, offset: u64, data: &[u8], truncate: bool, stamp: Stamp) -> FsResult<usize> {
        self.pwrite(path, offset, data, truncate, false, stamp)
    }

    fn pwrite(&mut self, path: &str, offset: u64, data: &[u8], truncate: bool, create: bool, stamp: Stamp) -> FsResult<usize> {
        let end = offset.checked_add(data.len() as u64).ok_or(FsError::FileTooBig)?;
        if end > MAX_FILE_SIZE {
            return Err(FsError::FileTooBig);
        }
        let (parent, name) = self.parent_dir(path)?;
        check_new_name(name)?;
        let norm = path::normalize(path);
        let vm = parse_vm_config_path(&norm);
        if let Some(cfg) = &vm {
            if self.vmlist.conflicts(cfg) {
                return Err(FsError::Exists);
            }
        }
        let existing = self.lookup_child(parent, name).map(|e| (e.inode, e.is_dir()));
        let inode = match (existing, create) {
            (Some((_, true)), _) => return Err(FsError::NotADirectory),
            (Some(_), true) => return Err(FsError::Exists),
            (None, false) => return Err(FsError::NotFound),
            (Some((ino, false)), false) => ino,
            (None, true) => 0,
        };
        let version = self.bump(stamp);
        let inode = if create {
            self.entries.insert(version, Entry::new_file(version, parent, name, &[][..]));
            self.insert_child(parent, name, version);
            version
        } else {
            inode
        };
        let e = self.entries.get_mut(&inode).expect("entry checked above");
        if let Content::File(buf) = &mut e.content {
            write_content(buf, offset as usize, data, truncate);
        }
        e.version = version;
        e.writer = stamp.writer;
        e.mtime = stamp.mtime;
        self.dirty.insert(inode);
        self.observed.record_change(&norm);
        if let Some(cfg) = vm {
            self.vmlist.register(&cfg);
        }
        Ok(data.len())
    }

    /// `memdb_mtime` (utimens), with the lock-directory rules.
    pub fn set_mtime(&mut self, path: &str, stamp: Stamp) -> FsResult<()> {
        let (parent, name) = self.parent_dir(path)?;
        check_new_name(name)?;
        let norm = path::normalize(path);
        let e = self.lookup_child(parent, name).ok_or(FsError::NotFound)?;
        let inode = e.inode;
        let is_lock = e.is_dir() && path::parent_is_lock_root(&norm);
        if is_lock && (stamp.mtime < e.mtime || stamp.writer != e.writer) {
            return Err(FsError::AccessDenied);
        }
        let version = self.bump(stamp);
        let e = self.entries.get_mut(&inode).expect("entry checked above");
        e.version = version;
        e.writer = stamp.writer;
        e.mtime = stamp.mtime;
        let csum = index::entry_csum(e);
        self.dirty.insert(inode);
        self.observed.record_change(&norm);
        if is_lock {
            self.locks.reset(&norm, now_secs(), csum);
        }
        Ok(())
    }

    /// `memdb_delete` (unlink and rmdir).
    pub fn delete(&mut self, path: &str, stamp: Stamp) -> FsResult<()> {
        let norm = path::normalize(path);
        let e = self.lookup(&norm).ok_or(FsError::NotFound)?;
        if e.inode == 0 {
            return Err(FsError::AccessDenied);
        }
        if e.children().is_some_and(|c| !c.is_empty()) {
            return Err(FsError::NotEmpty);
        }
        let (inode, parent, name, is_dir) = (e.inode, e.parent, e.name.clone(), e.is_dir());
        if is_dir {
            self.locks.remove(&norm);
        }
        self.observed.record_change(&norm);
        self.remove_child(parent, &name);
        self.entries.remove(&inode);
        self.bump(stamp);
        self.dirty.insert(inode);
        if !is_dir {
            if let Some(cfg) = parse_vm_config_path(&norm) {
                self.vmlist.remove_config(&cfg);
            }
        }
        Ok(())
    }

    /// `memdb_rename`: keeps the inode, replaces an existing (empty) target.
    pub fn rename(&mut self, from: &str, to: &str, stamp: Stamp) -> FsResult<()> {
        let from = path::normalize(from);
        let to = path::normalize(to);
        let src = self.lookup(&from).ok_or(FsError::NotFound)?;
        if src.inode == 0 {
            return Err(FsError::AccessDenied);
        }
        let (src_ino, src_dir, src_parent, src_name) = (src.inode, src.is_dir(), src.parent, src.name.clone());
        let from_vm = parse_vm_config_path(&from);
        let to_vm = parse_vm_config_path(&to);
        if !src_dir {
            if let Some(cfg) = &to_vm {
                let same_guest = from_vm.as_ref().is_some_and(|f| f.vmid == cfg.vmid);
                if self.vmlist.conflicts(cfg) && !same_guest {
                    return Err(FsError::Exists);
                }
            }
        }
        if src_dir && path::is_lock_dir_path(&from) {
            return Err(FsError::AccessDenied);
        }
        let (new_parent, new_name) = self.parent_dir(&to)?;
        check_new_name(new_name)?;
        if src_dir && (to == from || to.starts_with(&format!("{from}/"))) {
            return Err(FsError::Invalid);
        }
        let target = self.lookup_child(new_parent, new_name).map(|t| (t.inode, t.children().is_some_and(|c| !c.is_empty()), t.is_dir()));
        if let Some((t_ino, t_nonempty, _)) = target {
            if t_ino == src_ino {
                return Ok(());
            }
            if t_nonempty {
                return Err(FsError::NotEmpty);
            }
        }
        if self.entries[&src_ino].children().is_some_and(|c| !c.is_empty()) {
            return Err(FsError::NotEmpty);
        }
        self.observed.record_change(&from);
        self.observed.record_change(&to);
        if let Some((t_ino, _, t_dir)) = target {
            self.remove_child(new_parent, new_name);
            self.entries.remove(&t_ino);
            self.dirty.insert(t_ino);
            if t_dir {
                self.locks.remove(&to);
            }
        }
        self.remove_child(src_parent, &src_name);
        let version = self.bump(stamp);
        let e = self.entries.get_mut(&src_ino).expect("source checked above");
        e.parent = new_parent;
        e.name = Name::from(new_name);
        e.version = version;
        e.writer = stamp.writer;
        e.mtime = stamp.mtime;
        self.insert_child(new_parent, new_name, src_ino);
        self.dirty.insert(src_ino);
        if !src_dir {
            if let Some(f) = from_vm {
                self.vmlist.remove_config(&f);
            }
            if let Some(t) = to_vm {
                self.vmlist.register(&t);
            }
        }
        Ok(())
    }

    /// Lock checksum of the entry at `path`, if it is a directory.
    pub fn lock_csum(&self, path: &str) -> Option<[u8; 32]> {
        self.lookup(path).filter(|e| e.is_dir()).map(index::entry_csum)
    }

    /// `memdb_lock_expired`: true once the lock at `path` has kept checksum `csum` for more
    /// than 120 s of local time.
    pub fn lock_expired(&mut self, path: &str, csum: &[u8; 32], now: u32) -> bool {
        self.locks.expired(path, csum, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `write_content` gives the bytes `apply_write` gives a `Vec`, for writes inside, at the
    /// end of, past the end of and over the whole of a file, with and without `truncate`.
    #[test]
    fn write_content_matches_apply_write() {
        let starts: [&[u8]; 3] = [b"", b"abc", b"0123456789"];
        for start in starts {
            for offset in [0usize, 1, 3, 9, 10, 14] {
                for data in [&b""[..], b"X", b"WXYZ", b"ABCDEFGHIJKL"] {
                    for truncate in [false, true] {
                        let mut want = start.to_vec();
                        apply_write(&mut want, offset, data, truncate);
                        let mut got: Arc<[u8]> = Arc::from(start);
                        write_content(&mut got, offset, data, truncate);
                        assert_eq!(&got[..], &want[..], "{start:?} at {offset} {data:?} truncate {truncate}");
                    }
                }
            }
        }
    }

    /// A reader holding the bytes from before a write keeps them, whether the write keeps the
    /// length (in place only when unshared) or changes it.
    #[test]
    fn readers_keep_the_bytes_they_hold() {
        let mut buf: Arc<[u8]> = Arc::from(&b"hello"[..]);
        let held = buf.clone();
        write_content(&mut buf, 0, b"J", false);
        assert_eq!(&held[..], b"hello");
        assert_eq!(&buf[..], b"Jello");
        let held = buf.clone();
        write_content(&mut buf, 5, b" world", false);
        assert_eq!(&held[..], b"Jello");
        assert_eq!(&buf[..], b"Jello world");
        drop(held);
        let before = Arc::as_ptr(&buf);
        write_content(&mut buf, 0, b"M", false);
        assert_eq!(Arc::as_ptr(&buf), before, "an unshared same-length write needs no new buffer");
        assert_eq!(&buf[..], b"Mello world");
    }

    fn loaded(rows: &[(u64, u64, &str, bool)]) -> Vec<Entry> {
        let mut list = vec![Entry::new_dir(0, 0, "")];
        for (ino, parent, name, dir) in rows {
            list.push(if *dir { Entry::new_dir(*ino, *parent, name) } else { Entry::new_file(*ino, *parent, name, &b"x"[..]) });
        }
        list
    }

    #[test]
    fn loading_links_children_in_name_order() {
        let rows: Vec<(u64, u64, String, bool)> = (1..=500u64).rev().map(|i| (i, 0, format!("f{:03}", (i * 7) % 500), false)).collect();
        let rows: Vec<(u64, u64, &str, bool)> = rows.iter().map(|(i, p, n, d)| (*i, *p, n.as_str(), *d)).collect();
        let t = Tree::from_entries(loaded(&rows)).unwrap();
        let names: Vec<String> = t.root().children().into_iter().flatten().map(|(n, _)| n.to_string()).collect();
        let want: Vec<String> = (0..500).map(|i| format!("f{i:03}")).collect();
        assert_eq!(names, want);
        assert_eq!(t.lookup("f007").map(|e| e.inode), Some(1));
    }

    /// Loading reports the problem the original's one-by-one linking in inode order meets
    /// first, whatever kinds the other problems are.
    #[test]
    fn loading_reports_the_problem_at_the_lowest_inode() {
        let dup_first = [(1, 0, "d", true), (2, 1, "a", false), (3, 1, "b", false), (4, 1, "a", false), (5, 1, "a", false), (6, 99, "o", false), (7, 2, "n", false)];
        let err = Tree::from_entries(loaded(&dup_first)).unwrap_err();
        assert_eq!(err, "found entry with duplicate name 'a' in directory inode 1 (inodes 2 and 4)");
        let orphan_first = [(1, 0, "d", true), (2, 1, "a", false), (3, 99, "o", false), (4, 2, "n", false), (5, 1, "a", false)];
        let err = Tree::from_entries(loaded(&orphan_first)).unwrap_err();
        assert_eq!(err, "missing directory inode 99 (parent of inode 3 'o')");
        let file_parent_first = [(1, 0, "d", true), (2, 1, "a", false), (3, 2, "n", false), (4, 1, "a", false)];
        let err = Tree::from_entries(loaded(&file_parent_first)).unwrap_err();
        assert_eq!(err, "parent inode 2 of inode 3 'n' is not a directory");
        let two_dirs = [(1, 0, "d", true), (2, 0, "e", true), (3, 2, "x", false), (4, 1, "y", false), (5, 1, "y", false), (6, 2, "x", false)];
        let err = Tree::from_entries(loaded(&two_dirs)).unwrap_err();
        assert_eq!(err, "found entry with duplicate name 'y' in directory inode 1 (inodes 4 and 5)");
    }

    #[test]
    fn tree_reads_are_snapshots() {
        let mut t = Tree::new();
        let stamp = Stamp { writer: 0, mtime: 1 };
        t.create("f", stamp).unwrap();
        t.write("f", 0, b"one", true, stamp).unwrap();
        let snapshot = t.read("f").unwrap();
        t.write("f", 0, b"two", false, stamp).unwrap();
        t.write("f", 0, b"x", true, stamp).unwrap();
        assert_eq!(&snapshot[..], b"one");
        assert_eq!(&t.read("f").unwrap()[..], b"x");
    }
}
