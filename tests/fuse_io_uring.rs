//! FUSE over io_uring (fuse/src/ring): with the kernel's `enable_uring` on, requests are
//! served by the pinned per-CPU queue threads and every kind of request answers as over
//! /dev/fuse; with it off, or with `--no-io-uring`, the daemon serves over /dev/fuse alone.
//! (The suite's second pass, PMXCFS_TEST_IO_URING=1 in scripts/test.sh, runs the file
//! semantics tests over the ring too.)

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use common::uring_knob::UringKnob;
use common::{errno, require_root, Daemon, IO_URING_LOG_LINE};

/// The tests of this binary switch a global kernel knob: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The knob set (restored when dropped); None (the test is skipped) where the kernel has no
/// FUSE io_uring, or io_uring is switched off (`kernel.io_uring_disabled`).
fn knob(on: bool) -> Option<UringKnob> {
    let disabled = fs::read_to_string("/proc/sys/kernel/io_uring_disabled").map(|v| v.trim() != "0").unwrap_or(false);
    if disabled {
        return None;
    }
    UringKnob::set(on)
}

fn skip(why: &str) {
    eprintln!("skipped: {why}");
}

/// (name, CPU nanoseconds so far) of every thread of `pid`.
fn threads(pid: i32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for t in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let comm = fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim().to_string();
        let ns = fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        out.push((comm, ns.split(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0)));
    }
    out
}

fn cpu_of(pid: i32, name_starts: &str) -> u64 {
    threads(pid).iter().filter(|(n, _)| n.starts_with(name_starts)).map(|(_, ns)| ns).sum()
}

fn ring_threads(pid: i32) -> usize {
    threads(pid).iter().filter(|(n, _)| n.starts_with("fuse-ring-")).count()
}

/// CPUs in /sys/devices/system/cpu/possible (ranges such as `0-3,8-11`): the kernel makes
/// one queue per possible CPU.
fn possible_cpus() -> usize {
    let text = fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    let range = |r: &str| -> usize {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1
    };
    text.trim().split(',').map(range).sum()
}

#[test]
fn requests_are_served_by_the_per_cpu_queues() {
    require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(_knob) = knob(true) else { return skip("no FUSE io_uring in this kernel") };
    let d = Daemon::start(&[]);
    let t0 = std::time::Instant::now();
    while !d.log_text().contains(IO_URING_LOG_LINE) && t0.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(d.log_text().contains(IO_URING_LOG_LINE), "log:\n{}", d.log_text());
    assert_eq!(ring_threads(d.pid()), possible_cpus(), "one queue thread per possible CPU");

    for i in 0..50 {
        fs::write(d.p(&format!("f{i}")), format!("content {i}")).unwrap();
    }
    let (ring0, main0) = (cpu_of(d.pid(), "fuse-ring-"), cpu_of(d.pid(), "pmxcfs"));
    for _ in 0..20 {
        for i in 0..50 {
            assert_eq!(fs::read_to_string(d.p(&format!("f{i}"))).unwrap(), format!("content {i}"));
        }
    }
    let (ring1, main1) = (cpu_of(d.pid(), "fuse-ring-"), cpu_of(d.pid(), "pmxcfs"));
    assert!(ring1 - ring0 > main1 - main0, "1,000 reads: queue threads {} ns, session thread {} ns", ring1 - ring0, main1 - main0);
}

#[test]
fn every_kind_of_request_answers_over_the_ring() {
    require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(_knob) = knob(true) else { return skip("no FUSE io_uring in this kernel") };
    let mut d = Daemon::start(&[]);
    let t0 = std::time::Instant::now();
    while !d.log_text().contains(IO_URING_LOG_LINE) && t0.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(d.log_text().contains(IO_URING_LOG_LINE));

    // mkdir, create, write, fsync (answered later, by a worker), stat, readdir over
    // several READDIR replies, rename, unlink, rmdir
    fs::create_dir(d.p("dir")).unwrap();
    assert_eq!(errno(&fs::create_dir(d.p("dir")).unwrap_err()), libc::EEXIST);
    let names: Vec<String> = (0..300).map(|i| format!("entry-with-a-longer-name-{i:04}")).collect();
    for n in &names {
        fs::write(d.p(&format!("dir/{n}")), n).unwrap();
    }
    let mut listed: Vec<String> = fs::read_dir(d.p("dir")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    listed.sort();
    assert_eq!(listed, names);
    let mut f = fs::OpenOptions::new().create(true).write(true).truncate(true).open(d.p("big")).unwrap();
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    f.write_all(&big).unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(fs::read(d.p("big")).unwrap(), big, "1 MiB written and read back (the largest payload)");
    assert_eq!(fs::metadata(d.p("big")).unwrap().size(), 1024 * 1024);
    let mut past = fs::OpenOptions::new().append(true).open(d.p("big")).unwrap();
    assert_eq!(errno(&past.write_all(b"x").unwrap_err()), libc::EFBIG);
    drop(past);
    let mut f = fs::OpenOptions::new().read(true).write(true).open(d.p("dir/entry-with-a-longer-name-0000")).unwrap();
    f.seek(SeekFrom::Start(2)).unwrap();
    f.write_all(b"XY").unwrap();
    f.set_len(6).unwrap();
    let mut back = String::new();
    fs::File::open(d.p("dir/entry-with-a-longer-name-0000")).unwrap().read_to_string(&mut back).unwrap();
    assert_eq!(back, "enXYy-", "a second handle sees the first one's pending content");
    drop(f);
    fs::rename(d.p("dir/entry-with-a-longer-name-0001"), d.p("moved")).unwrap();
    assert_eq!(fs::read_to_string(d.p("moved")).unwrap(), names[1]);
    assert_eq!(errno(&fs::read(d.p("dir/entry-with-a-longer-name-0001")).unwrap_err()), libc::ENOENT);
    // a time before 1970 (touch -d @-10, an old file from tar): kept as 0, as over /dev/fuse,
    // and the queue that parsed it goes on serving
    common::utime(&d.p("moved"), -10).unwrap();
    assert_eq!(fs::metadata(d.p("moved")).unwrap().mtime(), 0);
    assert_eq!(fs::read_to_string(d.p("moved")).unwrap(), names[1]);
    assert_eq!(errno(&fs::remove_dir(d.p("dir")).unwrap_err()), libc::ENOTEMPTY);
    for n in &names {
        let _ = fs::remove_file(d.p(&format!("dir/{n}")));
    }
    fs::remove_dir(d.p("dir")).unwrap();
    // virtual files, symlinks, statfs, permissions
    assert!(fs::read_to_string(d.p(".members")).unwrap().contains("\"nodename\": \"testnode\""));
    assert_eq!(fs::read_link(d.p("local")).unwrap(), Path::new("nodes/testnode"));
    let st = nix_statvfs(&d.mnt());
    assert_eq!(st, 1024, "f_namemax");
    assert_eq!(errno(&std::os::unix::fs::symlink("x", d.p("sl")).unwrap_err()), libc::ENOSYS);
    // a clean stop with the queues serving: every queue thread ends, the mount goes
    assert_eq!(d.stop(), 0);
    assert!(!common::is_mounted(&d.mnt()));
    let db = rusqlite::Connection::open(d.db_path()).unwrap();
    let n: i64 = db.query_row("SELECT count(*) FROM tree WHERE name = 'moved'", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1);
}

fn nix_statvfs(p: &Path) -> u64 {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a zeroed statvfs is a valid out-parameter; the path is NUL-terminated.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
    s.f_namemax
}

#[test]
fn without_the_kernel_knob_or_with_no_io_uring_dev_fuse_serves_alone() {
    require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    {
        let Some(_knob) = knob(true) else { return skip("no FUSE io_uring in this kernel") };
        let d = Daemon::start(&["--no-io-uring"]);
        fs::write(d.p("a"), "1").unwrap();
        assert_eq!(fs::read_to_string(d.p("a")).unwrap(), "1");
        assert_eq!(ring_threads(d.pid()), 0);
        assert!(!d.log_text().contains(IO_URING_LOG_LINE));
    }
    let Some(_knob) = knob(false) else { return skip("no FUSE io_uring in this kernel") };
    let d = Daemon::start(&[]);
    fs::write(d.p("a"), "1").unwrap();
    assert_eq!(fs::read_to_string(d.p("a")).unwrap(), "1");
    assert_eq!(ring_threads(d.pid()), 0);
    assert!(!d.log_text().contains(IO_URING_LOG_LINE));
}
