//! Path rules of the original: splitting, private paths, lock directories, valid names.
//!
//! Paths inside the tree are relative (`nodes/pve1/qemu-server/100.conf`), without a leading
//! slash; empty components are skipped; `.` and `..` are ordinary (never existing) names.

use crate::error::{FsError, FsResult};

/// Longest name component accepted and advertised (statfs `f_namemax`): the kernel's FUSE
/// limit (`FUSE_NAME_MAX`), the only one the original has. Names loaded from a database or
/// received in a sync are not limited at all.
pub const MAX_NAME_LEN: usize = 1024;

/// Components of a relative path; empty components (`a//b`, leading `/`) are skipped.
pub fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

/// Normalizes a path to the canonical relative form (`/a//b/` → `a/b`).
pub fn normalize(path: &str) -> String {
    if !path.starts_with('/') && !path.ends_with('/') && !path.contains("//") {
        return path.to_string();
    }
    components(path).collect::<Vec<_>>().join("/")
}

/// Splits a path into (parent path, basename); the parent of a top-level name is `""` (root).
pub fn split(path: &str) -> (String, String) {
    let norm = normalize(path);
    match norm.rfind('/') {
        Some(i) => (norm[..i].to_string(), norm[i + 1..].to_string()),
        None => (String::new(), norm),
    }
}

/// Joins a directory path and a name.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// mkdir/create/write/mtime refuse `""`, `.` and `..` as the final component with EACCES.
pub fn check_new_name(name: &str) -> FsResult<()> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(FsError::AccessDenied);
    }
    if crate::name_bytes::raw_len(name) > MAX_NAME_LEN {
        return Err(FsError::NameTooLong);
    }
    if name.contains('\0') {
        return Err(FsError::Invalid);
    }
    Ok(())
}

/// True for `priv`, `priv/…`, `nodes/<x>/priv` and `nodes/<x>/priv/…`.
pub fn is_private(path: &str) -> bool {
    let p = path.trim_start_matches('/');
    if p == "priv" || p.starts_with("priv/") {
        return true;
    }
    if let Some(rest) = p.strip_prefix("nodes/") {
        if let Some(i) = rest.find('/') {
            let after = &rest[i + 1..];
            return after == "priv" || after.starts_with("priv/");
        }
    }
    false
}

/// `priv/lock/<something>`: a path that can name a lock directory.
pub fn is_lock_dir_path(path: &str) -> bool {
    path.strip_prefix("priv/lock/").is_some_and(|rest| !rest.is_empty())
}

/// A lock directory proper: its parent is exactly `priv/lock`.
pub fn parent_is_lock_root(path: &str) -> bool {
    split(path).0 == "priv/lock"
}

/// Node names as the original accepts them: `[A-Za-z0-9-]+`, no leading/trailing `-`.
pub fn valid_nodename(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_paths_match_the_original() {
        assert!(is_private("priv"));
        assert!(is_private("/priv/authkey.key"));
        assert!(is_private("nodes/pve1/priv"));
        assert!(is_private("nodes/pve1/priv/x"));
        assert!(!is_private("nodes/pve1/private"));
        assert!(!is_private("privx"));
        assert!(!is_private("nodes/pve1"));
        assert!(!is_private("storage.cfg"));
    }

    #[test]
    fn split_and_normalize() {
        assert_eq!(split("a//b/"), ("a".into(), "b".into()));
        assert_eq!(split("/top"), ("".into(), "top".into()));
        assert_eq!(normalize("/a//b/c/"), "a/b/c");
    }

    #[test]
    fn nodename_rules() {
        assert!(valid_nodename("pve1"));
        assert!(valid_nodename("a-b"));
        assert!(!valid_nodename("-a"));
        assert!(!valid_nodename("a.b"));
        assert!(!valid_nodename(""));
    }
}
