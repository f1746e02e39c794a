//! Several handles on one file share ONE content, as on the original and on every Linux
//! filesystem: one test per case an administrator's tools (shells, editors, cp -p, Perl,
//! Python) meet. Real mounts, real restarts.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::process::Command;

use common::{errno, Daemon};

fn read(p: &std::path::Path) -> Vec<u8> {
    fs::read(p).unwrap()
}

#[test]
fn two_processes_appending_keep_every_line() {
    let d = Daemon::start(&[]);
    let f = d.p("append.log");
    fs::write(&f, b"").unwrap();
    let script = "import os,sys\nfd=os.open(sys.argv[1], os.O_WRONLY|os.O_APPEND)\nfor i in range(1000):\n    os.write(fd, ('%s %04d\\n' % (sys.argv[2], i)).encode())\nos.close(fd)\n";
    let children: Vec<_> = ["A", "B"]
        .iter()
        .map(|tag| Command::new("python3").args(["-c", script]).arg(&f).arg(tag).spawn().expect("python3"))
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let text = String::from_utf8(read(&f)).expect("no NUL holes");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2000, "every line of both writers");
    for tag in ["A", "B"] {
        let mine: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with(tag)).collect();
        let want: Vec<String> = (0..1000).map(|i| format!("{tag} {i:04}")).collect();
        assert_eq!(mine, want, "writer {tag}'s lines intact and in order");
    }
}

#[test]
fn shell_append_redirections_from_two_shells_keep_every_line() {
    let d = Daemon::start(&[]);
    let f = d.p("shell.log");
    let cmd = |tag: &str| format!("for i in $(seq 1 200); do echo {tag}$i >> '{}'; done", f.display());
    let a = Command::new("sh").args(["-c", &cmd("a")]).spawn().unwrap();
    let b = Command::new("sh").args(["-c", &cmd("b")]).spawn().unwrap();
    for mut c in [a, b] {
        assert!(c.wait().unwrap().success());
    }
    let text = String::from_utf8(read(&f)).unwrap();
    assert_eq!(text.lines().count(), 400);
}

#[test]
fn two_handles_writing_disjoint_ranges_keep_both() {
    let d = Daemon::start(&[]);
    let f = d.p("ranges");
    fs::write(&f, b"........").unwrap();
    let a = OpenOptions::new().write(true).open(&f).unwrap();
    let b = OpenOptions::new().write(true).open(&f).unwrap();
    a.write_all_at(b"AAAA", 0).unwrap();
    b.write_all_at(b"BBBB", 4).unwrap();
    drop(a);
    drop(b);
    assert_eq!(read(&f), b"AAAABBBB");
}

#[test]
fn a_reader_sees_a_write_that_is_not_closed_yet() {
    let d = Daemon::start(&[]);
    let f = d.p("live");
    fs::write(&f, b"old").unwrap();
    let a = OpenOptions::new().write(true).open(&f).unwrap();
    a.write_all_at(b"new bytes", 0).unwrap();
    let mut b = File::open(&f).unwrap();
    let mut got = Vec::new();
    b.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"new bytes");
    assert_eq!(b.metadata().unwrap().len(), 9, "size and bytes agree");
    drop(a);
}

#[test]
fn a_write_through_an_old_handle_after_another_close_keeps_both_edits() {
    let d = Daemon::start(&[]);
    let f = d.p("two-edits");
    fs::write(&f, b"0123456789").unwrap();
    let old = OpenOptions::new().write(true).open(&f).unwrap();
    {
        let other = OpenOptions::new().write(true).open(&f).unwrap();
        other.write_all_at(b"AB", 0).unwrap();
    }
    old.write_all_at(b"YZ", 8).unwrap();
    drop(old);
    assert_eq!(read(&f), b"AB234567YZ");
}

#[test]
fn tmp_file_renamed_before_its_close_then_sigkill_keeps_the_new_content() {
    let mut d = Daemon::start(&[]);
    fs::write(d.p("target.cfg"), b"old content").unwrap();
    let mut tmp = File::create(d.p("target.cfg.tmp.1")).unwrap();
    tmp.write_all(b"new content").unwrap();
    fs::rename(d.p("target.cfg.tmp.1"), d.p("target.cfg")).unwrap();
    d.kill9();
    drop(tmp);
    d.spawn().unwrap();
    assert_eq!(read(&d.p("target.cfg")), b"new content");
    assert!(!d.p("target.cfg.tmp.1").exists());
}

#[test]
fn a_write_past_1mib_is_refused_alone_and_the_handle_writes_on() {
    let d = Daemon::start(&[]);
    let f = d.p("limit");
    let h = OpenOptions::new().create(true).write(true).truncate(true).open(&f).unwrap();
    h.write_all_at(b"head", 0).unwrap();
    let e = h.write_all_at(b"xx", 1024 * 1024 - 1).unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG);
    h.write_all_at(b"tail", 4).unwrap();
    drop(h);
    assert_eq!(read(&f), b"headtail");
}

#[test]
fn futimens_before_close_is_kept_like_cp_p() {
    let d = Daemon::start(&[]);
    let f = d.p("copied.conf");
    let h = File::create(&f).unwrap();
    h.write_all_at(b"copied", 0).unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000);
    h.set_times(fs::FileTimes::new().set_accessed(when).set_modified(when)).unwrap();
    assert_eq!(h.metadata().unwrap().mtime(), 1_500_000_000, "fstat shows it at once");
    drop(h);
    let m = fs::metadata(&f).unwrap();
    assert_eq!(m.mtime(), 1_500_000_000, "close keeps the time set before it");
    assert_eq!(read(&f), b"copied");
}

#[test]
fn ftruncate_updates_the_mtime_like_truncate() {
    let d = Daemon::start(&[]);
    let f = d.p("trunc-time");
    fs::write(&f, b"0123456789").unwrap();
    common::utime(&f, 1_000_000_000).unwrap();
    let h = OpenOptions::new().write(true).open(&f).unwrap();
    h.set_len(4).unwrap();
    let m = h.metadata().unwrap();
    assert_eq!(m.len(), 4);
    assert!(m.mtime() > 1_000_000_000, "ftruncate moved the mtime");
    drop(h);
    assert_eq!(read(&f), b"0123");
}

#[test]
fn an_unlinked_open_file_stays_readable_through_its_descriptor() {
    let d = Daemon::start(&[]);
    let f = d.p("doomed");
    fs::write(&f, b"still here").unwrap();
    let mut h = OpenOptions::new().read(true).write(true).open(&f).unwrap();
    fs::remove_file(&f).unwrap();
    assert!(!f.exists());
    let m = h.metadata().unwrap();
    assert_eq!(m.nlink(), 0);
    assert_eq!(m.len(), 10);
    let mut buf = [0u8; 10];
    h.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"still here");
    h.seek(SeekFrom::End(0)).unwrap();
    h.write_all(b"!").unwrap();
    let mut all = Vec::new();
    h.seek(SeekFrom::Start(0)).unwrap();
    h.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"still here!");
    drop(h);
    assert!(!f.exists(), "it never reappears under its old name");
}

#[test]
fn a_file_replaced_by_rename_stays_readable_through_its_descriptor() {
    let d = Daemon::start(&[]);
    let f = d.p("replaced.cfg");
    fs::write(&f, b"version 1").unwrap();
    let old = File::open(&f).unwrap();
    fs::write(d.p("replaced.cfg.tmp"), b"version 2").unwrap();
    fs::rename(d.p("replaced.cfg.tmp"), &f).unwrap();
    let mut buf = Vec::new();
    (&old).read_to_end(&mut buf).unwrap();
    assert_eq!(buf, b"version 1");
    drop(old);
    assert_eq!(read(&f), b"version 2");
}

#[test]
fn a_file_still_open_at_sigterm_keeps_its_data_after_restart() {
    let mut d = Daemon::start(&[]);
    fs::write(d.p("existing"), b"old").unwrap();
    let a = File::create(d.p("fresh")).unwrap();
    a.write_all_at(b"fresh data", 0).unwrap();
    let b = OpenOptions::new().write(true).open(d.p("existing")).unwrap();
    b.write_all_at(b"new", 0).unwrap();
    assert_eq!(d.stop(), 0, "clean stop even while files are open");
    drop(a);
    drop(b);
    common::lazy_umount(&d.mnt());
    d.spawn().unwrap();
    assert_eq!(read(&d.p("fresh")), b"fresh data");
    assert_eq!(read(&d.p("existing")), b"new");
}

#[test]
fn a_file_still_open_at_sigkill_keeps_its_data_after_restart() {
    let mut d = Daemon::start(&[]);
    fs::write(d.p("existing"), b"old").unwrap();
    let a = File::create(d.p("fresh")).unwrap();
    a.write_all_at(b"fresh data", 0).unwrap();
    let b = OpenOptions::new().write(true).open(d.p("existing")).unwrap();
    b.write_all_at(b"NEW!", 0).unwrap();
    d.kill9();
    drop(a);
    drop(b);
    d.spawn().unwrap();
    assert_eq!(read(&d.p("fresh")), b"fresh data");
    assert_eq!(read(&d.p("existing")), b"NEW!");
    assert!(d.log_text().contains("written before a crash"), "recovery is logged");
    // recovered once: a second restart changes nothing
    d.kill9();
    d.spawn().unwrap();
    assert_eq!(read(&d.p("existing")), b"NEW!");
}

#[test]
fn pending_content_of_one_inode_commits_as_one_transaction() {
    let d = Daemon::start(&[]);
    let f = d.p("blocks");
    fs::write(&f, b"").unwrap();
    let before = d.commits();
    let a = OpenOptions::new().write(true).open(&f).unwrap();
    let b = OpenOptions::new().write(true).open(&f).unwrap();
    for i in 0..256u64 {
        let h = if i % 2 == 0 { &a } else { &b };
        h.write_all_at(&[b'x'; 512], i * 512).unwrap();
    }
    assert_eq!(d.commits(), before, "no write reaches SQLite on its own");
    drop(a);
    drop(b);
    assert!(d.commits() - before <= 2, "one commit per close of a writer at most");
    assert_eq!(read(&f).len(), 256 * 512);
}
