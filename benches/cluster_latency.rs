//! Cluster benchmark: three pmxcfs-ng daemons on a REAL corosync cluster
//! (`../shared/harness/cluster.sh`, one network namespace per node).
//!
//! ```text
//! cargo bench --bench cluster_latency -- [--count N] [--seconds S] [--threads LIST] [--size BYTES]
//! ```
//!
//! Measures, as the writer sees it on node1, a small `file_set_contents`-style update (create
//! `X.tmp.PID`, write, close, rename onto `X`):
//! * latency p50/p99 over `--count` (default 200) sequential updates;
//! * sustained updates/s with 1 and 4 writer threads (`--threads 1,4`) for `--seconds` (10);
//! * the disk bytes a RECEIVING node (node2) writes per replicated update, from the
//!   `write_bytes` of its `/proc/PID/io` (and, for comparison, the writer's).
//!
//! Needs root (namespaces, FUSE). Everything is torn down by Drop guards, also on panic and on
//! Ctrl-C. Results: docs/cluster.md.

use std::ffi::CString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/corosync.rs"]
mod corosync;

use corosync::{daemon_pid, Corosync, RunNames};

const BIN: &str = env!("CARGO_BIN_EXE_pmxcfs");

static ABORT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    ABORT.store(true, Ordering::SeqCst);
}

fn aborted() -> bool {
    ABORT.load(Ordering::SeqCst)
}

fn is_mounted(mountpoint: &Path) -> bool {
    let want = mountpoint.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo").map(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(want.as_str()))).unwrap_or(false)
}

fn lazy_umount(mnt: &Path) {
    if is_mounted(mnt) {
        let c = CString::new(mnt.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: umount2 with a valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) -> Result<(), String> {
    let t0 = Instant::now();
    while !f() {
        if aborted() {
            return Err("interrupted".into());
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            return Err(format!("timeout waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn kill_and_wait(child: &mut Child, secs: u64) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `write_bytes` of `/proc/PID/io`.
fn write_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("write_bytes: ").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0)
}

struct Node {
    id: u32,
    root: tempfile::TempDir,
    child: Option<Child>,
    pid: u32,
}

impl Node {
    fn mnt(&self) -> PathBuf {
        self.root.path().join("etc/pve")
    }
}

/// The corosync cluster and the daemons; Drop stops the daemons, then corosync goes down.
struct Cluster {
    coro: Corosync,
    nodes: Vec<Node>,
}

impl Cluster {
    fn up(n: u32) -> Result<Cluster, String> {
        let names = RunNames { dir: "bench", prefix: "pxbl", net: "10.223", tag_from: 20, cluster: "ngbench" };
        let mut c = Cluster { coro: Corosync::up(n, &names)?, nodes: Vec::new() };
        let conf = c.coro.conf()?;
        for id in 1..=n {
            let root = tempfile::Builder::new().prefix("pmxcfs-bench.").tempdir().map_err(|e| e.to_string())?;
            seed_database(root.path(), id, &conf)?;
            c.nodes.push(Node { id, root, child: None, pid: 0 });
        }
        for i in 0..n as usize {
            c.start_daemon(i)?;
        }
        Ok(c)
    }

    fn start_daemon(&mut self, i: usize) -> Result<(), String> {
        let id = self.nodes[i].id;
        let root = self.nodes[i].root.path().to_path_buf();
        self.nodes[i].child = Some(self.coro.spawn_daemon(BIN, id, &root)?);
        let mnt = self.nodes[i].mnt();
        wait_for(&format!("node{id} mounted"), 30, || is_mounted(&mnt))?;
        self.nodes[i].pid = daemon_pid(BIN, &root).ok_or_else(|| format!("no pmxcfs process for node{id}"))?;
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                if n.pid != 0 {
                    // SAFETY: the daemon we started (found by its --root).
                    unsafe { libc::kill(n.pid as i32, libc::SIGTERM) };
                }
                kill_and_wait(&mut c, 20);
            }
            lazy_umount(&n.mnt());
        }
    }
}

/// Like `pvecm create`: start in local mode, put the cluster's corosync.conf into the
/// database, stop.
fn seed_database(root: &Path, id: u32, conf: &[u8]) -> Result<(), String> {
    let mnt = root.join("etc/pve");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(root.join("daemon.log")).map_err(|e| e.to_string())?;
    let ipc = format!("pve2-bench-{}-{id}", std::process::id());
    let mut child = Command::new(BIN)
        .args(["-f", "-l", "--nodename", &format!("node{id}"), "--ipc-name", &ipc, "--root"])
        .arg(root)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .map_err(|e| e.to_string())?;
    let r = wait_for("seed daemon mounted", 20, || is_mounted(&mnt)).and_then(|_| std::fs::write(mnt.join("corosync.conf"), conf).map_err(|e| e.to_string()));
    kill_and_wait(&mut child, 20);
    lazy_umount(&mnt);
    r
}

/// One `file_set_contents`: tmp file, write, close, rename onto `target`.
fn set_contents(dir: &Path, target: &str, tag: &str, data: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{target}.tmp.{tag}"));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    f.write_all(data)?;
    drop(f);
    std::fs::rename(&tmp, dir.join(target))
}

fn payload(i: u64, size: usize) -> Vec<u8> {
    let mut d = format!("{{\"seq\":{i},\"state\":\"active\",\"pad\":\"").into_bytes();
    while d.len() + 2 < size {
        d.push(b'x');
    }
    d.extend_from_slice(b"\"}");
    d
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn fmt_bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

struct Config {
    count: u64,
    seconds: u64,
    threads: Vec<usize>,
    size: usize,
}

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut c = Config { count: 200, seconds: 10, threads: vec![1, 4], size: 100 };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--bench" => {}
            "--count" => c.count = val("--count")?.parse().map_err(|e| format!("--count: {e}"))?,
            "--seconds" => c.seconds = val("--seconds")?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--size" => c.size = val("--size")?.parse().map_err(|e| format!("--size: {e}"))?,
            "--threads" => {
                c.threads = val("--threads")?.split(',').map(|t| t.parse().map_err(|e| format!("--threads: {e}"))).collect::<Result<_, _>>()?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(c)
}

/// Waits until node2's daemon has stopped writing (group commit and WAL sync done).
fn quiet_bytes(pid: u32) -> u64 {
    let mut last = write_bytes(pid);
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(500));
        let now = write_bytes(pid);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

struct Throughput {
    threads: usize,
    updates: u64,
    secs: f64,
    errors: u64,
    writer_bytes: u64,
    receiver_bytes: u64,
}

fn run(cfg: &Config) -> Result<(), String> {
    let t_start = Instant::now();
    eprintln!("cluster_latency: bringing up 3 corosync nodes and 3 pmxcfs-ng daemons ...");
    let c = Cluster::up(3)?;
    let (n1, n2, n3) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    let dir1 = n1.mnt().join("bench");
    // the first write succeeds once node1 is quorate and synced
    wait_for("a quorate, synced node1", 60, || std::fs::create_dir(&dir1).is_ok() || dir1.is_dir())?;
    let seen = n3.mnt().join("bench");
    wait_for("replication to node3", 30, || seen.is_dir())?;
    set_contents(&dir1, "warmup.cfg", "0", b"warm").map_err(|e| format!("warm-up: {e}"))?;
    let warm3 = n3.mnt().join("bench/warmup.cfg");
    wait_for("warm-up replicated", 30, || warm3.exists())?;
    eprintln!("cluster_latency: cluster up after {:.1} s", t_start.elapsed().as_secs_f64());

    // 1. latency of one update as the writer sees it
    let mut lat = Vec::with_capacity(cfg.count as usize);
    for i in 0..cfg.count {
        if aborted() {
            return Err("interrupted".into());
        }
        let data = payload(i, cfg.size);
        let t0 = Instant::now();
        set_contents(&dir1, "lrm_status", &format!("{}", std::process::id()), &data).map_err(|e| format!("update {i}: {e}"))?;
        lat.push(t0.elapsed());
    }
    lat.sort();
    let mean = lat.iter().sum::<Duration>() / lat.len().max(1) as u32;
    let last3 = n3.mnt().join("bench/lrm_status");
    let want = payload(cfg.count - 1, cfg.size);
    wait_for("the last update on node3", 30, || std::fs::read(&last3).map(|d| d == want).unwrap_or(false))?;

    // 2. sustained updates/s, and 3. disk bytes per replicated update on node2
    let mut rows = Vec::new();
    for &threads in &cfg.threads {
        let rb0 = quiet_bytes(n2.pid);
        let wb0 = write_bytes(n1.pid);
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let t0 = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let (stop, done, errors, dir, size) = (stop.clone(), done.clone(), errors.clone(), dir1.clone(), cfg.size);
                std::thread::spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        i += 1;
                        match set_contents(&dir, &format!("t{threads}-{k}.cfg"), &format!("{k}"), &payload(i, size)) {
                            Ok(()) => done.fetch_add(1, Ordering::SeqCst),
                            Err(_) => errors.fetch_add(1, Ordering::SeqCst),
                        };
                    }
                })
            })
            .collect();
        while t0.elapsed() < Duration::from_secs(cfg.seconds) && !aborted() {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::SeqCst);
        for h in handles {
            let _ = h.join();
        }
        let secs = t0.elapsed().as_secs_f64();
        let updates = done.load(Ordering::SeqCst);
        // everything replicated and group-committed on node2
        let check = n2.mnt().join(format!("bench/t{threads}-0.cfg"));
        wait_for("node2 caught up", 60, || check.exists())?;
        let rb1 = quiet_bytes(n2.pid);
        let wb1 = write_bytes(n1.pid);
        rows.push(Throughput { threads, updates, secs, errors: errors.load(Ordering::SeqCst), writer_bytes: wb1 - wb0, receiver_bytes: rb1 - rb0 });
        eprintln!("cluster_latency: {threads} thread(s): {updates} updates in {secs:.1} s");
    }

    let machine = machine();
    println!();
    println!("cluster latency — {} — {machine}", date());
    println!("3 pmxcfs-ng nodes on corosync (knet/udp, secauth, token 1000 ms) in network namespaces of one host");
    println!("update = create {}-byte tmp file, write, close, rename onto the target (3 dcdb messages: CREATE, WRITE, RENAME)", cfg.size);
    println!();
    println!("latency on the writer (node1), {} sequential updates:", cfg.count);
    println!("  p50 {}   p99 {}   mean {}   min {}   max {}", ms(percentile(&lat, 0.5)), ms(percentile(&lat, 0.99)), ms(mean), ms(lat[0]), ms(*lat.last().unwrap()));
    println!();
    println!("{:<8} {:>9} {:>10} {:>7} {:>18} {:>18} {:>18}", "writers", "updates", "updates/s", "errors", "node2 disk/update", "node1 disk/update", "node2 disk total");
    println!("{}", "-".repeat(94));
    for r in &rows {
        let per = |b: u64| fmt_bytes(b as f64 / r.updates.max(1) as f64);
        println!(
            "{:<8} {:>9} {:>10.0} {:>7} {:>18} {:>18} {:>18}",
            r.threads,
            r.updates,
            r.updates as f64 / r.secs,
            r.errors,
            per(r.receiver_bytes),
            per(r.writer_bytes),
            fmt_bytes(r.receiver_bytes as f64)
        );
    }
    println!();
    println!("node2 = a receiving node (group-commits replicated changes within 1 s); node1 = the writer");
    println!("(commits its own change before the syscall returns). Total run {:.0} s.", t_start.elapsed().as_secs_f64());
    drop(c);
    Ok(())
}

fn date() -> String {
    Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores ({cpu}), Linux {}", kernel.trim())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs harness=false benches without --bench: do nothing.
        println!("cluster_latency: run with `cargo bench --bench cluster_latency` (or pass --bench)");
        return;
    }
    let cfg = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cluster_latency: {e}");
            std::process::exit(2);
        }
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("cluster_latency: needs root (network namespaces, FUSE mounts)");
        std::process::exit(2);
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
    if let Err(e) = run(&cfg) {
        eprintln!("cluster_latency: FAILED: {e}");
        std::process::exit(1);
    }
}
