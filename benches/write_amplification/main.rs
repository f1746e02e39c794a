//! Write-amplification benchmark: how many bytes a pmxcfs daemon makes the device write for
//! what an application writes into /etc/pve, and what the sync interval W trades for it.
//!
//! ```text
//! cargo bench --bench write_amplification -- [--daemon NAME=CMD]... [--workload NAME]...
//!     [--sync-intervals MS,..] [--reps N] [--idle-seconds S] [--json FILE] [--quick]
//! ```
//!
//! Every daemon × workload × repetition runs a fresh daemon in local mode on a copy of a
//! database shaped like a real 3-node cluster, its state directory on an ext4 filesystem of
//! its own on a loop device (run directory on tmpfs, as /run on a node). Measured: sectors
//! written at the device (`/sys/block/loopN/stat`; journal, metadata and flushes included,
//! synced before and after) and the daemon's `write_bytes` (`/proc/PID/io`). See
//! `docs/benchmark.md`. Needs root; cleans up after itself, also on panic and Ctrl-C.

mod accounting;
mod bigdb;
mod chart;
mod cli;
mod daemon;
mod isolation;
mod report;
mod workloads;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

use accounting::checkpoint_debt;
use daemon::Daemon;
use isolation::DaemonSpec;
use report::{fmt_bytes, fmt_ratio, machine, table, tradeoff_table, Row};
use workloads::{Params, Workload};

// ---------------------------------------------------------------------------------------------
// Interruption

static ABORT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    ABORT.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
}

pub(crate) fn check_abort() -> io::Result<()> {
    if ABORT.load(Ordering::SeqCst) {
        Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"))
    } else {
        Ok(())
    }
}

/// Sleeps up to `d`, returning early (with an error) when interrupted.
pub(crate) fn sleep_checked(d: Duration) -> io::Result<()> {
    let end = Instant::now() + d;
    loop {
        check_abort()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

pub(crate) fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

// ---------------------------------------------------------------------------------------------
// Measurement

/// One repetition's figures.
#[derive(Clone, Debug)]
pub(crate) struct Rep {
    pub(crate) logical: u64,
    /// The daemon's write_bytes delta.
    pub(crate) written: u64,
    pub(crate) cancelled: u64,
    pub(crate) wchar: u64,
    /// Bytes written at the device until everything was durable (None without device
    /// accounting); the final checkpoint is not included.
    pub(crate) device: Option<u64>,
    /// Bytes the final checkpoint of the WAL writes at the device (a real daemon pays it once
    /// per 1000 WAL pages, not per run: reported apart, not extrapolated per day).
    pub(crate) device_ckpt: Option<u64>,
    pub(crate) elapsed: f64,
    pub(crate) ops: u64,
    /// Acknowledgements (pmxcfs-ng's commit points).
    pub(crate) acks: Option<u64>,
    /// SQLite transactions.
    pub(crate) txns: Option<u64>,
    pub(crate) wal_syncs: Option<u64>,
    pub(crate) settle: f64,
    /// write_bytes of a checkpoint of the WAL frames left at the end (not part of `written`;
    /// part of `device`).
    pub(crate) ckpt: u64,
}

pub(crate) struct Config {
    pub(crate) daemons: Vec<DaemonSpec>,
    pub(crate) workloads: Vec<Workload>,
    pub(crate) reps: usize,
    pub(crate) params: Params,
    pub(crate) json: PathBuf,
    pub(crate) svg_dir: PathBuf,
    /// Where generated inputs (the 100k-file database) are cached.
    pub(crate) work_dir: PathBuf,
    pub(crate) base_dir: PathBuf,
    pub(crate) shm_dir: PathBuf,
    /// Each instance on its own ext4 on a loop device.
    pub(crate) device: bool,
    pub(crate) golden: Option<PathBuf>,
}

fn run_rep(spec: &DaemonSpec, w: Workload, cfg: &Config, db: Option<&Path>) -> io::Result<Rep> {
    let d = Daemon::start(spec, cfg, db)?;
    w.setup(&d.access).map_err(|e| other(format!("setup: {e}")))?;
    d.wait_committed()?;
    // Start from an empty WAL (as right after a checkpoint), so what is left in it at the end
    // is the workload's, and from clean pages.
    checkpoint_debt(&d.dirs.db_dir().join("config.db"))?;
    d.wait_alone_again()?;
    d.sync_db_dir()?;
    let dev0 = d.dirs.device_bytes()?;
    let io0 = d.io()?;
    let s0 = d.stats();
    let t0 = Instant::now();
    let out = w
        .run(&d.access, &cfg.params)
        .map_err(|e| other(format!("workload: {e}; daemon output:\n    {}", d.log_tail())))?;
    let elapsed = t0.elapsed().as_secs_f64();
    let settle = d.wait_committed()?.as_secs_f64();
    let io1 = d.io()?;
    let s1 = d.stats();
    let dev1 = d.dirs.device_bytes()?;
    // the WAL's checkpoint debt, paid by the daemon itself: its clean stop checkpoints (an
    // outside checkpoint would also make a pmxcfs-ng leave exclusive locking first)
    let mut d = d;
    d.stop()?;
    let ckpt = checkpoint_debt(&d.dirs.db_dir().join("config.db"))?;
    let dev2 = d.dirs.device_bytes()?;
    let (acks, txns, wal_syncs) = match (s0, s1) {
        (Some(a), Some(b)) => (Some(b.commits - a.commits), Some(b.store_transactions - a.store_transactions), Some(b.wal_syncs - a.wal_syncs)),
        _ => (None, None, None),
    };
    drop(d);
    Ok(Rep {
        logical: out.logical,
        written: io1.write_bytes - io0.write_bytes,
        cancelled: io1.cancelled_write_bytes - io0.cancelled_write_bytes,
        wchar: io1.wchar - io0.wchar,
        device: dev0.zip(dev1).map(|(a, b)| b - a),
        device_ckpt: dev1.zip(dev2).map(|(a, b)| b - a),
        elapsed,
        ops: out.ops,
        acks,
        txns,
        wal_syncs,
        settle,
        ckpt,
    })
}

fn rep_json(r: &Rep) -> Value {
    json!({
        "logical_bytes": r.logical,
        "device_bytes": r.device,
        "device_checkpoint_bytes": r.device_ckpt,
        "write_bytes": r.written,
        "cancelled_write_bytes": r.cancelled,
        "wchar": r.wchar,
        "ratio": r.written as f64 / r.logical.max(1) as f64,
        "device_ratio": r.device.map(|d| (d + r.device_ckpt.unwrap_or(0)) as f64 / r.logical.max(1) as f64),
        "ops": r.ops,
        "elapsed_s": r.elapsed,
        "ops_per_s": r.ops as f64 / r.elapsed.max(1e-9),
        "acknowledgements": r.acks,
        "sqlite_transactions": r.txns,
        "wal_syncs": r.wal_syncs,
        "settle_s": r.settle,
        "checkpoint_debt_bytes": r.ckpt,
    })
}

/// Runs every repetition of workload `w` for every daemon.
fn run_workload(w: Workload, cfg: &Config, started: Instant) -> Vec<Row> {
    let mut rows: Vec<Row> = cfg.daemons.iter().map(|d| Row { workload: w, daemon: d.name.clone(), reps: Vec::new(), errors: Vec::new() }).collect();
    let db = match w.database(cfg) {
        Ok(db) => db,
        Err(e) => {
            for r in &mut rows {
                r.errors.push(format!("preparing the database: {e}"));
            }
            return rows;
        }
    };
    let report = |d: &DaemonSpec, rep: usize, r: &io::Result<Rep>| match r {
        Ok(r) => eprintln!(
            "[{:>6.1}s] {:<15} {:<16} rep {}: device {} / write_bytes {} for {} ({}), {} ops in {:.1} s, store txns {}",
            started.elapsed().as_secs_f64(),
            w.name(),
            d.name,
            rep + 1,
            r.device.map(|b| format!("{} +ckpt {}", fmt_bytes(b as f64), fmt_bytes(r.device_ckpt.unwrap_or(0) as f64))).unwrap_or_else(|| "n/a".into()),
            fmt_bytes(r.written as f64),
            fmt_bytes(r.logical as f64),
            fmt_ratio(r.device.map_or(r.written, |d| d + r.device_ckpt.unwrap_or(0)) as f64 / r.logical.max(1) as f64, "x"),
            r.ops,
            r.elapsed,
            r.txns.map(|t| t.to_string()).unwrap_or_else(|| "n/a".into())
        ),
        Err(e) => eprintln!("[{:>6.1}s] {:<15} {:<16} rep {}: FAILED: {e}", started.elapsed().as_secs_f64(), w.name(), d.name, rep + 1),
    };
    let db = db.as_deref();
    if w.paced() {
        // Mostly sleeping: every daemon × repetition at the same time, each on its own device.
        let results: Vec<(usize, usize, io::Result<Rep>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..cfg.reps)
                .flat_map(|rep| cfg.daemons.iter().enumerate().map(move |(di, d)| (rep, di, d)))
                .map(|(rep, di, d)| (rep, di, s.spawn(move || run_rep(d, w, cfg, db))))
                .collect();
            handles.into_iter().map(|(rep, di, h)| (rep, di, h.join().unwrap_or_else(|_| Err(other("benchmark thread panicked"))))).collect()
        });
        for (rep, di, r) in results {
            report(&cfg.daemons[di], rep, &r);
            match r {
                Ok(r) => rows[di].reps.push(r),
                Err(e) => rows[di].errors.push(e.to_string()),
            }
        }
    } else {
        // Interleave daemons within each repetition so slow drifts hit all alike.
        'reps: for rep in 0..cfg.reps {
            for (di, d) in cfg.daemons.iter().enumerate() {
                if ABORT.load(Ordering::SeqCst) {
                    break 'reps;
                }
                let r = run_rep(d, w, cfg, db);
                report(d, rep, &r);
                match r {
                    Ok(r) => rows[di].reps.push(r),
                    Err(e) => rows[di].errors.push(e.to_string()),
                }
            }
        }
    }
    rows
}

fn write_out(path: &Path, text: String) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = fs::create_dir_all(dir);
    }
    match fs::write(path, text) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}

fn main() {
    let args = cli::Args::parse();
    if !args.wants_run() {
        // `cargo test --all-targets` runs harness=false benches without --bench: do nothing.
        println!("write_amplification: run with `cargo bench --bench write_amplification` (or pass --bench)");
        return;
    }
    let cfg = match args.into_config() {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => {
            eprintln!("write_amplification: {e}");
            std::process::exit(2);
        }
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("write_amplification: needs root (FUSE mounts, loop devices, mount and network namespaces)");
        std::process::exit(2);
    }
    install_signal_handlers();
    let m = machine(&cfg.base_dir, cfg.device);
    if !cfg.device && m.fs.contains("tmpfs") {
        eprintln!("warning: {} is tmpfs: write_bytes stays 0 there; use --dir on a disk filesystem", cfg.base_dir.display());
    }
    eprintln!("write_amplification: {} | {} cores ({}) | Linux {} | instances on {}", m.date, m.cores, m.cpu, m.kernel, m.fs);
    for d in &cfg.daemons {
        eprintln!(
            "  daemon {:<16} {}{}{}",
            d.name,
            d.command_line(),
            if d.isolated { "  [isolated: private mount+net+uts namespaces]" } else { "" },
            if d.has_stats { "  [stats: transactions counted]" } else { "  [no stats: settles on write_bytes]" }
        );
    }
    for w in &cfg.workloads {
        eprintln!("  workload {:<15} {}", w.name(), w.describe(&cfg.params));
    }

    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    for &w in &cfg.workloads {
        if ABORT.load(Ordering::SeqCst) {
            break;
        }
        rows.extend(run_workload(w, &cfg, started));
    }

    let p = &cfg.params;
    println!();
    println!(
        "write amplification — {} — {} cores ({}), Linux {}, instances on {} — median of {} rep(s), {:.0} s",
        m.date,
        m.cores,
        m.cpu,
        m.kernel,
        m.fs,
        cfg.reps,
        started.elapsed().as_secs_f64()
    );
    print!("{}", table(&rows, p));
    println!("device = bytes written at the instance's own ext4 loop device until everything was durable (journal, metadata, flushes included);");
    println!("+ckpt = device bytes of the daemon's clean stop (SIGTERM: its final WAL checkpoint, paid once per 1000 WAL pages anyway; not extrapolated per day); write_bytes = daemon's /proc/PID/io;");
    println!("ratio = (device + ckpt) / logical, else write_bytes / logical; acks = acknowledgements (crash record appends); txns = SQLite transactions");
    let tradeoff = tradeoff_table(&rows, &cfg);
    if !tradeoff.is_empty() {
        println!();
        println!("trade-off: sync interval W (power-cut window) against device bytes per day of the idle HA pattern");
        print!("{tradeoff}");
    }

    let results: Vec<Value> = rows
        .iter()
        .map(|r| {
            let s = r.summary(p);
            json!({
                "workload": r.workload.name(),
                "daemon": r.daemon,
                "median": s.as_ref().map(|s| json!({
                    "logical_bytes": s.logical,
                    "device_bytes": s.device,
                    "device_checkpoint_bytes": s.device_ckpt,
                    "write_bytes": s.written,
                    "ratio": s.ratio,
                    "write_bytes_per_op": s.per_op,
                    "ops_per_s": s.ops_per_s,
                    "sqlite_transactions": s.txns,
                    "wal_syncs": s.wal_syncs,
                    "write_bytes_per_day": s.per_day,
                    "device_bytes_per_day": s.device_per_day,
                    "checkpoint_debt_bytes": s.ckpt,
                })),
                "reps": r.reps.iter().map(rep_json).collect::<Vec<_>>(),
                "errors": r.errors,
            })
        })
        .collect();
    let doc = json!({
        "benchmark": "write_amplification",
        "date": m.date,
        "machine": { "cores": m.cores, "cpu": m.cpu, "kernel": m.kernel, "instance_fs": m.fs },
        "settings": {
            "reps": cfg.reps,
            "ha_status_count": p.ha_count,
            "guest_configs": p.guest_count,
            "rewrite_4k_count": p.rewrite_count,
            "idle_seconds": p.idle_secs,
            "device_accounting": cfg.device,
            "database": cfg.golden.as_ref().map(|g| g.display().to_string()),
        },
        "daemons": cfg.daemons.iter().map(|d| json!({
            "name": d.name, "command": d.command_line(), "isolated": d.isolated, "stats": d.has_stats,
            "sync_interval_ms": d.sync_interval_ms,
        })).collect::<Vec<_>>(),
        "workloads": cfg.workloads.iter().map(|w| json!({"name": w.name(), "description": w.describe(p)})).collect::<Vec<_>>(),
        "results": results,
    });
    write_out(&cfg.json, serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n");
    write_out(&cfg.svg_dir.join("chart.svg"), chart::svg(&rows, &cfg, &m));
    if let Some(t) = chart::tradeoff_svg(&rows, &cfg, &m) {
        write_out(&cfg.svg_dir.join("tradeoff.svg"), t);
    }
    if ABORT.load(Ordering::SeqCst) {
        eprintln!("interrupted");
        std::process::exit(130);
    }
    if rows.iter().any(|r| !r.errors.is_empty()) {
        std::process::exit(1);
    }
}
