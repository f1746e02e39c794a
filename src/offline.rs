//! Offline tools on a database file, without mounting: `check`, `dump` and `repair`.
//!
//! `check` and `repair` do not stop at the first bad row like the daemon's loader: they scan
//! every row of `tree` themselves ([`Store::raw_rows`]) and apply the loader's rules one by
//! one, so every violation is reported with its row. `repair` writes a new database (the
//! original's schema) holding every entry that passes all rules. See docs/offline-tools.md.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use pmxcfs_backend::index::hex;
use pmxcfs_backend::store::{RawRow, RawValue, VERSION_ROW_NAME};
use pmxcfs_backend::{Entry, Store, StoreError, Tree, DT_DIR, DT_REG};
use thiserror::Error;

/// Why an offline tool could not do its job (as opposed to finding problems in the data).
#[derive(Debug, Error)]
pub enum OfflineError {
    #[error("database '{0}' does not exist")]
    Missing(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("output '{0}' already exists (repair never overwrites a file)")]
    OutputExists(String),
    #[error("output '{0}' is the input database")]
    OutputIsInput(String),
    #[error("the repaired tree does not load: {0}")]
    StillBroken(String),
    #[error("{0}")]
    Load(String),
}

/// One rule violation, naming its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A column that must be an integer is not, or the inode is negative, or data is not a blob.
    BadRow { inode: i64, why: String },
    /// The name is NULL, empty or not UTF-8.
    NoName { inode: i64 },
    /// The name contains `/` or NUL, or is `.` or `..`: no path can reach it.
    BadName { inode: i64, name: String },
    /// `type` is neither a directory (4) nor a regular file (8).
    UnknownType { inode: i64, name: String, kind: i64 },
    /// A directory row carries data.
    DataOnDirectory { inode: i64, name: String },
    /// The parent inode does not exist at all.
    Orphan { inode: i64, name: String, parent: u64 },
    /// The parent inode is a file.
    ParentNotDirectory { inode: i64, name: String, parent: u64 },
    /// The parent row exists but is itself invalid or dropped.
    BelowBad { inode: i64, name: String, ancestor: u64 },
    /// Two entries with one name in one directory; the lowest inode is kept.
    DuplicateName { inode: i64, name: String, parent: u64, kept: u64 },
    /// The entry's parent chain loops and never reaches the root.
    Cycle { inode: i64, name: String },
    /// Two guest configs with one VMID; the first in inode order is kept.
    DuplicateVmid { inode: i64, vmid: u32, kept: String, dropped: String },
    /// No `__version__` row (inode 0).
    MissingVersionRow,
    /// The inode-0 row is not a valid `__version__` row.
    BadVersionRow { why: String },
    /// The global version is lower than an entry's version.
    VersionBehind { version: u64, max_entry_version: u64 },
    /// `PRAGMA integrity_check` did not answer `ok`.
    Integrity { message: String },
    /// The daemon's own loader refuses the database (a rule this scan does not know).
    Loader { why: String },
}

impl Problem {
    /// The inode this problem drops in a repair (None: nothing is dropped).
    pub fn dropped_inode(&self) -> Option<i64> {
        match self {
            Problem::BadRow { inode, .. }
            | Problem::NoName { inode }
            | Problem::BadName { inode, .. }
            | Problem::UnknownType { inode, .. }
            | Problem::DataOnDirectory { inode, .. }
            | Problem::Orphan { inode, .. }
            | Problem::ParentNotDirectory { inode, .. }
            | Problem::BelowBad { inode, .. }
            | Problem::DuplicateName { inode, .. }
            | Problem::Cycle { inode, .. }
            | Problem::DuplicateVmid { inode, .. } => Some(*inode),
            _ => None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::BadRow { inode, why } => write!(f, "inode {inode}: bad row: {why}"),
            Problem::NoName { inode } => write!(f, "inode {inode}: row has no name"),
            Problem::BadName { inode, name } => write!(f, "inode {inode} {name:?}: invalid name (contains '/' or NUL, or is '.' or '..')"),
            Problem::UnknownType { inode, name, kind } => write!(f, "inode {inode} '{name}': unknown type {kind}"),
            Problem::DataOnDirectory { inode, name } => write!(f, "inode {inode} '{name}': directory has data"),
            Problem::Orphan { inode, name, parent } => write!(f, "inode {inode} '{name}': orphan, parent inode {parent} does not exist"),
            Problem::ParentNotDirectory { inode, name, parent } => {
                write!(f, "inode {inode} '{name}': parent inode {parent} is not a directory")
            }
            Problem::BelowBad { inode, name, ancestor } => {
                write!(f, "inode {inode} '{name}': unreachable, below invalid or dropped inode {ancestor}")
            }
            Problem::DuplicateName { inode, name, parent, kept } => {
                write!(f, "inode {inode} '{name}': duplicate name in directory inode {parent} (inode {kept} is kept)")
            }
            Problem::Cycle { inode, name } => write!(f, "inode {inode} '{name}': parent cycle, not reachable from the root"),
            Problem::DuplicateVmid { inode, vmid, kept, dropped } => {
                write!(f, "inode {inode} '{dropped}': duplicate VMID {vmid} ('{kept}' is kept)")
            }
            Problem::MissingVersionRow => write!(f, "inode 0: no '{VERSION_ROW_NAME}' row"),
            Problem::BadVersionRow { why } => write!(f, "inode 0: bad '{VERSION_ROW_NAME}' row: {why}"),
            Problem::VersionBehind { version, max_entry_version } => {
                write!(f, "inode 0: '{VERSION_ROW_NAME}' version {version} is lower than entry version {max_entry_version}")
            }
            Problem::Integrity { message } => write!(f, "integrity_check: {message}"),
            Problem::Loader { why } => write!(f, "the daemon's loader refuses it: {why}"),
        }
    }
}

/// The result of scanning every row: the problems and the tree of every valid entry.
pub struct Analysis {
    pub problems: Vec<Problem>,
    /// Every valid entry, linked; the root carries the repaired `__version__` values.
    pub tree: Tree,
    /// True when the `__version__` row must be (re)written by a repair.
    pub version_row_fixed: bool,
}

fn int(v: &RawValue) -> Option<i64> {
    match v {
        RawValue::Integer(i) => Some(*i),
        _ => None,
    }
}

fn text(v: &RawValue) -> Option<&[u8]> {
    match v {
        RawValue::Text(t) | RawValue::Blob(t) => Some(t),
        _ => None,
    }
}

/// Row-level rules (the daemon loader's, plus valid names). Ok: a candidate entry.
fn check_row(row: &RawRow) -> Result<Entry, Problem> {
    let inode = row.inode;
    let bad = |why: String| Problem::BadRow { inode, why };
    if inode < 0 {
        return Err(bad("negative inode".into()));
    }
    let mut ints = [0i64; 5];
    for (slot, (col, v)) in ints.iter_mut().zip([
        ("parent", &row.parent),
        ("version", &row.version),
        ("writer", &row.writer),
        ("mtime", &row.mtime),
        ("type", &row.kind),
    ]) {
        *slot = int(v).ok_or_else(|| bad(format!("column '{col}' is not an integer")))?;
    }
    let [parent, version, writer, mtime, kind] = ints;
    let name = match text(&row.name) {
        None => return Err(Problem::NoName { inode }),
        Some([]) => return Err(Problem::NoName { inode }),
        Some(t) => pmxcfs_backend::name_bytes::decode(t).into_owned(),
    };
    if name.contains('/') || name.contains('\0') || name == "." || name == ".." {
        return Err(Problem::BadName { inode, name });
    }
    let data = match &row.data {
        RawValue::Null => Vec::new(),
        RawValue::Text(d) | RawValue::Blob(d) => d.clone(),
        _ => return Err(bad("data is neither a blob nor NULL".into())),
    };
    if parent < 0 {
        return Err(bad("negative parent".into()));
    }
    // the loader keeps the low byte of `type` (the original's uint8 column)
    let mut e = match (kind & 0xff) as u8 {
        DT_REG => Entry::new_file(inode as u64, parent as u64, &name, data),
        DT_DIR if data.is_empty() => Entry::new_dir(inode as u64, parent as u64, &name),
        DT_DIR => return Err(Problem::DataOnDirectory { inode, name }),
        _ => return Err(Problem::UnknownType { inode, name, kind }),
    };
    e.version = version as u64;
    e.writer = (writer & 0xffff_ffff) as u32;
    e.mtime = (mtime & 0xffff_ffff) as u32;
    Ok(e)
}

/// Applies every rule to `rows` (as read by [`Store::raw_rows`]).
pub fn analyze(rows: &[RawRow]) -> Analysis {
    let mut problems = Vec::new();
    let mut root = Entry::new_dir(0, 0, "");
    let mut version_row_ok = false;
    let mut invalid: HashSet<u64> = HashSet::new();
    let mut cand: BTreeMap<u64, Entry> = BTreeMap::new();

    for row in rows {
        if row.inode == 0 {
            let name_ok = text(&row.name) == Some(VERSION_ROW_NAME.as_bytes());
            match (name_ok, int(&row.version), int(&row.writer), int(&row.mtime)) {
                (true, Some(v), Some(w), Some(m)) if v >= 0 => {
                    root.version = v as u64;
                    root.writer = (w & 0xffff_ffff) as u32;
                    root.mtime = (m & 0xffff_ffff) as u32;
                    version_row_ok = true;
                }
                (false, ..) => problems.push(Problem::BadVersionRow { why: "name is not '__version__'".into() }),
                _ => problems.push(Problem::BadVersionRow { why: "version, writer or mtime is not a valid integer".into() }),
            }
            continue;
        }
        match check_row(row) {
            Ok(e) => {
                cand.insert(e.inode, e);
            }
            Err(p) => {
                if row.inode > 0 {
                    invalid.insert(row.inode as u64);
                }
                problems.push(p);
            }
        }
    }
    if !rows.iter().any(|r| r.inode == 0) {
        problems.push(Problem::MissingVersionRow);
    }

    // link children to parents in inode order: the lowest inode keeps a name
    let mut linked: HashSet<u64> = HashSet::new();
    let mut children: HashMap<u64, BTreeMap<String, u64>> = HashMap::new();
    children.insert(0, BTreeMap::new());
    for (ino, e) in &cand {
        if e.is_dir() {
            children.entry(*ino).or_default();
        }
    }
    let mut dropped: HashSet<u64> = HashSet::new();
    for (ino, e) in &cand {
        let (inode, name, parent) = (*ino as i64, e.name.to_string(), e.parent);
        let parent_is_dir = parent == 0 || cand.get(&parent).is_some_and(|p| p.is_dir());
        if parent != 0 && !cand.contains_key(&parent) {
            if invalid.contains(&parent) {
                problems.push(Problem::BelowBad { inode, name, ancestor: parent });
            } else {
                problems.push(Problem::Orphan { inode, name, parent });
            }
            dropped.insert(*ino);
            continue;
        }
        if !parent_is_dir {
            problems.push(Problem::ParentNotDirectory { inode, name, parent });
            dropped.insert(*ino);
            continue;
        }
        let siblings = children.entry(parent).or_default();
        if let Some(kept) = siblings.get(&name) {
            problems.push(Problem::DuplicateName { inode, name, parent, kept: *kept });
            dropped.insert(*ino);
            continue;
        }
        siblings.insert(name, *ino);
        linked.insert(*ino);
    }

    // reachability from the root; what is linked but unreachable is in or below a cycle, or
    // below a dropped entry
    let mut reached: HashSet<u64> = HashSet::new();
    let mut stack = vec![0u64];
    while let Some(i) = stack.pop() {
        if let Some(c) = children.get(&i) {
            for ino in c.values() {
                if reached.insert(*ino) {
                    stack.push(*ino);
                }
            }
        }
    }
    for ino in &linked {
        if reached.contains(ino) {
            continue;
        }
        let e = &cand[ino];
        let (inode, name) = (*ino as i64, e.name.to_string());
        let mut seen = HashSet::new();
        let mut cur = *ino;
        let problem = loop {
            if !seen.insert(cur) {
                if cur == *ino {
                    break Problem::Cycle { inode, name };
                }
                break Problem::BelowBad { inode, name, ancestor: cur };
            }
            let p = cand[&cur].parent;
            if !linked.contains(&p) {
                break Problem::BelowBad { inode, name, ancestor: p };
            }
            cur = p;
        };
        problems.push(problem);
    }
    let mut entries: Vec<Entry> = cand.into_iter().filter(|(i, _)| reached.contains(i)).map(|(_, e)| e).collect();

    // duplicate VMIDs: the first config in inode order wins
    let tree_of = |root: &Entry, entries: &[Entry]| {
        let mut list = vec![root.clone()];
        list.extend(entries.iter().cloned());
        Tree::from_entries(list)
    };
    let mut tree = match tree_of(&root, &entries) {
        Ok(t) => t,
        Err(why) => {
            problems.push(Problem::Loader { why });
            Tree::new()
        }
    };
    let dups = tree.rebuild_vmlist();
    if !dups.is_empty() {
        let mut gone = HashSet::new();
        for (vmid, kept, dropped) in dups {
            if let Some(e) = tree.lookup(&dropped) {
                gone.insert(e.inode);
                problems.push(Problem::DuplicateVmid { inode: e.inode as i64, vmid, kept, dropped });
            }
        }
        entries.retain(|e| !gone.contains(&e.inode));
        tree = match tree_of(&root, &entries) {
            Ok(t) => t,
            Err(why) => {
                problems.push(Problem::Loader { why });
                Tree::new()
            }
        };
        tree.rebuild_vmlist();
    }

    // the global version must not be behind any entry
    let max_entry_version = entries.iter().map(|e| e.version).max().unwrap_or(0);
    let mut version_row_fixed = !version_row_ok;
    if version_row_ok && root.version < max_entry_version {
        problems.push(Problem::VersionBehind { version: root.version, max_entry_version });
        version_row_fixed = true;
    }
    if version_row_fixed {
        root.version = root.version.max(max_entry_version);
        if let Ok(t) = tree_of(&root, &entries) {
            tree = t;
            tree.rebuild_vmlist();
        }
    }
    problems.sort_by_key(|p| p.dropped_inode().unwrap_or(-1));
    Analysis { problems, tree, version_row_fixed }
}

fn open(db: &Path) -> Result<Store, OfflineError> {
    if !db.exists() {
        return Err(OfflineError::Missing(db.display().to_string()));
    }
    Ok(Store::open_readonly(db)?)
}

/// Scans `db`: every rule violation, `integrity_check`, and the daemon's loader verdict.
pub fn inspect(db: &Path) -> Result<Analysis, OfflineError> {
    let store = open(db)?;
    let mut problems = Vec::new();
    match store.integrity_check() {
        Ok(s) if s == "ok" => {}
        Ok(message) => problems.push(Problem::Integrity { message }),
        Err(e) => problems.push(Problem::Integrity { message: e.to_string() }),
    }
    let rows = store.raw_rows()?;
    let mut a = analyze(&rows);
    if a.problems.is_empty() {
        // belt and braces: the daemon's loader must agree
        let loaded = store.load_rows().map_err(|e| e.to_string()).and_then(|r| Tree::from_entries(r.entries));
        if let Err(why) = loaded {
            problems.push(Problem::Loader { why });
        }
    }
    problems.append(&mut a.problems);
    a.problems = problems;
    Ok(a)
}

fn print_summary(tree: &Tree) {
    println!("version: {}", tree.version());
    println!("entries: {}", tree.len());
    println!("guests: {}", tree.vmlist.entries.len());
    println!("checksum: {}", hex(&tree.checksum()));
}

/// `pmxcfs check`: every problem, one line each; 0 when healthy, 1 when not.
pub fn check(db: &Path) -> i32 {
    let a = match inspect(db) {
        Ok(a) => a,
        Err(e) => {
            println!("FAILED: {e}");
            println!("NOT healthy");
            return 1;
        }
    };
    if !a.problems.iter().any(|p| matches!(p, Problem::Integrity { .. })) {
        println!("integrity_check: ok");
    }
    for p in &a.problems {
        println!("problem: {p}");
    }
    print_summary(&a.tree);
    if a.problems.is_empty() {
        println!("healthy");
        0
    } else {
        println!("NOT healthy: {} problem(s); `pmxcfs repair --db FILE --out NEW` writes a database without them", a.problems.len());
        1
    }
}

/// `pmxcfs repair`: writes every valid entry of `db` to the new database `out`.
pub fn repair(db: &Path, out: &Path) -> i32 {
    match repair_to(db, out) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("repair failed: {e}");
            1
        }
    }
}

fn sidecar(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn repair_to(db: &Path, out: &Path) -> Result<(), OfflineError> {
    if out.exists() || sidecar(out, "-wal").exists() {
        return Err(OfflineError::OutputExists(out.display().to_string()));
    }
    if let (Ok(a), Ok(b)) = (db.canonicalize(), out.parent().map(|d| d.canonicalize()).unwrap_or_else(|| Ok(PathBuf::new()))) {
        if out.file_name().is_some_and(|n| b.join(n) == a) {
            return Err(OfflineError::OutputIsInput(out.display().to_string()));
        }
    }
    let a = inspect(db)?;
    for p in &a.problems {
        match p.dropped_inode() {
            Some(_) => println!("dropped: {p}"),
            None => println!("fixed: {p}"),
        }
    }
    if a.version_row_fixed {
        println!("'{VERSION_ROW_NAME}' row written with version {}", a.tree.version());
    }
    let mut store = Store::open(out)?;
    let batch: Vec<(u64, Option<Entry>)> =
        a.tree.sorted_entries().into_iter().filter(|e| e.inode != 0).map(|e| (e.inode, Some(e.clone()))).collect();
    store.write_transaction(&batch, a.tree.root())?;
    store.close()?;
    // the result must load and pass every rule
    let again = inspect(out)?;
    if let Some(p) = again.problems.first() {
        return Err(OfflineError::StillBroken(p.to_string()));
    }
    // the read-only verification leaves an empty WAL and its index behind
    if std::fs::metadata(sidecar(out, "-wal")).is_ok_and(|m| m.len() == 0) {
        let _ = std::fs::remove_file(sidecar(out, "-wal"));
        let _ = std::fs::remove_file(sidecar(out, "-shm"));
    }
    println!("kept {} entries, dropped {}", batch.len(), a.problems.iter().filter(|p| p.dropped_inode().is_some()).count());
    println!("wrote '{}'", out.display());
    print_summary(&again.tree);
    Ok(())
}

/// `pmxcfs dump`: list every entry, or print one file's bytes.
pub fn dump(db: &Path, path: Option<&str>) -> i32 {
    let tree = match open(db).and_then(|store| {
        let rows = store.load_rows()?;
        Tree::from_entries(rows.entries).map_err(|why| OfflineError::Load(format!("DB load failed: database '{}': {why}", db.display())))
    }) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if let Some(p) = path {
        return match tree.read(p) {
            Ok(data) => {
                use std::io::Write;
                let _ = std::io::stdout().write_all(&data);
                0
            }
            Err(e) => {
                eprintln!("{p}: {e}");
                1
            }
        };
    }
    let mut lines = Vec::new();
    for e in tree.sorted_entries() {
        if e.inode == 0 {
            continue;
        }
        let p = tree.path_of(e.inode).unwrap_or_default();
        let kind = if e.is_dir() { 'd' } else { 'f' };
        lines.push((p.clone(), format!("{kind} {:>8} {:>8} {p}", e.size(), e.version)));
    }
    lines.sort();
    for (_, l) in lines {
        println!("{l}");
    }
    0
}
