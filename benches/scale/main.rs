//! Scale benchmark: per-file daemon costs at 100,000 files, side by side with other daemons.
//!
//! ```text
//! cargo bench --bench scale -- [--files N] [--daemon NAME=CMD ...] [--rounds R] [--json F] [--quick] [--cluster]
//! ```
//!
//! Every daemon runs with `-f -l --root TMPDIR --nodename NAME` (appended to CMD unless CMD
//! has `{root}`). Per daemon and round, on a fresh root: exec → serving; mkdir of the
//! directories; create of N files of `--size` bytes; `cat` of all of them; `--overwrites`
//! overwrites; a writer storm with a reader thread timing `stat`+`read` of an unrelated file;
//! RSS; a clean stop, then the size of config.db; a restart on the loaded database. Daemon CPU
//! is the utime+stime delta of `/proc/PID/stat` around each phase (until the daemon is quiet
//! again). With `--cluster` (needs corosync, `../shared/harness/cluster.sh`), pmxcfs-ng
//! daemons also get the cluster rows: a fresh node syncs the whole tree (peak RSS of sender
//! and receiver, reader p99 on the receiver), and a restarted node catches up 1,000 changes.
//! Results: docs/scale.md.

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

const BIN: &str = env!("CARGO_BIN_EXE_pmxcfs");

static ABORT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    ABORT.store(true, Ordering::SeqCst);
}

fn check_abort() -> io::Result<()> {
    if ABORT.load(Ordering::SeqCst) {
        return Err(other("interrupted"));
    }
    Ok(())
}

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

// ---------------------------------------------------------------------------------------------
// Parameters

struct Params {
    files: usize,
    dirs: usize,
    size: usize,
    overwrites: usize,
    rounds: usize,
    storm_secs: f64,
    storm_writers: usize,
    daemons: Vec<DaemonSpec>,
    json: Option<PathBuf>,
    base: PathBuf,
    cluster: bool,
    changes: usize,
    quick: bool,
    fuse_io_uring: Option<bool>,
}

const USAGE: &str = "\
usage: cargo bench --bench scale -- [OPTIONS]

  --files N          files in the tree (default 100000; 2000 with --quick)
  --dirs N           directories they are spread over (default files/100)
  --size B           bytes per file (default 500)
  --overwrites N     files overwritten in the overwrite phase (default files/10)
  --rounds R         paired rounds, medians reported (default 1)
  --storm-seconds S  length of the writer storm (default 5; 1 with --quick)
  --writers N        writer threads of the storm (default 2)
  --daemon NAME=CMD  a daemon to measure (repeatable; the first is the subject, ratios are
                     first / other). CMD is split on spaces; '-f -l --root {root} --nodename
                     {node}' is appended unless CMD contains {root}. NAME alone = the built-in
                     pmxcfs-ng. The original through ../shared/original/c-local.sh:
                     'original=unshare -n /work/shared/original/c-local.sh' (C_PMXCFS=binary).
                     Default: pmxcfs-ng.
  --cluster          also the cluster rows (pmxcfs-ng builds only, i.e. CMD = a pmxcfs binary;
                     needs corosync and ../shared/harness/cluster.sh)
  --changes N        changes a restarted node catches up (default 1000; 100 with --quick)
  --json FILE        write the results as JSON too
  --dir DIR          where the roots go (a disk filesystem; default target/scale-bench)
  --fuse-io-uring M  the kernel's FUSE io_uring transport (fuse.enable_uring) for the run:
                     on (default; restored afterwards), off, or keep (as it is). pmxcfs-ng
                     serves over it when it is on; the original never does
  --quick            smoke test: small tree, short storm
";

fn default_base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/scale-bench")
}

fn parse_args(args: &[String]) -> Result<Params, String> {
    let mut files = None;
    let mut dirs = None;
    let mut size = 500;
    let mut overwrites = None;
    let mut rounds = 1;
    let mut storm = None;
    let mut writers = 2;
    let mut daemons = Vec::new();
    let mut json = None;
    let mut base = default_base();
    let mut cluster = false;
    let mut changes = None;
    let mut quick = false;
    let mut fuse_io_uring = Some(true);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{name}: '{v}' is not a number"))
        }
        match a.as_str() {
            "--bench" => {}
            "--files" => files = Some(num("--files", val("--files")?)?),
            "--dirs" => dirs = Some(num("--dirs", val("--dirs")?)?),
            "--size" => size = num("--size", val("--size")?)?,
            "--overwrites" => overwrites = Some(num("--overwrites", val("--overwrites")?)?),
            "--rounds" => rounds = num("--rounds", val("--rounds")?)?,
            "--storm-seconds" => storm = Some(num("--storm-seconds", val("--storm-seconds")?)?),
            "--writers" => writers = num("--writers", val("--writers")?)?,
            "--changes" => changes = Some(num("--changes", val("--changes")?)?),
            "--daemon" => daemons.push(DaemonSpec::parse(&val("--daemon")?)?),
            "--json" => json = Some(PathBuf::from(val("--json")?)),
            "--dir" => base = PathBuf::from(val("--dir")?),
            "--cluster" => cluster = true,
            "--quick" => quick = true,
            "--fuse-io-uring" => {
                fuse_io_uring = match val("--fuse-io-uring")?.as_str() {
                    "on" => Some(true),
                    "off" => Some(false),
                    "keep" => None,
                    other => return Err(format!("--fuse-io-uring {other}: on, off or keep")),
                }
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let files: usize = files.unwrap_or(if quick { 2000 } else { 100_000 });
    if files == 0 || size == 0 || rounds == 0 || writers == 0 {
        return Err("--files, --size, --rounds and --writers must be positive".into());
    }
    if daemons.is_empty() {
        daemons.push(DaemonSpec::parse("pmxcfs-ng")?);
    }
    let dirs = dirs.unwrap_or((files / 100).max(1)).clamp(1, files);
    Ok(Params {
        files,
        dirs,
        size,
        overwrites: overwrites.unwrap_or((files / 10).max(1)).min(files),
        rounds,
        storm_secs: storm.unwrap_or(if quick { 1.0 } else { 5.0 }),
        storm_writers: writers,
        daemons,
        json,
        base,
        cluster,
        changes: changes.unwrap_or(if quick { 100 } else { 1000 }).min(files),
        quick,
        fuse_io_uring,
    })
}

// ---------------------------------------------------------------------------------------------
// Daemons

#[derive(Clone, Debug)]
struct DaemonSpec {
    name: String,
    /// Command line; `{root}` and `{node}` are replaced per instance.
    argv: Vec<String>,
    /// A pmxcfs-ng build run directly (the cluster rows start it under cluster.sh with its
    /// own `--root`; the original through c-local.sh is not).
    cluster_capable: bool,
}

impl DaemonSpec {
    fn parse(arg: &str) -> Result<DaemonSpec, String> {
        let (name, cmd) = match arg.split_once('=') {
            Some((n, c)) => (n.to_string(), c.to_string()),
            None if arg == "pmxcfs-ng" => (arg.to_string(), BIN.to_string()),
            None => return Err(format!("--daemon {arg}: use NAME=CMD (or the built-in 'pmxcfs-ng')")),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(format!("daemon name '{name}': use letters, digits, '-', '_', '.'"));
        }
        let mut argv: Vec<String> = cmd.split_whitespace().map(String::from).collect();
        if argv.is_empty() {
            return Err(format!("daemon '{name}': empty command"));
        }
        if !argv.iter().any(|a| a.contains("{root}")) {
            argv.extend(["-f", "-l", "--root", "{root}", "--nodename", "{node}"].map(String::from));
        }
        let cluster_capable = argv[0].ends_with("/pmxcfs") && Path::new(&argv[0]).is_file();
        Ok(DaemonSpec { name, argv, cluster_capable })
    }
}

const NODE: &str = "scalenode";

/// `/proc/PID/stat` utime + stime, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(s) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let Some((_, rest)) = s.rsplit_once(')') else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// Context switches (voluntary + involuntary) of all threads of `pid`.
fn ctx_switches(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("status")).ok())
        .map(|s| s.lines().filter(|l| l.contains("ctxt_switches:")).filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok()).sum::<u64>())
        .sum()
}

/// A `/proc/PID/status` field in bytes (VmRSS, VmHWM).
fn status_bytes(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':').and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())))
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn is_mounted(mnt: &Path) -> bool {
    let want = mnt.to_string_lossy().to_string();
    fs::read_to_string("/proc/self/mountinfo").map(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(want.as_str()))).unwrap_or(false)
}

fn lazy_umount(mnt: &Path) {
    if is_mounted(mnt) {
        if let Ok(c) = CString::new(mnt.as_os_str().as_encoded_bytes()) {
            // SAFETY: umount2 with a valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// One running daemon on its own root. Drop stops it and unmounts.
struct Daemon {
    child: Child,
    pid: u32,
    root: PathBuf,
    name: String,
}

impl Daemon {
    /// Starts `spec` on `root` and returns it once the mount answers; with the time from
    /// exec to the first answered `stat` of the mount point.
    fn start(spec: &DaemonSpec, root: &Path) -> io::Result<(Daemon, Duration)> {
        for d in ["etc/pve", "var/lib/pve-cluster", "run/pve-cluster"] {
            fs::create_dir_all(root.join(d))?;
        }
        let argv: Vec<String> = spec.argv.iter().map(|a| a.replace("{root}", &root.to_string_lossy()).replace("{node}", NODE)).collect();
        let log = fs::OpenOptions::new().create(true).append(true).open(root.join("daemon.log"))?;
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        // SAFETY: async-signal-safe system calls only.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let t0 = Instant::now();
        let child = cmd.spawn().map_err(|e| other(format!("start {}: {e}", argv.join(" "))))?;
        let pid = child.id();
        let mut d = Daemon { child, pid, root: root.to_path_buf(), name: spec.name.clone() };
        let mnt = d.mnt();
        loop {
            check_abort()?;
            if is_mounted(&mnt) && fs::metadata(&mnt).is_ok() {
                break;
            }
            if let Ok(Some(st)) = d.child.try_wait() {
                return Err(other(format!("daemon {} exited ({st}) before mounting:\n{}", d.name, d.log_tail())));
            }
            if t0.elapsed() > Duration::from_secs(120) {
                return Err(other(format!("daemon {} did not mount within 120 s:\n{}", d.name, d.log_tail())));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok((d, t0.elapsed()))
    }

    fn mnt(&self) -> PathBuf {
        self.root.join("etc/pve")
    }

    fn log_tail(&self) -> String {
        let s = fs::read_to_string(self.root.join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n    ")
    }

    fn cpu(&self) -> f64 {
        cpu_secs(self.pid)
    }

    /// Waits until the daemon used at most one clock tick of CPU in each of two 250 ms
    /// windows (its group commit and WAL sync are done); returns its CPU seconds then.
    fn quiet_cpu(&self) -> io::Result<f64> {
        let t0 = Instant::now();
        let mut last = self.cpu();
        let mut calm = 0;
        while calm < 2 && t0.elapsed() < Duration::from_secs(60) {
            check_abort()?;
            std::thread::sleep(Duration::from_millis(250));
            let now = self.cpu();
            calm = if now - last <= 0.011 { calm + 1 } else { 0 };
            last = now;
        }
        Ok(last)
    }

    /// SIGTERM and wait for the exit (a clean stop); returns how long it took.
    fn stop(mut self) -> io::Result<Duration> {
        let t0 = Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        while t0.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(_)) = self.child.try_wait() {
                let d = t0.elapsed();
                lazy_umount(&self.mnt());
                self.pid = 0;
                return Ok(d);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(other(format!("daemon {} ignored SIGTERM for 60 s", self.name)))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.pid != 0 && matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
            let t0 = Instant::now();
            while matches!(self.child.try_wait(), Ok(None)) && t0.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        lazy_umount(&self.mnt());
    }
}

/// A daemon's root on the disk under test; its `run` directory (pid file, crash copies of
/// open files) is on tmpfs as on a real host. Drop removes both.
struct Root {
    dir: tempfile::TempDir,
    shm: PathBuf,
}

impl Root {
    fn new(base: &Path, name: &str) -> io::Result<Root> {
        let dir = tempfile::Builder::new().prefix(&format!("{name}.")).tempdir_in(base)?;
        let tag = dir.path().file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let shm = PathBuf::from(format!("/dev/shm/pmxcfs-scale-{tag}"));
        fs::create_dir_all(shm.join("pve-cluster"))?;
        std::os::unix::fs::symlink(&shm, dir.path().join("run"))?;
        Ok(Root { dir, shm })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        // c-local.sh's self-bind of ROOT/etc goes with its reaper, maybe after us: detach
        // whatever is still mounted under the root (deepest first) before it is removed.
        let t0 = Instant::now();
        while !mounts_under(self.dir.path()).is_empty() && t0.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(50));
        }
        for mp in mounts_under(self.dir.path()).into_iter().rev() {
            lazy_umount(&mp);
        }
        let _ = fs::remove_dir_all(&self.shm);
    }
}

/// Mount points at or below `dir`, outermost first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    let mut v: Vec<PathBuf> = text.lines().filter_map(|l| l.split(' ').nth(4)).map(|m| PathBuf::from(m.replace("\\040", " "))).filter(|m| m.starts_with(dir)).collect();
    v.sort();
    v.dedup();
    v
}

// ---------------------------------------------------------------------------------------------
// Workload

fn payload(i: usize, gen: usize, size: usize) -> Vec<u8> {
    let mut d = format!("# file {i} generation {gen}\n").into_bytes();
    d.resize(size, b'x');
    if let Some(last) = d.last_mut() {
        *last = b'\n';
    }
    d
}

fn file_rel(p: &Params, i: usize) -> String {
    format!("scale/d{:04}/f{:06}.conf", i % p.dirs, i)
}

fn write_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    f.write_all(data)?;
    f.flush()?;
    drop(f);
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// A reader thread timing `stat` + open/read/close of `probe` until stopped.
struct Reader {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(Vec<Duration>, u64)>,
}

impl Reader {
    fn start(probe: PathBuf) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut buf = Vec::with_capacity(4096);
            while !s.load(Ordering::SeqCst) {
                let t0 = Instant::now();
                let ok = fs::metadata(&probe).is_ok() && fs::File::open(&probe).and_then(|mut f| {
                    buf.clear();
                    f.read_to_end(&mut buf)
                }).is_ok();
                lat.push(t0.elapsed());
                if !ok {
                    errors += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            (lat, errors)
        });
        Reader { stop, handle }
    }

    /// (p50 ms, p99 ms, max ms, samples, errors)
    fn finish(self) -> (f64, f64, f64, usize, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let (mut lat, errors) = self.handle.join().unwrap_or_default();
        lat.sort();
        (percentile(&lat, 0.5), percentile(&lat, 0.99), percentile(&lat, 1.0), lat.len(), errors)
    }
}

/// One measured phase of `n` operations: the daemon's CPU from quiet to quiet, its context
/// switches and the loop's wall time, as `<name>_cpu_s`, `<name>_ctx_per_file`,
/// `<name>_cpu_us_per_file` and `<name>_per_s`.
fn measure_phase(d: &Daemon, name: &str, n: usize, put: &mut impl FnMut(&str, f64), body: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    let c0 = d.quiet_cpu()?;
    let x0 = ctx_switches(d.pid);
    let t0 = Instant::now();
    body()?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = d.quiet_cpu()? - c0;
    put(&format!("{name}_cpu_s"), cpu);
    put(&format!("{name}_ctx_per_file"), (ctx_switches(d.pid) - x0) as f64 / n as f64);
    put(&format!("{name}_cpu_us_per_file"), cpu * 1e6 / n as f64);
    put(&format!("{name}_per_s"), n as f64 / wall);
    Ok(())
}

/// One round of one daemon: every local row.
fn run_local(p: &Params, spec: &DaemonSpec, root: &Path) -> io::Result<Map<String, Value>> {
    let mut r = Map::new();
    let mut put = |k: &str, v: f64| {
        r.insert(k.to_string(), json!(v));
    };
    let (d, t_mount) = Daemon::start(spec, root)?;
    put("exec_to_serving_empty_s", t_mount.as_secs_f64());
    let mnt = d.mnt();
    let probe = mnt.join("probe.conf");
    write_file(&probe, &payload(0, 0, p.size))?;
    fs::create_dir(mnt.join("scale"))?;
    let c0 = d.cpu();
    for i in 0..p.dirs {
        fs::create_dir(mnt.join(format!("scale/d{i:04}")))?;
    }
    let _ = d.quiet_cpu()? - c0;

    // create
    measure_phase(&d, "create", p.files, &mut put, || {
        for i in 0..p.files {
            if i % 1000 == 0 {
                check_abort()?;
            }
            write_file(&mnt.join(file_rel(p, i)), &payload(i, 0, p.size))?;
        }
        Ok(())
    })?;

    // cat
    measure_phase(&d, "cat", p.files, &mut put, || {
        let mut bytes = 0usize;
        for i in 0..p.files {
            if i % 1000 == 0 {
                check_abort()?;
            }
            bytes += fs::read(mnt.join(file_rel(p, i)))?.len();
        }
        if bytes != p.files * p.size {
            return Err(other(format!("cat read {bytes} bytes, expected {}", p.files * p.size)));
        }
        Ok(())
    })?;

    // overwrite
    let step = (p.files / p.overwrites).max(1);
    measure_phase(&d, "overwrite", p.overwrites, &mut put, || {
        for k in 0..p.overwrites {
            if k % 1000 == 0 {
                check_abort()?;
            }
            let i = (k * step) % p.files;
            write_file(&mnt.join(file_rel(p, i)), &payload(i, 1, p.size))?;
        }
        Ok(())
    })?;

    // reader alone, then under a writer storm
    let reader = Reader::start(probe.clone());
    std::thread::sleep(Duration::from_secs_f64(p.storm_secs.min(2.0)));
    let (_, p99_idle, _, _, _) = reader.finish();
    put("read_p99_idle_ms", p99_idle);
    let reader = Reader::start(probe.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..p.storm_writers)
        .map(|w| {
            let (stop, done, failed, mnt) = (stop.clone(), done.clone(), failed.clone(), mnt.clone());
            let (files, dirs, size) = (p.files, p.dirs, p.size);
            std::thread::spawn(move || {
                let mut k = w;
                while !stop.load(Ordering::SeqCst) {
                    let i = (k * 7919) % files;
                    let path = mnt.join(format!("scale/d{:04}/f{:06}.conf", i % dirs, i));
                    match write_file(&path, &payload(i, 2 + k, size)) {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    k += 1;
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < p.storm_secs {
        check_abort()?;
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        let _ = w.join();
    }
    let wall = t0.elapsed().as_secs_f64();
    let (p50, p99, max, samples, read_errors) = reader.finish();
    put("storm_writes_per_s", done.load(Ordering::Relaxed) as f64 / wall);
    put("storm_write_errors", failed.load(Ordering::Relaxed) as f64);
    put("storm_read_p50_ms", p50);
    put("storm_read_p99_ms", p99);
    put("storm_read_max_ms", max);
    put("storm_read_samples", samples as f64);
    put("storm_read_errors", read_errors as f64);
    d.quiet_cpu()?;

    put("rss_after_load_mb", status_bytes(d.pid, "VmRSS") as f64 / 1e6);
    put("hwm_after_load_mb", status_bytes(d.pid, "VmHWM") as f64 / 1e6);
    let stop_t = d.stop()?;
    put("clean_stop_s", stop_t.as_secs_f64());
    let db = root.join("var/lib/pve-cluster/config.db");
    put("config_db_mb", fs::metadata(&db).map(|m| m.len()).unwrap_or(0) as f64 / 1e6);
    let wal = fs::metadata(root.join("var/lib/pve-cluster/config.db-wal")).map(|m| m.len()).unwrap_or(0);
    put("config_db_wal_mb", wal as f64 / 1e6);

    // restart on the loaded database
    let (d, t_mount) = Daemon::start(spec, root)?;
    put("exec_to_serving_loaded_s", t_mount.as_secs_f64());
    let got = fs::read(mnt.join(file_rel(p, p.files - 1)))?;
    if got.len() != p.size {
        return Err(other("restarted daemon lost the last file"));
    }
    d.quiet_cpu()?;
    put("rss_after_restart_mb", status_bytes(d.pid, "VmRSS") as f64 / 1e6);
    d.stop()?;
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// Report

/// (key, label, unit, lower is better)
const ROWS: &[(&str, &str, &str, bool)] = &[
    ("cat_cpu_s", "daemon CPU to cat all files", "s", true),
    ("cat_cpu_us_per_file", "  per file", "µs", true),
    ("create_cpu_s", "daemon CPU to create all files", "s", true),
    ("create_cpu_us_per_file", "  per file", "µs", true),
    ("overwrite_cpu_s", "daemon CPU for the overwrites", "s", true),
    ("overwrite_cpu_us_per_file", "  per overwrite", "µs", true),
    ("cat_ctx_per_file", "daemon context switches per cat", "", true),
    ("create_ctx_per_file", "daemon context switches per create", "", true),
    ("overwrite_ctx_per_file", "daemon context switches per overwrite", "", true),
    ("create_per_s", "create rate", "/s", false),
    ("cat_per_s", "cat rate", "/s", false),
    ("overwrite_per_s", "overwrite rate", "/s", false),
    ("config_db_mb", "config.db size after a clean stop", "MB", true),
    ("config_db_wal_mb", "  WAL left beside it", "MB", true),
    ("exec_to_serving_empty_s", "exec → serving, empty database", "s", true),
    ("exec_to_serving_loaded_s", "exec → serving, loaded database", "s", true),
    ("rss_after_load_mb", "RSS after the workload", "MB", true),
    ("hwm_after_load_mb", "  peak RSS (VmHWM)", "MB", true),
    ("rss_after_restart_mb", "RSS after a restart on the loaded db", "MB", true),
    ("clean_stop_s", "clean stop (SIGTERM → exit)", "s", true),
    ("read_p99_idle_ms", "stat+read p99, idle", "ms", true),
    ("storm_read_p99_ms", "stat+read p99 during a writer storm", "ms", true),
    ("storm_read_max_ms", "  max", "ms", true),
    ("storm_writes_per_s", "  storm writes", "/s", false),
    ("storm_write_errors", "  storm write errors", "", true),
    ("storm_read_errors", "  reader errors", "", true),
    ("sync_sender_peak_rss_mb", "sender's peak RSS while a new node syncs", "MB", true),
    ("sync_receiver_peak_rss_mb", "receiver's peak RSS while it syncs", "MB", true),
    ("sync_seconds", "fresh node: start → whole tree synced", "s", true),
    ("sync_sender_cpu_s", "  sender's CPU", "s", true),
    ("sync_read_p99_ms", "  stat+read p99 on the receiver meanwhile", "ms", true),
    ("sync_read_errors", "  reader errors meanwhile", "", true),
    ("catchup_seconds", "restarted node: start → caught up N changes", "s", true),
    ("catchup_cpu_s", "  its CPU", "s", true),
    ("catchup_sender_cpu_s", "  sender's CPU", "s", true),
];

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

fn fmt_val(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "—".into(),
        Some(x) if unit == "/s" => format!("{x:.0}/s"),
        Some(x) if unit.is_empty() && x.fract() != 0.0 => format!("{x:.1}"),
        Some(x) if unit.is_empty() => format!("{x:.0}"),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0} {unit}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1} {unit}"),
        Some(x) => format!("{x:.2} {unit}"),
    }
}

fn table(p: &Params, medians: &[(String, Map<String, Value>)]) -> String {
    let mut s = String::new();
    let w = 44;
    let _ = write!(s, "{:<w$}", "measure");
    for (name, _) in medians {
        let _ = write!(s, " {name:>14}");
    }
    for (name, _) in medians.iter().skip(1) {
        let _ = write!(s, " {:>10}", format!("÷{name}"));
    }
    s.push('\n');
    let width = w + 15 * medians.len() + 11 * medians.len().saturating_sub(1);
    s.push_str(&"-".repeat(width));
    s.push('\n');
    for (key, label, unit, _) in ROWS {
        let vals: Vec<Option<f64>> = medians.iter().map(|(_, m)| m.get(*key).and_then(Value::as_f64)).collect();
        if vals.iter().all(Option::is_none) {
            continue;
        }
        let label = label.replace(" N ", &format!(" {} ", p.changes));
        let _ = write!(s, "{label:<w$}");
        for v in &vals {
            let _ = write!(s, " {:>14}", fmt_val(*v, unit));
        }
        for v in vals.iter().skip(1) {
            let ratio = match (vals[0], v) {
                (Some(a), Some(b)) if *b > 0.0 => format!("{:.2}", a / b),
                _ => "—".into(),
            };
            let _ = write!(s, " {ratio:>10}");
        }
        s.push('\n');
    }
    s
}

fn machine() -> Value {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_default();
    let date = Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    json!({
        "date": date,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "mem_gb": status_total_mem_gb(),
    })
}

fn status_total_mem_gb() -> f64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("MemTotal:").and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())))
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------------
// Main

#[path = "../../tests/common/uring_knob.rs"]
mod uring_knob;
use uring_knob::UringKnob;

fn run(p: &Params) -> Result<(), String> {
    // the kernel's FUSE io_uring switch for the run, restored when `_knob` is dropped
    let _knob = p.fuse_io_uring.and_then(|on| {
        let knob = UringKnob::set(on);
        if knob.is_none() && UringKnob::now() != "absent" {
            eprintln!("scale: cannot set {}", uring_knob::KNOB);
        }
        knob
    });
    let uring = UringKnob::now();
    fs::create_dir_all(&p.base).map_err(|e| format!("{}: {e}", p.base.display()))?;
    let mut rounds: Vec<Vec<Map<String, Value>>> = vec![Vec::new(); p.daemons.len()];
    let mut errors: Vec<String> = Vec::new();
    for round in 0..p.rounds {
        for (i, spec) in p.daemons.iter().enumerate() {
            let root = Root::new(&p.base, &spec.name).map_err(|e| e.to_string())?;
            eprintln!("scale: round {}/{} {} ({} files in {} dirs) ...", round + 1, p.rounds, spec.name, p.files, p.dirs);
            let t0 = Instant::now();
            match run_local(p, spec, root.path()) {
                Ok(mut r) => {
                    if p.cluster && spec.cluster_capable {
                        match cluster::run(p, spec, root.path()) {
                            Ok(c) => r.extend(c),
                            Err(e) => errors.push(format!("{} cluster round {}: {e}", spec.name, round + 1)),
                        }
                    }
                    eprintln!("scale: {} round {} done in {:.0} s", spec.name, round + 1, t0.elapsed().as_secs_f64());
                    rounds[i].push(r);
                }
                Err(e) => errors.push(format!("{} round {}: {e}", spec.name, round + 1)),
            }
            if ABORT.load(Ordering::SeqCst) {
                return Err("interrupted".into());
            }
        }
    }
    let medians: Vec<(String, Map<String, Value>)> = p
        .daemons
        .iter()
        .zip(&rounds)
        .map(|(spec, rs)| {
            let mut m = Map::new();
            for (key, _, _, _) in ROWS {
                if let Some(v) = median(rs.iter().filter_map(|r| r.get(*key).and_then(Value::as_f64)).collect()) {
                    m.insert(key.to_string(), json!(v));
                }
            }
            (spec.name.clone(), m)
        })
        .collect();
    let mach = machine();
    println!();
    println!(
        "scale — {} — {} cores ({}), Linux {}",
        mach["date"].as_str().unwrap_or(""),
        mach["cores"],
        mach["cpu"].as_str().unwrap_or(""),
        mach["kernel"].as_str().unwrap_or("")
    );
    println!(
        "{} files × {} B in {} directories; {} overwrites; storm {} writers × {} s; medians of {} round(s)",
        p.files, p.size, p.dirs, p.overwrites, p.storm_writers, p.storm_secs, p.rounds
    );
    println!("FUSE io_uring transport (fuse.enable_uring): {uring}");
    for s in &p.daemons {
        println!("  {}: {}", s.name, s.argv.join(" "));
    }
    println!();
    print!("{}", table(p, &medians));
    for e in &errors {
        println!("ERROR: {e}");
    }
    if let Some(path) = &p.json {
        let doc = json!({
            "benchmark": "scale",
            "machine": mach,
            "params": {"files": p.files, "dirs": p.dirs, "size": p.size, "overwrites": p.overwrites, "rounds": p.rounds,
                       "storm_seconds": p.storm_secs, "storm_writers": p.storm_writers, "cluster": p.cluster,
                       "changes": p.changes, "quick": p.quick, "fuse_enable_uring": uring},
            "daemons": p.daemons.iter().zip(&rounds).zip(&medians).map(|((s, rs), (_, m))| json!({
                "name": s.name, "command": s.argv.join(" "), "rounds": rs, "median": m,
            })).collect::<Vec<_>>(),
            "errors": errors,
        });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("scale: JSON written to {}", path.display());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{} error(s)", errors.len()))
    }
}

mod cluster;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs harness=false benches without --bench: do nothing.
        println!("scale: run with `cargo bench --bench scale` (or pass --bench)");
        return;
    }
    let p = match parse_args(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("scale: {e}");
            std::process::exit(2);
        }
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("scale: needs root (FUSE mounts)");
        std::process::exit(2);
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
    if let Err(e) = run(&p) {
        eprintln!("scale: FAILED: {e}");
        std::process::exit(1);
    }
}
