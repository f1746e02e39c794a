//! The kernel's tmpfs is the reference for file semantics: the same seeded random sequence
//! of operations — several descriptors per file, O_APPEND, pwrite at random offsets with
//! holes, ftruncate, read, fstat, rename, unlink while open, close in random order, and a
//! forked child writing through inherited descriptors — runs on a tmpfs directory and on
//! the mount; every result (bytes, sizes, link counts, errno) must agree.
//!
//! `PMXCFS_DIFF_OPS` / `PMXCFS_DIFF_SEEDS` make it a long run.

mod common;

use std::ffi::CString;
use std::path::{Path, PathBuf};

use common::{require_root, Daemon, Rng};

const NAMES: [&str; 4] = ["a.conf", "b.conf", "c.conf", "d.conf"];
const MAX_OPEN: usize = 8;

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Tmpfs {
        let dir = tempfile::Builder::new().prefix("pmxcfs-diff-tmpfs.").tempdir().unwrap();
        let st = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"]).arg(dir.path()).status().unwrap();
        assert!(st.success(), "mount tmpfs");
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// One side of the comparison: a directory and its open descriptors.
struct Side {
    dir: PathBuf,
    fds: Vec<i32>,
}

/// What an operation returned, comparable across the two sides.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok(i64),
    Err(i32),
    Bytes(Vec<u8>),
    Stat { size: i64, nlink: u64 },
}

fn ret(r: i64) -> Outcome {
    if r < 0 {
        Outcome::Err(errno())
    } else {
        Outcome::Ok(r)
    }
}

#[derive(Debug, Clone)]
enum Step {
    Open { name: usize, append: bool, trunc: bool },
    Close { slot: usize },
    Pwrite { slot: usize, off: u64, len: usize, fill: u8 },
    Write { slot: usize, len: usize, fill: u8 },
    Pread { slot: usize, off: u64, len: usize },
    Ftruncate { slot: usize, size: u64 },
    Fstat { slot: usize },
    Stat { name: usize },
    ReadPath { name: usize },
    Rename { from: usize, to: usize },
    Unlink { name: usize },
    /// A forked child appends through an inherited descriptor and exits.
    ChildWrite { slot: usize, len: usize, fill: u8 },
}

fn gen(rng: &mut Rng, open: usize) -> Step {
    let slot = if open == 0 { 0 } else { rng.below(open as u64) as usize };
    let name = rng.below(NAMES.len() as u64) as usize;
    let fill = b'a' + rng.below(26) as u8;
    let len = 1 + rng.below(700) as usize;
    match (open, rng.below(100)) {
        (0, _) | (_, 0..=14) if open < MAX_OPEN => Step::Open { name, append: rng.below(3) == 0, trunc: rng.below(8) == 0 },
        (0, _) => Step::Stat { name },
        (_, 15..=24) => Step::Close { slot },
        (_, 25..=44) => Step::Pwrite { slot, off: rng.below(6000), len, fill },
        (_, 45..=54) => Step::Write { slot, len, fill },
        (_, 55..=69) => Step::Pread { slot, off: rng.below(7000), len: 1 + rng.below(3000) as usize },
        (_, 70..=74) => Step::Ftruncate { slot, size: rng.below(5000) },
        (_, 75..=80) => Step::Fstat { slot },
        (_, 81..=84) => Step::Stat { name },
        (_, 85..=88) => Step::ReadPath { name },
        (_, 89..=92) => Step::Rename { from: name, to: rng.below(NAMES.len() as u64) as usize },
        (_, 93..=96) => Step::Unlink { name },
        _ => Step::ChildWrite { slot, len, fill },
    }
}

impl Side {
    fn path(&self, name: usize) -> CString {
        cpath(&self.dir.join(NAMES[name]))
    }

    fn run(&mut self, step: &Step) -> Outcome {
        // SAFETY: plain syscalls on descriptors this side owns and on valid buffers.
        unsafe {
            match *step {
                Step::Open { name, append, trunc } => {
                    let mut flags = libc::O_RDWR | libc::O_CREAT;
                    if append {
                        flags |= libc::O_APPEND;
                    }
                    if trunc {
                        flags |= libc::O_TRUNC;
                    }
                    let fd = libc::open(self.path(name).as_ptr(), flags, 0o600);
                    if fd >= 0 {
                        self.fds.push(fd);
                        Outcome::Ok(0)
                    } else {
                        Outcome::Err(errno())
                    }
                }
                Step::Close { slot } => {
                    let fd = self.fds.remove(slot);
                    ret(libc::close(fd) as i64)
                }
                Step::Pwrite { slot, off, len, fill } => {
                    let buf = vec![fill; len];
                    ret(libc::pwrite(self.fds[slot], buf.as_ptr().cast(), len, off as i64) as i64)
                }
                Step::Write { slot, len, fill } => {
                    let buf = vec![fill; len];
                    ret(libc::write(self.fds[slot], buf.as_ptr().cast(), len) as i64)
                }
                Step::Pread { slot, off, len } => {
                    let mut buf = vec![0u8; len];
                    let n = libc::pread(self.fds[slot], buf.as_mut_ptr().cast(), len, off as i64);
                    if n < 0 {
                        return Outcome::Err(errno());
                    }
                    buf.truncate(n as usize);
                    Outcome::Bytes(buf)
                }
                Step::Ftruncate { slot, size } => ret(libc::ftruncate(self.fds[slot], size as i64) as i64),
                Step::Fstat { slot } => {
                    let mut st: libc::stat = std::mem::zeroed();
                    if libc::fstat(self.fds[slot], &mut st) < 0 {
                        return Outcome::Err(errno());
                    }
                    Outcome::Stat { size: st.st_size, nlink: st.st_nlink }
                }
                Step::Stat { name } => {
                    let mut st: libc::stat = std::mem::zeroed();
                    if libc::stat(self.path(name).as_ptr(), &mut st) < 0 {
                        return Outcome::Err(errno());
                    }
                    Outcome::Stat { size: st.st_size, nlink: st.st_nlink }
                }
                Step::ReadPath { name } => match std::fs::read(self.dir.join(NAMES[name])) {
                    Ok(b) => Outcome::Bytes(b),
                    Err(e) => Outcome::Err(e.raw_os_error().unwrap_or(0)),
                },
                Step::Rename { from, to } => ret(libc::rename(self.path(from).as_ptr(), self.path(to).as_ptr()) as i64),
                Step::Unlink { name } => ret(libc::unlink(self.path(name).as_ptr()) as i64),
                Step::ChildWrite { slot, len, fill } => {
                    let fd = self.fds[slot];
                    let pid = libc::fork();
                    if pid == 0 {
                        let buf = vec![fill; len];
                        let n = libc::write(fd, buf.as_ptr().cast(), len);
                        libc::_exit(if n == len as isize { 0 } else { 1 });
                    }
                    let mut status = 0;
                    libc::waitpid(pid, &mut status, 0);
                    Outcome::Ok(libc::WEXITSTATUS(status) as i64)
                }
            }
        }
    }

    fn close_all(&mut self) {
        for fd in self.fds.drain(..) {
            // SAFETY: closing descriptors this side opened.
            unsafe { libc::close(fd) };
        }
    }
}

fn run_seed(d: &Daemon, tmpfs: &Path, seed: u64, ops: usize) {
    let work = format!("diff-{seed}");
    std::fs::create_dir(d.p(&work)).unwrap();
    std::fs::create_dir(tmpfs.join(&work)).unwrap();
    let mut reference = Side { dir: tmpfs.join(&work), fds: Vec::new() };
    let mut mount = Side { dir: d.p(&work), fds: Vec::new() };
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut history: Vec<Step> = Vec::new();
    for i in 0..ops {
        let step = gen(&mut rng, reference.fds.len());
        history.push(step.clone());
        let want = reference.run(&step);
        let got = mount.run(&step);
        if want != got {
            let tail: Vec<String> = history.iter().rev().take(12).rev().map(|s| format!("{s:?}")).collect();
            reference.close_all();
            mount.close_all();
            panic!("seed {seed}, op {i}: {step:?}\n tmpfs: {want:?}\n mount: {got:?}\nlast steps:\n  {}", tail.join("\n  "));
        }
    }
    reference.close_all();
    mount.close_all();
    // after every descriptor is closed, both trees hold the same files
    for (name, file) in NAMES.iter().enumerate() {
        assert_eq!(reference.run(&Step::ReadPath { name }), mount.run(&Step::ReadPath { name }), "seed {seed}: final {file}");
    }
}

#[test]
fn random_descriptor_sequences_agree_with_tmpfs() {
    require_root();
    let ops: usize = std::env::var("PMXCFS_DIFF_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(2500);
    let seeds: u64 = std::env::var("PMXCFS_DIFF_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let tmpfs = Tmpfs::mount();
    let d = Daemon::start(&[]);
    for seed in 1..=seeds {
        run_seed(&d, tmpfs.dir.path(), seed, ops);
    }
}

#[test]
fn contents_survive_a_restart_after_the_random_run() {
    require_root();
    let tmpfs = Tmpfs::mount();
    let mut d = Daemon::start(&[]);
    run_seed(&d, tmpfs.dir.path(), 99, 800);
    let before = common::snapshot(&d.mnt());
    assert_eq!(d.stop(), 0);
    d.spawn().unwrap();
    assert_eq!(common::snapshot(&d.mnt()), before);
}
