//! Security checks: modes and ownership keep private files private (a non-root user reads
//! nothing under priv/ or nodes/*/priv/, the www-data group reads the non-private files
//! only), special files, symlinks and hard links cannot be created, and paths with `..`,
//! empty components or NUL never reach outside the intended entry — through the tree, the
//! dcdb message decoder and IPC.
//!
//! What we do with such paths (the original's behaviour): `..` and `.` are ordinary names
//! that never exist — looking them up is ENOENT, creating them is EACCES; a NUL in a name
//! being created is EINVAL; empty components (`a//b`) are skipped, so they name the same
//! entry as `a/b` and can never escape a directory.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::qb::QbClient;
use common::*;
use pmxcfs_backend::{Database, DatabaseOptions, Durability, FsError, Op, Stamp, Tree};
use pmxcfs_dfsm::wire::dcdb::FuseOp;
use pmxcfs_ipc::protocol::build;

const WWW_DATA: u32 = 33;
const NOBODY: u32 = 65534;

/// Opens `path` with `flags` (and reads one byte unless O_WRONLY/O_DIRECTORY) in a forked
/// child running as uid/gid/groups. Ok or the errno.
fn open_as(uid: u32, gid: u32, groups: &[u32], path: &Path, flags: i32) -> Result<(), i32> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let groups: Vec<libc::gid_t> = groups.to_vec();
    let read = flags & (libc::O_WRONLY | libc::O_RDWR | libc::O_DIRECTORY) == 0;
    // SAFETY: the child only makes raw system calls on memory prepared before the fork,
    // then _exits; the parent waits for it.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let fail = |what: i32| -> ! {
                let e = *libc::__errno_location();
                libc::_exit(if e > 0 && e < 200 { e } else { 200 + what })
            };
            if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0 {
                fail(1);
            }
            if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0 {
                fail(2);
            }
            if libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0 {
                fail(3);
            }
            let fd = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) as i32;
            if fd < 0 {
                fail(4);
            }
            if read {
                let mut b = [0u8; 1];
                if libc::syscall(libc::SYS_read, fd, b.as_mut_ptr(), 1) < 0 {
                    fail(5);
                }
            }
            libc::_exit(0);
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert!(libc::WIFEXITED(status), "child crashed");
        match libc::WEXITSTATUS(status) {
            0 => Ok(()),
            e if e >= 200 => panic!("child setup step {} failed", e - 200),
            e => Err(e),
        }
    }
}

/// The temporary root is 0700; let other users reach the mount below it.
fn open_up(d: &Daemon) {
    for p in [d.root.path().to_path_buf(), d.root.path().join("etc")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn populate(d: &Daemon) {
    std::fs::write(d.p("storage.cfg"), b"dir: local\n").unwrap();
    std::fs::create_dir_all(d.p("nodes/testnode/qemu-server")).unwrap();
    std::fs::write(d.p("nodes/testnode/qemu-server/100.conf"), b"memory: 512\n").unwrap();
    std::fs::create_dir_all(d.p("nodes/testnode/priv")).unwrap();
    std::fs::write(d.p("nodes/testnode/priv/secret"), b"node secret\n").unwrap();
    std::fs::create_dir_all(d.p("priv")).unwrap();
    std::fs::write(d.p("priv/authkey.key"), b"cluster secret\n").unwrap();
}

#[test]
fn private_files_are_root_only_and_www_data_reads_the_rest() {
    let d = Daemon::start(&[]);
    open_up(&d);
    populate(&d);
    let ro = libc::O_RDONLY;
    let dir = libc::O_RDONLY | libc::O_DIRECTORY;
    let wr = libc::O_WRONLY;
    let create = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;

    // what the kernel is told: root:www-data, 0700/0600 private, 0755/0640 otherwise
    for (p, mode) in [("priv", 0o700), ("priv/authkey.key", 0o600), ("nodes/testnode/priv", 0o700), ("nodes/testnode/priv/secret", 0o600), ("nodes", 0o755), ("storage.cfg", 0o640)] {
        let m = std::fs::metadata(d.p(p)).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (mode, 0, WWW_DATA), "{p}");
    }

    let www = |p: &str, flags| open_as(4242, WWW_DATA, &[WWW_DATA], &d.p(p), flags);
    let nobody = |p: &str, flags| open_as(NOBODY, NOBODY, &[], &d.p(p), flags);
    // www-data reads the non-private files and directories ...
    assert_eq!(www("storage.cfg", ro), Ok(()));
    assert_eq!(www("nodes/testnode/qemu-server/100.conf", ro), Ok(()));
    assert_eq!(www("nodes/testnode", dir), Ok(()));
    // ... and nothing private, and writes nothing
    for p in ["priv", "nodes/testnode/priv"] {
        assert_eq!(www(p, dir), Err(libc::EACCES), "{p}");
        assert_eq!(nobody(p, dir), Err(libc::EACCES), "{p}");
    }
    for p in ["priv/authkey.key", "nodes/testnode/priv/secret", "priv//authkey.key", "nodes/testnode//priv/secret"] {
        assert_eq!(www(p, ro), Err(libc::EACCES), "{p}");
        assert_eq!(nobody(p, ro), Err(libc::EACCES), "{p}");
    }
    assert_eq!(www("storage.cfg", wr), Err(libc::EACCES));
    assert_eq!(www("new.cfg", create), Err(libc::EACCES));
    assert_eq!(www("priv/new.key", create), Err(libc::EACCES));
    // other users read no file at all (0640 root:www-data), but may list directories
    assert_eq!(nobody("storage.cfg", ro), Err(libc::EACCES));
    assert_eq!(nobody("nodes/testnode/qemu-server/100.conf", ro), Err(libc::EACCES));
    assert_eq!(nobody("nodes/testnode", dir), Ok(()));
    assert_eq!(nobody("new.cfg", create), Err(libc::EACCES));
    // nothing was created, root still reads everything
    assert!(!d.p("new.cfg").exists() && !d.p("priv/new.key").exists());
    assert_eq!(std::fs::read(d.p("priv/authkey.key")).unwrap(), b"cluster secret\n");
}

fn lstat_errno(p: &Path) -> i32 {
    std::fs::symlink_metadata(p).map(|_| 0).unwrap_or_else(|e| errno(&e))
}

#[test]
fn device_nodes_fifos_sockets_symlinks_and_hard_links_cannot_be_created() {
    let mut d = Daemon::start(&[]);
    populate(&d);
    let cpath = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
    // never d.p("/x"): joining an absolute path would leave the mount
    let under = |dir: &str, name: &str| if dir.is_empty() { d.p(name) } else { d.p(&format!("{dir}/{name}")) };
    for dir in ["", "priv", "nodes/testnode"] {
        for (i, kind) in [libc::S_IFCHR, libc::S_IFBLK, libc::S_IFIFO, libc::S_IFSOCK].into_iter().enumerate() {
            let p = under(dir, &format!("special{i}"));
            assert!(p.starts_with(d.mnt()));
            // SAFETY: valid path; mknod only creates a node.
            let r = unsafe { libc::mknod(cpath(&p).as_ptr(), kind | 0o600, libc::makedev(1, 3)) };
            let e = std::io::Error::last_os_error();
            assert_eq!(r, -1, "mknod {kind:o} in '{dir}' must fail");
            assert!([libc::ENOSYS, libc::EPERM, libc::EACCES, libc::EOPNOTSUPP].contains(&errno(&e)), "{e}");
            assert_eq!(lstat_errno(&p), libc::ENOENT, "{}", p.display());
        }
        let link = under(dir, "evil-link");
        let e = std::os::unix::fs::symlink("/etc/shadow", &link).unwrap_err();
        assert!([libc::ENOSYS, libc::EPERM, libc::EACCES].contains(&errno(&e)), "symlink: {e}");
        assert_eq!(lstat_errno(&link), libc::ENOENT);
        let hard = under(dir, "hard-link");
        let e = std::fs::hard_link(d.p("storage.cfg"), &hard).unwrap_err();
        assert!([libc::ENOSYS, libc::EPERM, libc::EACCES].contains(&errno(&e)), "link: {e}");
        assert_eq!(lstat_errno(&hard), libc::ENOENT);
    }
    // nothing of it reached the database
    assert_eq!(d.stop(), 0);
    let out = std::process::Command::new(BIN).args(["dump", "--db"]).arg(d.db_path()).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(!list.contains("special") && !list.contains("link"), "{list}");
}

const STAMP: Stamp = Stamp { writer: 0, mtime: 1_700_000_000 };

fn sample_tree() -> Tree {
    let mut t = Tree::new();
    for p in ["nodes", "nodes/n1", "nodes/n1/priv", "priv"] {
        t.mkdir(p, STAMP).unwrap();
    }
    t.create("priv/secret", STAMP).unwrap();
    t.write("priv/secret", 0, b"s3cret", false, STAMP).unwrap();
    t.create("nodes/n1/conf", STAMP).unwrap();
    t
}

/// Every name in the tree is an ordinary name.
fn assert_clean(t: &Tree, len: usize) {
    assert_eq!(t.len(), len, "no entry was created");
    for e in t.sorted_entries() {
        if e.inode != 0 {
            assert!(!["", ".", ".."].contains(&e.name.as_str()) && !e.name.contains('\0') && !e.name.contains('/'), "{e:?}");
        }
    }
}

#[test]
fn tree_refuses_dotdot_and_nul_paths() {
    let mut t = sample_tree();
    let len = t.len();
    // `..` is a name that never exists: it reaches nothing
    for p in ["nodes/../priv/secret", "nodes/n1/../../priv/secret", "../priv/secret", "nodes/n1/priv/../../../priv/secret"] {
        assert_eq!(t.read(p), Err(FsError::NotFound), "{p}");
        assert!(t.lookup(p).is_none(), "{p}");
        assert_eq!(t.write(p, 0, b"x", false, STAMP), Err(FsError::NotFound), "{p}");
        assert_eq!(t.delete(p, STAMP), Err(FsError::NotFound), "{p}");
        assert_eq!(t.rename(p, "stolen", STAMP), Err(FsError::NotFound), "{p}");
        assert_eq!(t.set_mtime(p, STAMP), Err(FsError::NotFound), "{p}");
    }
    // creating `.`/`..` is EACCES, creating below them ENOENT
    for p in ["..", ".", "nodes/..", "nodes/n1/."] {
        assert_eq!(t.mkdir(p, STAMP), Err(FsError::AccessDenied), "{p}");
        assert_eq!(t.create(p, STAMP), Err(FsError::AccessDenied), "{p}");
        assert_eq!(t.rename("nodes/n1/conf", p, STAMP), Err(FsError::AccessDenied), "{p}");
    }
    for p in ["../etc", "nodes/../x", "../../tmp/evil", "./x"] {
        assert_eq!(t.mkdir(p, STAMP), Err(FsError::NotFound), "{p}");
        assert_eq!(t.create(p, STAMP), Err(FsError::NotFound), "{p}");
        assert_eq!(t.rename("nodes/n1/conf", p, STAMP), Err(FsError::NotFound), "{p}");
    }
    assert_eq!(t.delete("..", STAMP), Err(FsError::NotFound));
    // NUL: a new name with NUL is EINVAL; a path with NUL finds nothing
    assert_eq!(t.mkdir("a\0b", STAMP), Err(FsError::Invalid));
    assert_eq!(t.create("nodes/x\0y", STAMP), Err(FsError::Invalid));
    assert_eq!(t.rename("nodes/n1/conf", "c\0d", STAMP), Err(FsError::Invalid));
    assert_eq!(t.read("priv/secret\0"), Err(FsError::NotFound));
    assert_eq!(t.read("priv\0/secret"), Err(FsError::NotFound));
    assert_clean(&t, len);
    // empty components are skipped: the same entry, never another one
    assert_eq!(t.read("priv//secret").unwrap()[..], b"s3cret"[..]);
    assert_eq!(t.lookup("/nodes//n1/").map(|e| e.inode), t.lookup("nodes/n1").map(|e| e.inode));
    assert_eq!(t.read("nodes/n1/conf/"), t.read("nodes/n1/conf"));
    assert_clean(&t, len);
}

/// A fuse-op message as another node would send it, decoded like the dcdb application
/// does (`FuseOp::decode`, UTF-8, normalized) and applied through `Database::apply`.
fn apply_message(db: &Database, subtype: &str, path: &[u8], to: Option<&[u8]>) -> Result<u64, FsError> {
    let fop = FuseOp { offset: 0, flags: 0, path: Some(path), to, data: b"payload" };
    let wire = fop.encode().unwrap();
    let got = FuseOp::decode(&wire).unwrap();
    let text = |b: &[u8]| pmxcfs_backend::path::normalize(std::str::from_utf8(b).unwrap());
    let p = text(got.path.unwrap());
    let op = match subtype {
        "mkdir" => Op::Mkdir { path: p },
        "create" => Op::Create { path: p },
        "write" => Op::Write { path: p, offset: 0, data: got.data.to_vec(), truncate: false },
        "delete" => Op::Delete { path: p },
        "rename" => Op::Rename { from: p, to: text(got.to.unwrap()) },
        other => panic!("{other}"),
    };
    db.apply(&op, STAMP, Durability::Now)
}

#[test]
fn dcdb_messages_with_dotdot_or_nul_paths_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("config.db"), DatabaseOptions::default()).unwrap();
    for p in ["nodes", "nodes/n1", "priv"] {
        apply_message(&db, "mkdir", p.as_bytes(), None).unwrap();
    }
    apply_message(&db, "create", b"priv/secret", None).unwrap();
    apply_message(&db, "write", b"priv/secret", None).unwrap();
    apply_message(&db, "create", b"nodes/n1/conf", None).unwrap();
    let before = db.tree().checksum();
    let len = db.tree().len();
    let refused = [
        ("write", &b"nodes/../priv/secret"[..], None),
        ("create", b"../escape", None),
        ("mkdir", b"nodes/n1/../../x", None),
        ("mkdir", b"..", None),
        ("create", b"nodes/n1/x\0y", None),
        ("delete", b"nodes/../priv/secret", None),
        ("delete", b"priv/secret\0", None),
        ("rename", b"nodes/n1/conf", Some(&b"../conf"[..])),
        ("rename", b"nodes/../priv/secret", Some(&b"nodes/n1/stolen"[..])),
        ("rename", b"nodes/n1/conf", Some(&b"priv/se\0cret"[..])),
    ];
    for (op, path, to) in refused {
        let r = apply_message(&db, op, path, to);
        assert!(
            matches!(r, Err(FsError::NotFound | FsError::AccessDenied | FsError::Invalid)),
            "{op} {:?} -> {:?}: {r:?}",
            String::from_utf8_lossy(path),
            to.map(String::from_utf8_lossy)
        );
    }
    assert_eq!(db.tree().checksum(), before, "the tree is unchanged");
    assert_clean(&db.tree(), len);
    assert_eq!(db.tree().read("priv/secret").unwrap()[..], b"payload"[..]);
}

#[test]
fn ipc_get_config_with_traversal_paths_is_enoent() {
    let d = Daemon::start(&[]);
    populate(&d);
    let c = QbClient::connect(&d.ipc_name());
    let (err, body) = c.call(&build::get_config(b"storage.cfg"));
    assert_eq!((err, body.as_slice()), (0, &b"dir: local\n"[..]));
    for p in [
        &b"../storage.cfg"[..],
        b"nodes/../storage.cfg",
        b"nodes/../priv/authkey.key",
        b"nodes/testnode/../../priv/authkey.key",
        b"../../../../etc/passwd",
        b"/../etc/pve/storage.cfg",
        b"./storage.cfg",
        b"..",
    ] {
        let (err, _) = c.call(&build::get_config(p));
        assert_eq!(err, -libc::ENOENT, "{}", String::from_utf8_lossy(p));
    }
    // a NUL ends the path (C string): what follows it is ignored
    let (err, body) = c.call(&build::get_config(b"storage.cfg\0/../../priv/authkey.key"));
    assert_eq!((err, body.as_slice()), (0, &b"dir: local\n"[..]));
    let (err, _) = c.call(&build::get_config(b"nodes\0/../priv/authkey.key"));
    assert_ne!(err, 0);
}

/// Runs `f` on a thread whose (kernel, per-thread) credentials are uid 0, gid www-data:
/// libqb's server sees them through SO_PEERCRED and treats the client as read-only.
fn as_www_data_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(move || {
        // SAFETY: raw setresgid changes only this thread's credentials (glibc's setgid
        // would change every thread's).
        let r = unsafe { libc::syscall(libc::SYS_setresgid, WWW_DATA, WWW_DATA, WWW_DATA) };
        assert_eq!(r, 0, "setresgid");
        f()
    })
    .join()
    .expect("www-data thread")
}

#[test]
fn ipc_read_only_client_cannot_read_private_files_by_any_spelling() {
    let d = Daemon::start(&[]);
    populate(&d);
    let name = d.ipc_name();
    let results = as_www_data_thread(move || {
        let c = QbClient::connect(&name);
        let mut out = Vec::new();
        for p in ["storage.cfg", "priv/authkey.key", "/priv/authkey.key", "priv//authkey.key", "nodes/testnode/priv/secret"] {
            out.push((p, c.call(&build::get_config(p.as_bytes())).0));
        }
        out
    });
    assert_eq!(results[0], ("storage.cfg", 0), "the read-only client reads public files");
    for (p, err) in &results[1..] {
        assert_eq!(*err, -libc::EPERM, "{p}");
    }
}

/// Known hole (the original has it too): `path_is_private` looks at the raw path, the tree
/// skips empty components, so `nodes/<node>//priv/...` passes the check and reads the file.
/// Fix: normalize (skip empty components) before `path_is_private` in ipc/src/protocol.rs.
#[test]
fn ipc_read_only_client_cannot_read_node_private_files_through_empty_components() {
    let d = Daemon::start(&[]);
    populate(&d);
    let name = d.ipc_name();
    let results = as_www_data_thread(move || {
        let c = QbClient::connect(&name);
        ["nodes/testnode//priv/secret", "nodes//testnode/priv/secret", "nodes/testnode/priv//secret"]
            .into_iter()
            .map(|p| (p, c.call(&build::get_config(p.as_bytes())).0))
            .collect::<Vec<_>>()
    });
    for (p, err) in results {
        assert_ne!(err, 0, "a read-only client read the node-private file via {p}");
    }
}
