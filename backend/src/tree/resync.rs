//! A cluster resync applied in place: O(K) work for K updates plus one pass over the index,
//! checked in full (under a read lock) before anything changes (under the write lock).

use std::collections::{HashMap, HashSet};

use super::Tree;
use crate::entry::{Content, Entry};
use crate::index::{entry_digest, IndexView};

/// A resync worked out and checked against the leader's index, not yet applied.
#[derive(Debug)]
pub struct ResyncPlan {
    /// (version, entry count) of the tree the plan was made on.
    seen: (u64, usize),
    /// The leader's updates (inode 0 excluded), children tables empty.
    updates: Vec<Entry>,
    /// The root's version, writer and mtime after the resync.
    root: (u64, u32, u32),
    /// Inodes that disappear.
    deleted: Vec<u64>,
    /// Updated inodes whose entry actually changes here.
    changed: Vec<u64>,
}

/// What a resync changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResyncOutcome {
    /// Entries written (created or replaced), the root excluded.
    pub written: usize,
    /// Inodes removed, ascending.
    pub deleted: Vec<u64>,
    /// Duplicate VMIDs found while rebuilding the guest list (kept path, ignored path).
    pub duplicate_vmids: Vec<(u32, String, String)>,
}

impl ResyncPlan {
    pub fn deleted(&self) -> &[u64] {
        &self.deleted
    }
    pub fn changed(&self) -> &[u64] {
        &self.changed
    }
}

impl Tree {
    /// Plans the resync `bdb_backend_commit_update` performs: keep the entries the leader's
    /// index lists, replace or add the leader's `updates` (an update for inode 0 carries only
    /// the root's version, writer and mtime), drop the rest. Fails — changing nothing — unless
    /// the result's index equals `leader_index` byte for byte and the result is a proper tree
    /// (every parent a directory, names unique per directory, no cycles).
    pub fn plan_resync(&self, leader_index: &[u8], updates: Vec<Entry>) -> Result<ResyncPlan, String> {
        let leader = IndexView::parse(leader_index)?;
        let old_root = self.root();
        let mut root = (old_root.version, old_root.writer, old_root.mtime);
        // the last update of an inode wins, as with the original's hash-table inserts
        let mut by_inode: HashMap<u64, usize> = HashMap::with_capacity(updates.len());
        let mut list: Vec<Entry> = Vec::with_capacity(updates.len());
        for mut u in updates {
            if u.inode == 0 {
                root = (u.version, u.writer, u.mtime);
                continue;
            }
            if let Some(c) = u.children_mut() {
                c.clear();
            }
            match by_inode.get(&u.inode) {
                Some(&i) => list[i] = u,
                None => {
                    by_inode.insert(u.inode, list.len());
                    list.push(u);
                }
            }
        }
        if (leader.version, leader.writer, leader.mtime) != root {
            return Err(format!("leader index header (version {}) does not match the resynced root (version {})", leader.version, root.0));
        }
        if leader.is_empty() || leader.inode(0) != 0 {
            return Err("leader index lacks the root".into());
        }

        // one pass over the index: every digest must come out as the leader's
        let root_digest = {
            let mut r = Entry { content: Content::Dir(Default::default()), ..old_root_header(old_root) };
            (r.version, r.writer, r.mtime) = root;
            entry_digest(&r)
        };
        let mut changed = Vec::new();
        let mut matched_updates = 0usize;
        for i in 0..leader.len() {
            let ino = leader.inode(i);
            let want = leader.digest(i);
            let ok = if ino == 0 {
                root_digest == want
            } else if let Some(&k) = by_inode.get(&ino) {
                matched_updates += 1;
                let d = entry_digest(&list[k]);
                if self.entries.get(&ino).is_none_or(|old| entry_digest(old) != d) {
                    changed.push(ino);
                }
                d == want
            } else {
                self.entries.get(&ino).is_some_and(|e| entry_digest(e) == want)
            };
            if !ok {
                return Err(format!("the resynced tree does not match the leader's index at inode {ino}"));
            }
        }
        if matched_updates != list.len() {
            return Err("the leader sent updates for inodes its index does not list".into());
        }
        let mut deleted: Vec<u64> = self.entries.keys().copied().filter(|i| !leader.contains(*i)).collect();
        deleted.sort_unstable();

        let plan = ResyncPlan { seen: (self.version(), self.entries.len()), updates: list, root, deleted, changed };
        self.check_structure(&plan, &by_inode)?;
        Ok(plan)
    }

    /// The resynced tree must be a tree: checked over the updates and the deleted entries only
    /// (entries that stay as they are were already linked correctly).
    fn check_structure(&self, plan: &ResyncPlan, by_inode: &HashMap<u64, usize>) -> Result<(), String> {
        let deleted: HashSet<u64> = plan.deleted.iter().copied().collect();
        // (parent, is_dir) of an inode after the resync
        let after = |ino: u64| -> Option<(u64, bool)> {
            if ino == 0 {
                return Some((0, true));
            }
            if let Some(&k) = by_inode.get(&ino) {
                let u = &plan.updates[k];
                return Some((u.parent, u.is_dir()));
            }
            if deleted.contains(&ino) {
                return None;
            }
            self.entries.get(&ino).map(|e| (e.parent, e.is_dir()))
        };
        let mut names: HashSet<(u64, &str)> = HashSet::with_capacity(plan.updates.len());
        for u in &plan.updates {
            let ino = u.inode;
            if !after(u.parent).is_some_and(|(_, dir)| dir) || u.parent == ino {
                return Err(format!("resync: parent {} of inode {ino} '{}' is not a directory", u.parent, u.name));
            }
            if !names.insert((u.parent, u.name.as_str())) {
                return Err(format!("resync: duplicate name '{}' in directory inode {}", u.name, u.parent));
            }
            // an entry staying under the same name would clash
            let holder = self.entries.get(&u.parent).and_then(|p| p.children()).and_then(|c| c.get(&u.name)).copied();
            if let Some(h) = holder {
                if h != ino && !deleted.contains(&h) && !by_inode.contains_key(&h) {
                    return Err(format!("resync: duplicate name '{}' in directory inode {} (inodes {h} and {ino})", u.name, u.parent));
                }
            }
            // children of a directory that becomes a file must all move away or go
            if let Some(old) = self.entries.get(&ino) {
                if !u.is_dir() {
                    for c in old.children().into_iter().flat_map(|c| c.values()) {
                        if after(*c).is_some_and(|(p, _)| p == ino) {
                            return Err(format!("resync: inode {ino} becomes a file but keeps child {c}"));
                        }
                    }
                }
            }
            // no cycles: walk up to the root
            let mut cur = ino;
            let mut steps = 0usize;
            while cur != 0 {
                cur = after(cur).map(|(p, _)| p).ok_or_else(|| format!("resync: inode {ino} is not reachable from the root"))?;
                steps += 1;
                if steps > self.entries.len() + plan.updates.len() {
                    return Err(format!("resync: inode {ino} is in a parent cycle"));
                }
            }
        }
        for d in &plan.deleted {
            for c in self.entries.get(d).and_then(|e| e.children()).into_iter().flat_map(|c| c.values()) {
                if after(*c).is_some_and(|(p, _)| p == *d) {
                    return Err(format!("resync: inode {d} goes but its child {c} stays"));
                }
            }
        }
        Ok(())
    }

    /// Applies a plan made by [`Tree::plan_resync`] in place: O(K + deleted) under the write
    /// lock. If the tree changed since the plan was made, plans again here. Every changed and
    /// deleted inode and the root become dirty, so the next commit writes them in one
    /// transaction. Side tables are refreshed like after a load.
    pub fn apply_resync(&mut self, plan: ResyncPlan, leader_index: &[u8], now: u32) -> Result<ResyncOutcome, String> {
        let plan = if plan.seen == (self.version(), self.entries.len()) {
            plan
        } else {
            let mut updates = plan.updates;
            let mut root = old_root_header(self.root());
            (root.version, root.writer, root.mtime) = plan.root;
            updates.push(root);
            self.plan_resync(leader_index, updates)?
        };
        let ResyncPlan { updates, root, deleted, changed, .. } = plan;
        for ino in &deleted {
            if let Some(e) = self.entries.remove(ino) {
                self.unlink(e.parent, &e.name, *ino);
            }
        }
        let changed: HashSet<u64> = changed.into_iter().collect();
        let mut links = Vec::with_capacity(updates.len());
        let mut written = 0;
        for mut u in updates {
            if !changed.contains(&u.inode) {
                continue;
            }
            written += 1;
            if let Some(old) = self.entries.remove(&u.inode) {
                self.unlink(old.parent, &old.name, u.inode);
                if let (Content::Dir(kept), true) = (old.content, u.is_dir()) {
                    u.content = Content::Dir(kept);
                }
            }
            links.push((u.parent, u.name.clone(), u.inode));
            self.dirty.insert(u.inode);
            self.entries.insert(u.inode, u);
        }
        for (parent, name, ino) in links {
            self.insert_child(parent, &name, ino);
        }
        if let Some(r) = self.entries.get_mut(&0) {
            (r.version, r.writer, r.mtime) = root;
        }
        self.dirty.insert(0);
        self.dirty.extend(deleted.iter().copied());
        let duplicate_vmids = self.after_load(now);
        Ok(ResyncOutcome { written, deleted, duplicate_vmids })
    }

    /// Removes `name` from directory `parent` if it still names `inode`.
    fn unlink(&mut self, parent: u64, name: &str, inode: u64) {
        if let Some(c) = self.entries.get_mut(&parent).and_then(|p| p.children_mut()) {
            if c.get(name) == Some(&inode) {
                c.remove(name);
            }
        }
    }
}

/// The root's fields without its children table (cheap to hash).
fn old_root_header(root: &Entry) -> Entry {
    Entry {
        inode: root.inode,
        parent: root.parent,
        version: root.version,
        writer: root.writer,
        mtime: root.mtime,
        name: root.name.clone(),
        content: Content::Dir(Default::default()),
    }
}
