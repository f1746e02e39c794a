//! The in-place resync (`Tree::plan_resync` + `Tree::apply_resync`) gives exactly the tree the
//! rebuilding reference (`Tree::resynced`) gives, for random divergent histories, and changes
//! nothing when the leader's index does not match.

use std::collections::HashSet;

use pmxcfs_backend::index::entry_digest;
use pmxcfs_backend::{Entry, Stamp, Tree};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn paths(t: &Tree) -> (Vec<String>, Vec<String>) {
    let mut dirs = vec![String::new()];
    let mut files = Vec::new();
    for e in t.sorted_entries() {
        if e.inode == 0 {
            continue;
        }
        let p = t.path_of(e.inode).expect("reachable");
        if e.is_dir() {
            dirs.push(p);
        } else {
            files.push(p);
        }
    }
    (dirs, files)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Random changes; errors (EEXIST, ENOTEMPTY, ...) are part of the game.
fn mutate(t: &mut Tree, rng: &mut Rng, ops: usize, writer: u32) {
    for i in 0..ops {
        let (dirs, files) = paths(t);
        let stamp = Stamp { writer, mtime: 1000 + i as u32 };
        let dir = dirs[rng.below(dirs.len())].clone();
        let name = format!("n{}", rng.below(12));
        match rng.below(7) {
            0 => {
                let _ = t.mkdir(&join(&dir, &name), stamp);
            }
            1 | 2 => {
                let p = join(&dir, &name);
                let _ = t.create(&p, stamp);
                let _ = t.write(&p, 0, format!("data {} {}", writer, rng.next()).as_bytes(), true, stamp);
            }
            3 if !files.is_empty() => {
                let f = &files[rng.below(files.len())];
                let _ = t.write(f, 0, format!("over {}", rng.next()).as_bytes(), true, stamp);
            }
            4 if !files.is_empty() => {
                let _ = t.delete(&files[rng.below(files.len())].clone(), stamp);
            }
            5 if dirs.len() > 1 => {
                let d = dirs[1 + rng.below(dirs.len() - 1)].clone();
                let _ = t.delete(&d, stamp);
            }
            _ => {
                let all: Vec<String> = dirs.iter().skip(1).chain(files.iter()).cloned().collect();
                if !all.is_empty() {
                    let from = all[rng.below(all.len())].clone();
                    let _ = t.rename(&from, &join(&dir, &name), stamp);
                }
            }
        }
    }
}

/// What the dcdb leader sends a follower: its entries the follower lacks or has otherwise.
fn leader_updates(leader: &Tree, follower: &Tree) -> Vec<Entry> {
    leader
        .sorted_entries()
        .into_iter()
        .filter(|e| follower.get(e.inode).is_none_or(|f| entry_digest(f) != entry_digest(e)))
        .cloned()
        .collect()
}

fn snapshot(t: &Tree) -> Vec<Entry> {
    t.sorted_entries().into_iter().cloned().collect()
}

#[test]
fn in_place_resync_equals_the_rebuilt_tree() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..300 {
        let mut base = Tree::new();
        base.init_version(1);
        mutate(&mut base, &mut rng, 30, 0);
        let mut leader = base.clone();
        let mut follower = base.clone();
        let (n_leader, n_follower) = (rng.below(25), rng.below(25));
        mutate(&mut leader, &mut rng, n_leader, 1);
        mutate(&mut follower, &mut rng, n_follower, 2);
        let index = leader.encode_index();
        let keep: HashSet<u64> = leader.sorted_entries().iter().map(|e| e.inode).collect();
        let updates = leader_updates(&leader, &follower);

        let (reference, ref_deleted) = follower.resynced(&keep, updates.clone(), 5000).expect("reference resync");
        let mut in_place = follower.clone();
        in_place.take_dirty();
        let plan = in_place.plan_resync(&index, updates).unwrap_or_else(|e| panic!("round {round}: plan: {e}"));
        let out = in_place.apply_resync(plan, &index, 5000).unwrap_or_else(|e| panic!("round {round}: apply: {e}"));

        assert_eq!(snapshot(&in_place), snapshot(&reference), "round {round}: trees differ");
        assert_eq!(in_place.encode_index(), index, "round {round}");
        assert_eq!(out.deleted, ref_deleted, "round {round}");
        assert_eq!(format!("{:?}", in_place.vmlist), format!("{:?}", reference.vmlist), "round {round}");
        // everything that differs from the follower's old tree is dirty (to be written)
        let dirty: HashSet<u64> = in_place.take_dirty().into_iter().map(|(i, _)| i).collect();
        for e in reference.sorted_entries() {
            let same = follower.get(e.inode).is_some_and(|o| entry_digest(o) == entry_digest(e) && o.parent == e.parent);
            assert!(same || dirty.contains(&e.inode), "round {round}: inode {} changed but not dirty", e.inode);
        }
        for d in &ref_deleted {
            assert!(dirty.contains(d), "round {round}: deleted inode {d} not dirty");
        }
    }
}

#[test]
fn a_plan_against_a_changed_tree_is_made_again() {
    let mut rng = Rng(42);
    let mut base = Tree::new();
    base.init_version(1);
    mutate(&mut base, &mut rng, 40, 0);
    let mut leader = base.clone();
    mutate(&mut leader, &mut rng, 10, 1);
    let mut follower = base.clone();
    let index = leader.encode_index();
    let plan = follower.plan_resync(&index, leader_updates(&leader, &follower)).expect("plan");
    // a change after planning (e.g. a last local write before the sync): planned again
    follower.mkdir("late", Stamp { writer: 0, mtime: 7 }).expect("mkdir");
    follower.apply_resync(plan, &index, 1).expect("apply");
    assert_eq!(follower.encode_index(), index);
    assert!(follower.lookup("late").is_none());
}

#[test]
fn a_mismatching_index_changes_nothing() {
    let mut rng = Rng(7);
    let mut base = Tree::new();
    base.init_version(1);
    mutate(&mut base, &mut rng, 40, 0);
    let mut leader = base.clone();
    mutate(&mut leader, &mut rng, 15, 1);
    let follower = base.clone();
    let mut updates = leader_updates(&leader, &follower);
    let index = leader.encode_index();

    // a missing update: the kept entry's digest is not the leader's
    if let Some(pos) = updates.iter().position(|e| e.inode != 0 && follower.get(e.inode).is_some()) {
        let mut fewer = updates.clone();
        fewer.remove(pos);
        assert!(follower.plan_resync(&index, fewer).is_err());
    }
    // a corrupted digest, a truncated index, a wrong header
    let mut bad = index.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(follower.plan_resync(&bad, updates.clone()).is_err());
    assert!(follower.plan_resync(&index[..index.len() - 1], updates.clone()).is_err());
    let mut bad = index.clone();
    bad[0] ^= 1;
    assert!(follower.plan_resync(&bad, updates.clone()).is_err());
    // an update for an inode the index does not list
    let mut extra = Entry::new_file(999_999, 0, "stray", b"x".to_vec());
    extra.version = 3;
    updates.push(extra);
    assert!(follower.plan_resync(&index, updates).is_err());
}

#[test]
fn an_inconsistent_leader_is_refused() {
    // leader's index lists a file whose parent it does not list
    let mut leader = Tree::new();
    leader.init_version(1);
    let s = Stamp { writer: 1, mtime: 10 };
    leader.mkdir("a", s).expect("mkdir");
    leader.create("a/f", s).expect("create");
    let follower = {
        let mut f = Tree::new();
        f.init_version(1);
        f
    };
    let dir_ino = leader.lookup("a").expect("a").inode;
    let entries: Vec<Entry> = leader.sorted_entries().into_iter().filter(|e| e.inode != dir_ino).cloned().collect();
    let root = entries[0].clone();
    let index = pmxcfs_backend::index::encode_index(&root, entries.iter());
    let updates: Vec<Entry> = entries.into_iter().collect();
    let err = follower.plan_resync(&index, updates).expect_err("orphan must be refused");
    assert!(err.contains("not a directory"), "{err}");
}
