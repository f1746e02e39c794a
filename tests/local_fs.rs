//! The mounted filesystem in local mode behaves like the original for ordinary file I/O.
//! Real binary, real FUSE mount, real config.db.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::*;

fn read(p: &std::path::Path) -> Vec<u8> {
    fs::read(p).unwrap()
}

#[test]
fn create_write_read_append_overwrite_roundtrip() {
    let d = Daemon::start(&[]);
    let f = d.p("datacenter.cfg");
    fs::write(&f, b"keyboard: en-us\n").unwrap();
    assert_eq!(read(&f), b"keyboard: en-us\n");
    let mut a = OpenOptions::new().append(true).open(&f).unwrap();
    a.write_all(b"console: html5\n").unwrap();
    drop(a);
    assert_eq!(read(&f), b"keyboard: en-us\nconsole: html5\n");
    fs::write(&f, b"short\n").unwrap();
    assert_eq!(read(&f), b"short\n", "O_TRUNC overwrite replaces the content");
    let mut w = OpenOptions::new().write(true).open(&f).unwrap();
    w.seek(SeekFrom::Start(2)).unwrap();
    w.write_all(b"XY").unwrap();
    drop(w);
    assert_eq!(read(&f), b"shXYt\n", "write without O_TRUNC keeps the tail");
}

#[test]
fn truncate_and_ftruncate_change_the_size() {
    let d = Daemon::start(&[]);
    let f = d.p("t.cfg");
    fs::write(&f, b"0123456789").unwrap();
    let h = OpenOptions::new().write(true).open(&f).unwrap();
    h.set_len(4).unwrap();
    drop(h);
    assert_eq!(read(&f), b"0123");
    let h = OpenOptions::new().write(true).open(&f).unwrap();
    h.set_len(6).unwrap();
    drop(h);
    assert_eq!(read(&f), b"0123\0\0");
    // truncate(2) by path, no open handle
    let c = std::ffi::CString::new(f.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::truncate(c.as_ptr(), 2) }, 0);
    assert_eq!(read(&f), b"01");
}

#[test]
fn rename_mkdir_rmdir_unlink_behave_like_the_original() {
    let d = Daemon::start(&[]);
    fs::create_dir(d.p("dir")).unwrap();
    fs::write(d.p("dir/a.tmp"), b"new").unwrap();
    fs::write(d.p("dir/a"), b"old").unwrap();
    fs::rename(d.p("dir/a.tmp"), d.p("dir/a")).unwrap();
    assert_eq!(read(&d.p("dir/a")), b"new");
    assert!(!d.p("dir/a.tmp").exists());
    assert_eq!(errno(&fs::create_dir(d.p("dir")).unwrap_err()), libc::EEXIST);
    assert_eq!(errno(&fs::remove_dir(d.p("dir")).unwrap_err()), libc::ENOTEMPTY);
    fs::create_dir(d.p("moved")).unwrap();
    assert_eq!(errno(&fs::rename(d.p("dir"), d.p("moved2")).unwrap_err()), libc::ENOTEMPTY, "only empty directories move");
    fs::remove_file(d.p("dir/a")).unwrap();
    fs::rename(d.p("dir"), d.p("moved2")).unwrap();
    fs::remove_dir(d.p("moved2")).unwrap();
    assert_eq!(errno(&fs::remove_file(d.p("nothing")).unwrap_err()), libc::ENOENT);
    assert_eq!(errno(&fs::write(d.p("nodir/x"), b"").unwrap_err()), libc::ENOENT);
}

#[test]
fn utimens_sets_the_mtime() {
    let d = Daemon::start(&[]);
    fs::write(d.p("f"), b"x").unwrap();
    utime(&d.p("f"), 1_700_000_000).unwrap();
    assert_eq!(fs::metadata(d.p("f")).unwrap().mtime(), 1_700_000_000);
}

#[test]
fn modes_and_ownership_follow_the_original() {
    let d = Daemon::start(&[]);
    for p in ["priv", "nodes", "nodes/testnode", "nodes/testnode/priv"] {
        fs::create_dir(d.p(p)).unwrap();
    }
    fs::write(d.p("datacenter.cfg"), b"x").unwrap();
    fs::write(d.p("priv/authkey.key"), b"x").unwrap();
    let www = nix_gid("www-data");
    for (p, mode) in [
        ("", 0o755),
        ("datacenter.cfg", 0o640),
        ("priv", 0o700),
        ("priv/authkey.key", 0o600),
        ("nodes", 0o755),
        ("nodes/testnode/priv", 0o700),
        (".version", 0o440),
        (".debug", 0o640),
    ] {
        let m = fs::metadata(d.p(p)).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, mode, "mode of '{p}'");
        assert_eq!((m.uid(), m.gid()), (0, www), "owner of '{p}'");
    }
    let l = fs::symlink_metadata(d.p("local")).unwrap();
    assert!(l.file_type().is_symlink());
    assert_eq!(l.permissions().mode() & 0o777, 0o755);
}

fn nix_gid(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: getgrnam with a valid name; the result is read immediately.
    unsafe { (*libc::getgrnam(c.as_ptr())).gr_gid }
}

#[test]
fn chmod_and_chown_accept_only_what_the_original_accepts() {
    let d = Daemon::start(&[]);
    fs::write(d.p("f.cfg"), b"x").unwrap();
    fs::set_permissions(d.p("f.cfg"), fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(errno(&fs::set_permissions(d.p("f.cfg"), fs::Permissions::from_mode(0o644)).unwrap_err()), libc::EPERM);
    let www = nix_gid("www-data");
    std::os::unix::fs::chown(d.p("f.cfg"), Some(0), Some(www)).unwrap();
    assert_eq!(errno(&std::os::unix::fs::chown(d.p("f.cfg"), Some(1), None).unwrap_err()), libc::EPERM);
}

#[test]
fn exactly_1mib_is_allowed_and_one_byte_more_is_efbig_for_that_write_only() {
    let d = Daemon::start(&[]);
    let f = d.p("big");
    fs::write(&f, vec![7u8; 1024 * 1024]).unwrap();
    assert_eq!(fs::metadata(&f).unwrap().len(), 1024 * 1024);
    fs::write(d.p("keep"), b"old content").unwrap();
    let mut h = OpenOptions::new().write(true).open(d.p("keep")).unwrap();
    h.write_all(b"new").unwrap();
    let e = std::os::unix::fs::FileExt::write_at(&h, b"xx", 1024 * 1024 - 1).unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG);
    h.write_all(b"!").unwrap();
    drop(h);
    assert_eq!(String::from_utf8_lossy(&read(&d.p("keep"))), "new!content", "writes before and after the refused one are kept");
    assert!(d.log_text().contains("refused"), "one log line for the refusal");
}

#[test]
fn symlinks_point_at_the_local_node() {
    let d = Daemon::start(&[]);
    fs::create_dir_all(d.p("nodes/testnode/qemu-server")).unwrap();
    assert_eq!(fs::read_link(d.p("local")).unwrap().to_str().unwrap(), "nodes/testnode");
    assert_eq!(fs::read_link(d.p("qemu-server")).unwrap().to_str().unwrap(), "nodes/testnode/qemu-server");
    assert_eq!(fs::read_link(d.p("lxc")).unwrap().to_str().unwrap(), "nodes/testnode/lxc");
    assert_eq!(fs::read_link(d.p("openvz")).unwrap().to_str().unwrap(), "nodes/testnode/openvz");
    fs::write(d.p("qemu-server/100.conf"), b"memory: 512\n").unwrap();
    assert_eq!(read(&d.p("nodes/testnode/qemu-server/100.conf")), b"memory: 512\n");
    assert_eq!(errno(&std::os::unix::fs::symlink("x", d.p("mylink")).unwrap_err()), libc::ENOSYS, "no symlinks can be created");
    // the original's `ls -s` / `du`: symlinks and virtual files occupy no blocks, files do
    use std::os::unix::fs::MetadataExt;
    for name in ["local", "qemu-server", ".members", ".version", ".vmlist", ".debug", ".clusterlog"] {
        assert_eq!(fs::symlink_metadata(d.p(name)).unwrap().blocks(), 0, "{name}");
    }
    assert_eq!(fs::metadata(d.p("qemu-server/100.conf")).unwrap().blocks(), 1);
}

#[test]
fn virtual_files_have_the_originals_formats() {
    let d = Daemon::start(&[]);
    fs::create_dir_all(d.p("nodes/testnode/qemu-server")).unwrap();
    fs::write(d.p("nodes/testnode/qemu-server/100.conf"), b"x").unwrap();
    fs::write(d.p("storage.cfg"), b"x").unwrap();
    let version: serde_json::Value = serde_json::from_slice(&read(&d.p(".version"))).unwrap();
    assert_eq!(version["storage.cfg"], 3, "reload + create + write");
    assert_eq!(version["user.cfg"], 1);
    assert!(version["kvstore"]["testnode"].is_object());
    assert_eq!(
        String::from_utf8(read(&d.p(".members"))).unwrap(),
        "{\n\"nodename\": \"testnode\",\n\"version\": 0\n}\n"
    );
    let vmlist: serde_json::Value = serde_json::from_slice(&read(&d.p(".vmlist"))).unwrap();
    assert_eq!(vmlist["ids"]["100"]["node"], "testnode");
    assert_eq!(vmlist["ids"]["100"]["type"], "qemu");
    let vtext = String::from_utf8(read(&d.p(".vmlist"))).unwrap();
    assert!(vtext.ends_with(" }}\n\n}\n"), "{vtext:?}");
    assert_eq!(read(&d.p(".debug")), b"0\n");
}

#[test]
fn writing_1_to_dotdebug_turns_on_debug_logging() {
    let d = Daemon::start(&[]);
    fs::write(d.p(".debug"), b"1\n").unwrap();
    assert_eq!(read(&d.p(".debug")), b"1\n");
    fs::write(d.p("x"), b"y").unwrap();
    assert!(d.log_text().contains("[database] debug:"), "{}", d.log_text());
    fs::write(d.p(".debug"), b"0\n").unwrap();
    assert_eq!(read(&d.p(".debug")), b"0\n");
    assert_eq!(errno(&fs::write(d.p(".debug"), b"x").unwrap_err()), libc::EIO);
    assert_eq!(errno(&fs::write(d.p(".version"), b"1\n").unwrap_err()), libc::EIO);
    // as with the original, `> .members` fails at the open (its truncate), `>> .members` at the write
    let trunc = fs::OpenOptions::new().write(true).truncate(true).open(d.p(".members"));
    assert_eq!(errno(&trunc.unwrap_err()), libc::EIO);
    let mut append = fs::OpenOptions::new().append(true).open(d.p(".members")).unwrap();
    assert_eq!(errno(&append.write_all(b"x").unwrap_err()), libc::EIO);
}

#[test]
fn statfs_reports_the_originals_figures() {
    let d = Daemon::start(&[]);
    fs::write(d.p("f"), vec![1u8; 5000]).unwrap();
    let c = std::ffi::CString::new(d.mnt().as_os_str().as_encoded_bytes()).unwrap();
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out pointer.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
    assert_eq!(s.f_bsize, 4096);
    assert_eq!(s.f_blocks, 32768);
    assert_eq!(s.f_bfree, 32768 - 2);
    assert_eq!(s.f_files, 262144);
    assert_eq!(s.f_ffree, 262144 - 2);
    assert_eq!(s.f_namemax, 1024, "FUSE_NAME_MAX, the limit the original enforces (it reports 256)");
}

#[test]
fn lock_directory_unlock_request_is_refused_while_the_lock_is_fresh() {
    let d = Daemon::start(&[]);
    fs::create_dir_all(d.p("priv/lock")).unwrap();
    fs::create_dir(d.p("priv/lock/job")).unwrap();
    assert_eq!(errno(&fs::create_dir(d.p("priv/lock/job")).unwrap_err()), libc::EEXIST, "mkdir is the lock");
    assert_eq!(errno(&utime(&d.p("priv/lock/job"), 0).unwrap_err()), libc::EACCES, "not expired: unlock refused");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    utime(&d.p("priv/lock/job"), now + 5).expect("refresh by the holder");
    assert_eq!(errno(&utime(&d.p("priv/lock/job"), now).unwrap_err()), libc::EACCES, "mtime may not go back");
    fs::remove_dir(d.p("priv/lock/job")).unwrap();
}

#[test]
fn every_opener_sees_a_write_before_the_writer_closes() {
    let d = Daemon::start(&[]);
    let f = d.p("storage.cfg");
    fs::write(&f, b"committed\n").unwrap();
    let mut w = OpenOptions::new().write(true).truncate(true).open(&f).unwrap();
    assert_eq!(read(&f), b"", "O_TRUNC is visible at once");
    w.write_all(b"half-writ").unwrap();
    assert_eq!(read(&f), b"half-writ", "readers see the shared content");
    assert_eq!(fs::metadata(&f).unwrap().len(), 9, "stat and read agree");
    let mut rw = OpenOptions::new().read(true).write(true).open(&f).unwrap();
    rw.write_all(b"own").unwrap();
    rw.seek(SeekFrom::Start(0)).unwrap();
    let mut back = Vec::new();
    rw.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"ownf-writ");
    drop(rw);
    w.write_all(b"ten\n").unwrap();
    drop(w);
    assert_eq!(read(&f), b"ownf-written\n", "nothing of one handle is lost at another's close");
}

#[test]
fn restart_shows_the_identical_tree() {
    let mut d = Daemon::start(&[]);
    fs::create_dir_all(d.p("nodes/testnode/lxc")).unwrap();
    fs::write(d.p("nodes/testnode/lxc/200.conf"), b"arch: amd64\n").unwrap();
    fs::write(d.p("user.cfg"), b"user:root@pam:1:0:::::\n").unwrap();
    fs::write(d.p("empty"), b"").unwrap();
    let before = snapshot(&d.mnt());
    assert_eq!(d.stop(), 0);
    assert!(!is_mounted(&d.mnt()), "SIGTERM unmounts");
    d.spawn().unwrap();
    assert_eq!(snapshot(&d.mnt()), before);
}

fn store_transactions(d: &Daemon) -> u64 {
    d.stats()["store_transactions"].as_u64().unwrap()
}

#[test]
fn fsync_makes_everything_durable_at_once_within_a_long_sync_interval() {
    let d = Daemon::start(&["--sync-interval", "60000"]);
    let (acks, base) = (d.commits(), store_transactions(&d));
    let mut f = File::create(d.p("f")).unwrap();
    f.write_all(b"data").unwrap();
    f.sync_all().unwrap();
    assert_eq!(d.commits(), acks + 1, "fsync acknowledged the write");
    assert_eq!(store_transactions(&d), base + 1, "and wrote it to config.db");
    assert!(!d.stats()["dirty"].as_bool().unwrap(), "everything is durable");
    drop(f);
    fs::write(d.p("g"), b"x").unwrap();
    fs::rename(d.p("g"), d.p("h")).unwrap();
    assert_eq!(d.commits(), acks + 3, "close and rename are acknowledged (crash record)");
    assert_eq!(store_transactions(&d), base + 1, "within the interval nothing else reaches SQLite");
    assert!(d.stats()["dirty"].as_bool().unwrap());
    // the durable-replace pattern ends with an fsync of the directory: the rename is durable
    File::open(d.mnt()).unwrap().sync_all().unwrap();
    assert_eq!(store_transactions(&d), base + 2, "fsync of the directory wrote the rename to config.db");
    assert!(!d.stats()["dirty"].as_bool().unwrap(), "everything is durable");
    assert!(!d.log_text().contains("Not Implemented"), "an fsync of a directory logs nothing");
}

#[test]
fn the_sync_interval_folds_tmp_and_rename_into_one_store_transaction() {
    let d = Daemon::start(&["--sync-interval", "300"]);
    let base = store_transactions(&d);
    fs::write(d.p("lrm_status.tmp.1"), br#"{"state":"wait_for_agent_lock"}"#).unwrap();
    fs::rename(d.p("lrm_status.tmp.1"), d.p("lrm_status")).unwrap();
    let t0 = std::time::Instant::now();
    while d.stats()["dirty"].as_bool().unwrap() {
        assert!(t0.elapsed().as_secs() < 10);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(store_transactions(&d), base + 1);
    let conn = rusqlite::Connection::open(d.db_path()).unwrap();
    let n: i64 = conn.query_row("SELECT count(*) FROM tree WHERE name LIKE 'lrm_status%'", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1, "the temp file never became a row of its own");
}
