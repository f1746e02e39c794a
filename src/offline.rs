//! Offline tools on a database file, without mounting: `check` and `dump`.

use std::path::Path;

use pmxcfs_backend::index::hex;
use pmxcfs_backend::{Store, Tree};

fn load(db: &Path) -> Result<(Store, Tree), String> {
    if !db.exists() {
        return Err(format!("database '{}' does not exist", db.display()));
    }
    let store = Store::open_readonly(db).map_err(|e| e.to_string())?;
    let rows = store.load_rows().map_err(|e| e.to_string())?;
    let tree = Tree::from_entries(rows.entries).map_err(|why| format!("DB load failed: database '{}': {why}", db.display()))?;
    Ok((store, tree))
}

/// `pmxcfs check`: 0 when healthy, 1 when not.
pub fn check(db: &Path) -> i32 {
    let (store, mut tree) = match load(db) {
        Ok(x) => x,
        Err(e) => {
            println!("FAILED: {e}");
            return 1;
        }
    };
    let mut healthy = true;
    match store.integrity_check() {
        Ok(s) if s == "ok" => println!("integrity_check: ok"),
        Ok(s) => {
            println!("integrity_check: {s}");
            healthy = false;
        }
        Err(e) => {
            println!("integrity_check failed: {e}");
            healthy = false;
        }
    }
    for (vmid, a, b) in tree.after_load(0) {
        println!("duplicate VMID {vmid}: '{a}' and '{b}'");
        healthy = false;
    }
    println!("version: {}", tree.version());
    println!("entries: {}", tree.len());
    println!("guests: {}", tree.vmlist.entries.len());
    println!("checksum: {}", hex(&tree.checksum()));
    println!("{}", if healthy { "healthy" } else { "NOT healthy" });
    if healthy {
        0
    } else {
        1
    }
}

/// `pmxcfs dump`: list every entry, or print one file's bytes.
pub fn dump(db: &Path, path: Option<&str>) -> i32 {
    let (_store, tree) = match load(db) {
        Ok(x) => x,
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
        lines.push(format!("{kind} {:>8} {:>8} {p}", e.size(), e.version));
    }
    lines.sort_by(|a, b| a[19..].cmp(&b[19..]));
    for l in lines {
        println!("{l}");
    }
    0
}
