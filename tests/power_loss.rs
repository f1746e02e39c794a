//! Power-loss test: the daemon runs under an LD_PRELOAD shim (tests/power_loss/shim.c) that
//! keeps a "durable image" of the database files — bytes reach it only when the daemon
//! fsyncs/fdatasyncs the file — and at random instants snapshots that image plus none, a
//! random subset (512-byte sectors, any order) or all of the bytes written since the last
//! sync. Meanwhile writers change files through the mount (tmp + rename, like PVE's
//! file_set_contents) and create directories, recording when each change was acknowledged.
//!
//! The crash record on the run directory is not part of the snapshot: like a tmpfs, it is
//! gone after a power cut.
//!
//! For every cut: `pmxcfs check` calls the snapshot healthy, the daemon mounts it, every
//! file holds exactly one complete version, nothing that started after the cut is there,
//! and every change acknowledged more than W (the `--sync-interval`) plus slack before the
//! cut is there (the contract in docs/crash-safety.md). Two runs: W = 1 s (bound 1.5 s) and
//! W = 0 (bound 0: everything acknowledged before the cut survives it).
//! Cut points: `PMXCFS_POWERCUT_POINTS` (default 20); seed: `PMXCFS_POWERCUT_SEED`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const WRITERS: usize = 3;

fn mono_ns() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid timespec out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}


/// The bytes writer `k` writes in its `seq`-th change: a header naming it, then padding
/// (0..3000 bytes, so some versions span several 1 KiB pages).
fn content(k: usize, seq: usize) -> Vec<u8> {
    let mut v = format!("writer {k} seq {seq}\n").into_bytes();
    let pad = (seq * 397 + k * 101) % 3000;
    v.extend(std::iter::repeat_n(b'a' + (seq % 26) as u8, pad));
    v.push(b'\n');
    v
}

fn parse_seq(data: &[u8]) -> Option<usize> {
    let line = data.split(|b| *b == b'\n').next()?;
    std::str::from_utf8(line).ok()?.rsplit(' ').next()?.parse().ok()
}

/// One acknowledged-or-not change: when its first syscall started, when the last returned.
#[derive(Debug, Clone, Copy)]
struct Op {
    start: i64,
    ack: Option<i64>,
}

#[derive(Debug, Default)]
struct History {
    /// per writer: op `seq` made `pl/w{k}` hold `content(k, seq)`
    files: Vec<Vec<Op>>,
    /// op `seq` created `pl/d/{seq}`
    dirs: Vec<Op>,
}

fn build_shim(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/power_loss/shim.c");
    let so = dir.join("shim.so");
    let out = Command::new("cc")
        .args(["-O2", "-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .args(["-ldl", "-lpthread"])
        .output()
        .expect("cc (build-essential) is needed for the power-loss shim");
    assert!(out.status.success(), "building the shim failed:\n{}", String::from_utf8_lossy(&out.stderr));
    so
}

/// Starts the daemon on `root` with the shim preloaded; the harness's Drop cleans up.
fn start_shimmed(root: tempfile::TempDir, shim: &Path, out: &Path, cuts: usize, seed: u64, sync_interval_ms: u64) -> Daemon {
    let log = root.path().join("daemon.log");
    let mut d = Daemon { root, child: None, log, args: Vec::new(), node: NODE.to_string() };
    let logf = std::fs::OpenOptions::new().create(true).append(true).open(&d.log).unwrap();
    let child = Command::new(BIN)
        .args(["-f", "-l", "--nodename", NODE, "--ipc-name", &d.ipc_name(), "--sync-interval", &sync_interval_ms.to_string(), "--root"])
        .arg(d.root.path())
        .env("LD_PRELOAD", shim)
        .env("PLSHIM_DIR", d.db_path().parent().unwrap())
        .env("PLSHIM_OUT", out)
        .env("PLSHIM_CUTS", cuts.to_string())
        .env("PLSHIM_MIN_MS", "80")
        .env("PLSHIM_MAX_MS", "400")
        .env("PLSHIM_SEED", seed.to_string())
        .stdin(Stdio::null())
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .spawn()
        .unwrap();
    d.child = Some(child);
    let t0 = Instant::now();
    while !is_mounted(&d.mnt()) {
        if let Some(Ok(Some(st))) = d.child.as_mut().map(|c| c.try_wait()) {
            d.child = None;
            panic!("shimmed daemon exited with {st}\n{}", d.log_text());
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "shimmed daemon did not mount\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    d
}

fn file_writer(mnt: PathBuf, k: usize, seed: u64, stop: Arc<AtomicBool>, hist: Arc<Mutex<History>>) {
    let mut rng = Rng(seed | 1);
    let mut seq = 0;
    while !stop.load(Ordering::SeqCst) {
        let tmp = mnt.join(format!("pl/.w{k}.tmp.{seq}"));
        let start = mono_ns();
        hist.lock().unwrap().files[k].push(Op { start, ack: None });
        let r = std::fs::write(&tmp, content(k, seq)).and_then(|()| std::fs::rename(&tmp, mnt.join(format!("pl/w{k}"))));
        match r {
            Ok(()) => {}
            Err(_) if stop.load(Ordering::SeqCst) => return,
            Err(e) => panic!("writer {k} seq {seq}: {e}"),
        }
        let ack = mono_ns();
        hist.lock().unwrap().files[k][seq].ack = Some(ack);
        seq += 1;
        std::thread::sleep(Duration::from_millis(rng.below(15)));
    }
}

fn dir_writer(mnt: PathBuf, seed: u64, stop: Arc<AtomicBool>, hist: Arc<Mutex<History>>) {
    let mut rng = Rng(seed | 1);
    let mut seq = 0;
    while !stop.load(Ordering::SeqCst) {
        let start = mono_ns();
        hist.lock().unwrap().dirs.push(Op { start, ack: None });
        match std::fs::create_dir(mnt.join(format!("pl/d/{seq}"))) {
            Ok(()) => {}
            Err(_) if stop.load(Ordering::SeqCst) => return,
            Err(e) => panic!("mkdir pl/d/{seq}: {e}"),
        }
        let ack = mono_ns();
        hist.lock().unwrap().dirs[seq].ack = Some(ack);
        seq += 1;
        std::thread::sleep(Duration::from_millis(rng.below(20)));
    }
}

struct CutResult {
    /// how long before the cut the oldest acknowledged-but-lost change was acknowledged (0: none lost)
    loss_ns: i64,
    /// acknowledged changes the contract required to be present
    required: usize,
}

/// Verifies one cut; panics with the reason.
fn verify_cut(cut: &Path, hist: &History, bound_ns: i64) -> CutResult {
    let time = std::fs::read_to_string(cut.join("time")).unwrap();
    let f: Vec<i64> = time.split_whitespace().map(|x| x.parse().unwrap()).collect();
    // The cut is taken over an interval: began at t_cut (everything acknowledged before it
    // must be there), ended at t_end (nothing that started after it can be there).
    let (t_cut, mode) = (f[0], f[1]);
    let t_end = f.get(4).copied().unwrap_or(t_cut);
    let name = cut.file_name().unwrap().to_string_lossy().to_string();
    let ctx = format!("{name} (mode {mode}, {} unsynced sectors, {} kept)", f[2], f[3]);

    // a fresh root holding the snapshot's files
    let root = tempfile::Builder::new().prefix("pmxcfs-powercut.").tempdir().unwrap();
    let dbdir = root.path().join("var/lib/pve-cluster");
    std::fs::create_dir_all(&dbdir).unwrap();
    for e in std::fs::read_dir(cut).unwrap() {
        let e = e.unwrap();
        let n = e.file_name().to_string_lossy().to_string();
        if n.starts_with("config.db") {
            std::fs::copy(e.path(), dbdir.join(&n)).unwrap();
        }
    }
    let db = dbdir.join("config.db");
    let out = Command::new(BIN).args(["check", "--db"]).arg(&db).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && text.contains("\nhealthy"), "{ctx}: check failed:\n{text}");

    let mut d = Daemon::start_in_root(root, &[]);
    let mut loss_ns = 0i64;
    let mut required = 0;
    for (k, ops) in hist.files.iter().enumerate() {
        // the newest op acknowledged long enough before the cut must be there (or a later one)
        let must = ops.iter().rposition(|o| o.ack.is_some_and(|a| a <= t_cut - bound_ns));
        required += usize::from(must.is_some());
        let got = match std::fs::read(d.p(&format!("pl/w{k}"))) {
            Ok(data) => {
                let seq = parse_seq(&data).unwrap_or_else(|| panic!("{ctx}: pl/w{k} holds garbage"));
                assert!(seq < ops.len(), "{ctx}: pl/w{k} seq {seq} was never written");
                assert_eq!(data, content(k, seq), "{ctx}: pl/w{k} seq {seq} is torn");
                assert!(ops[seq].start <= t_end, "{ctx}: pl/w{k} seq {seq} started after the cut ({} us after its end)", (ops[seq].start - t_end) / 1000);
                Some(seq)
            }
            Err(e) => {
                assert_eq!(errno(&e), libc::ENOENT, "{ctx}");
                None
            }
        };
        assert!(
            got.map_or(-1, |g| g as i64) >= must.map_or(-1, |m| m as i64),
            "{ctx}: pl/w{k} holds {got:?}, but seq {must:?} was acknowledged more than {} ms before the cut",
            bound_ns / 1_000_000
        );
        // the oldest acknowledged change that is missing
        let first_missing = got.map_or(0, |g| g + 1);
        if let Some(a) = ops.get(first_missing).and_then(|o| o.ack).filter(|a| *a <= t_cut) {
            loss_ns = loss_ns.max(t_cut - a);
        }
    }
    let present: BTreeSet<usize> = match std::fs::read_dir(d.p("pl/d")) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap()).collect(),
        Err(e) => panic!("{ctx}: pl/d: {e}"),
    };
    for (seq, o) in hist.dirs.iter().enumerate() {
        let here = present.contains(&seq);
        if o.ack.is_some_and(|a| a <= t_cut - bound_ns) {
            required += 1;
            assert!(here, "{ctx}: pl/d/{seq} acknowledged {} ms before the cut is lost", (t_cut - o.ack.unwrap()) / 1_000_000);
        }
        if here {
            assert!(o.start <= t_end, "{ctx}: pl/d/{seq} started after the cut ({} us after its end, {} us after its start)", (o.start - t_end) / 1000, (o.start - t_cut) / 1000);
        } else if let Some(a) = o.ack.filter(|a| *a <= t_cut) {
            loss_ns = loss_ns.max(t_cut - a);
        }
    }
    assert!(present.iter().all(|s| *s < hist.dirs.len()), "{ctx}: unknown directory in pl/d");
    assert_eq!(d.stop(), 0, "{ctx}: daemon on the snapshot did not stop cleanly");
    CutResult { loss_ns, required }
}

#[test]
fn power_cut_at_random_instants_loses_at_most_the_sync_interval() {
    power_cuts(1000, 1_500_000_000);
}

#[test]
fn with_sync_interval_zero_a_power_cut_loses_nothing_acknowledged() {
    power_cuts(0, 0);
}

/// Runs the writers under the shim with `--sync-interval W`; every cut may lose only what
/// was acknowledged less than `bound_ns` before it.
fn power_cuts(sync_interval_ms: u64, bound_ns: i64) {
    let cuts: usize = std::env::var("PMXCFS_POWERCUT_POINTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed: u64 = std::env::var("PMXCFS_POWERCUT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    eprintln!("power-loss test: {cuts} cut points, seed {seed} (PMXCFS_POWERCUT_SEED to repeat)");
    let work = tempfile::Builder::new().prefix("pmxcfs-powerloss.").tempdir().unwrap();
    let shim = build_shim(work.path());

    // a database that is on disk before the run starts
    let mut d = Daemon::start(&[]);
    std::fs::create_dir_all(d.p("pl/d")).unwrap();
    std::fs::write(d.p("base.cfg"), b"on disk before the run\n").unwrap();
    assert_eq!(d.stop(), 0);
    let root = d.take_root();

    let out = work.path().join("cuts");
    let mut d = start_shimmed(root, &shim, &out, cuts, seed, sync_interval_ms);
    let stop = Arc::new(AtomicBool::new(false));
    let hist = Arc::new(Mutex::new(History { files: vec![Vec::new(); WRITERS], dirs: Vec::new() }));
    let mut handles = Vec::new();
    for k in 0..WRITERS {
        let (mnt, stop, hist) = (d.mnt(), stop.clone(), hist.clone());
        handles.push(std::thread::spawn(move || file_writer(mnt, k, seed.wrapping_add(k as u64 * 7919), stop, hist)));
    }
    {
        let (mnt, stop, hist) = (d.mnt(), stop.clone(), hist.clone());
        handles.push(std::thread::spawn(move || dir_writer(mnt, seed ^ 0x5555, stop, hist)));
    }
    // let the writers build up more than the loss window before the first cut
    std::thread::sleep(Duration::from_millis(1600));
    std::fs::write(out.join("start"), b"").unwrap();
    let t0 = Instant::now();
    while !out.join("done").exists() {
        if let Some(Ok(Some(st))) = d.child.as_mut().map(|c| c.try_wait()) {
            d.child = None;
            stop.store(true, Ordering::SeqCst);
            panic!("the shimmed daemon died: {st}\n{}", d.log_text());
        }
        assert!(t0.elapsed() < Duration::from_secs(30 + cuts as u64), "the shim did not finish its cuts");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    // writers finish their current change within milliseconds unless the daemon hangs
    let t1 = Instant::now();
    while !handles.iter().all(|h| h.is_finished()) && t1.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let hung = !handles.iter().all(|h| h.is_finished());
    d.kill9();
    let failed = handles.into_iter().map(|h| h.join()).filter(|r| r.is_err()).count();
    assert!(!hung, "the daemon stopped answering: writers blocked for 10 s in a FUSE call (deadlock?)\n{}", d.log_text());
    assert_eq!(failed, 0, "a writer failed while the daemon was running");
    let wal_syncs_seen = std::fs::metadata(out.join("durable/config.db-wal")).is_ok();
    assert!(wal_syncs_seen, "the daemon never fdatasynced its WAL");

    let hist = hist.lock().unwrap();
    let acked = hist.files.iter().map(|v| v.len()).sum::<usize>() + hist.dirs.len();
    let mut max_loss = 0i64;
    let mut required = 0;
    let mut modes = [0usize; 3];
    for k in 1..=cuts {
        let cut = out.join(format!("cut-{k}"));
        let r = verify_cut(&cut, &hist, bound_ns);
        let mode: usize = std::fs::read_to_string(cut.join("time")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
        modes[mode.min(2)] += 1;
        max_loss = max_loss.max(r.loss_ns);
        required += r.required;
    }
    eprintln!(
        "{cuts} cuts (nothing unsynced kept: {}, random sectors: {}, everything: {}); {acked} changes; \
         {required} states acknowledged more than {} ms before the cut verified present; max loss window observed {} ms (bound {} ms)",
        modes[0],
        modes[1],
        modes[2],
        bound_ns / 1_000_000,
        max_loss / 1_000_000,
        bound_ns / 1_000_000
    );
    assert!(required >= cuts, "the cuts must come after enough acknowledged changes");
}
