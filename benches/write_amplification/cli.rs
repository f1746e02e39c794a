//! Command line of the benchmark (clap): which daemons, which workloads, how long, where.

use std::path::PathBuf;

use clap::Parser;

use crate::isolation::DaemonSpec;
use crate::workloads::{Params, Workload, ALL_WORKLOADS};
use crate::Config;

const DEFAULT_GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/golden/c-config.db");

/// Write-amplification benchmark: bytes at the device (own ext4 on a loop device) and the
/// daemon's write_bytes, per workload, for each daemon and each sync interval W.
#[derive(Debug, Parser)]
#[command(name = "write_amplification", about, long_about = None)]
pub(crate) struct Args {
    /// Passed by `cargo bench`; without it (cargo test --all-targets) nothing runs.
    #[arg(long, hide = true)]
    bench: bool,

    /// A daemon to measure (repeatable): NAME=CMD, CMD split on spaces, {root} and {node}
    /// replaced per instance. Without {root} the daemon uses the real paths and runs isolated
    /// in private mount, network and UTS namespaces (the original: 'orig=/usr/bin/pmxcfs -f -l').
    /// NAME alone selects a built-in: pmxcfs-ng (default W), ng-wMS (--sync-interval MS),
    /// ng-shared (default W, --shared-db: config.db shared with other processes all the time).
    #[arg(long = "daemon", value_name = "NAME[=CMD]")]
    daemons: Vec<String>,

    /// Also measure pmxcfs-ng at these sync intervals W (milliseconds, comma-separated) for
    /// the trade-off table and chart, e.g. 0,1000,5000,30000,60000.
    #[arg(long = "sync-intervals", value_name = "MS,..", value_delimiter = ',')]
    sync_intervals: Vec<u64>,

    /// Run only this workload (repeatable); --list shows them.
    #[arg(long = "workload", value_name = "NAME")]
    workloads: Vec<String>,

    /// Repetitions per daemon and workload, median reported (default 3; 1 with --quick).
    #[arg(long)]
    reps: Option<usize>,

    /// Duration of the idle HA pattern at real pace (default 180; 6 with --quick).
    #[arg(long = "idle-seconds", value_name = "S")]
    idle_seconds: Option<f64>,

    /// Updates for ha-status and rewrite-4k (default 200; 20 with --quick).
    #[arg(long, value_name = "N")]
    count: Option<usize>,

    /// Configs for guest-configs (default 200; 50 with --quick).
    #[arg(long, value_name = "N")]
    guests: Option<usize>,

    /// JSON results (default TARGET/write-amplification/results.json).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Directory of the SVG charts (default TARGET/write-amplification/).
    #[arg(long = "svg-dir", value_name = "DIR")]
    svg_dir: Option<PathBuf>,

    /// Where instance directories go when --no-device is given (a disk filesystem, not tmpfs).
    #[arg(long, value_name = "DIR", default_value = "/tmp")]
    dir: PathBuf,

    /// Do not give each instance its own ext4 on a loop device (no device figures).
    #[arg(long = "no-device")]
    no_device: bool,

    /// Database copied into every instance ('none' = empty database).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_GOLDEN)]
    db: String,

    /// Smoke test: 1 repetition, small counts, 6 s idle, pmxcfs-ng at W = 1 s unless --daemon.
    #[arg(long)]
    quick: bool,

    /// List the workloads and exit.
    #[arg(long)]
    list: bool,
}

pub(crate) fn default_out_dir() -> PathBuf {
    // target/<profile>/deps/write_amplification-HASH -> target/write-amplification
    std::env::current_exe()
        .ok()
        .and_then(|p| p.ancestors().nth(3).map(|t| t.join("write-amplification")))
        .unwrap_or_else(|| PathBuf::from("write-amplification"))
}

impl Args {
    /// True if the benchmark should run at all (cargo test runs benches without --bench).
    pub(crate) fn wants_run(&self) -> bool {
        self.bench || self.list
    }

    /// The run's configuration; Ok(None) after --list.
    pub(crate) fn into_config(self) -> Result<Option<Config>, String> {
        let (dc, dg, di) = if self.quick { (20, 50, 6.0) } else { (200, 200, 180.0) };
        let params = Params {
            ha_count: self.count.unwrap_or(dc).max(1),
            guest_count: self.guests.unwrap_or(dg).max(1),
            rewrite_count: self.count.unwrap_or(dc).max(1),
            idle_secs: self.idle_seconds.unwrap_or(di).max(1.0),
        };
        if self.list {
            for w in ALL_WORKLOADS {
                println!("{:<15} {}", w.name(), w.describe(&params));
            }
            return Ok(None);
        }
        let mut daemons: Vec<DaemonSpec> = Vec::new();
        let mut add = |spec: DaemonSpec| -> Result<(), String> {
            if daemons.iter().any(|d| d.name == spec.name) {
                return Err(format!("daemon name '{}' given twice", spec.name));
            }
            daemons.push(spec);
            Ok(())
        };
        for v in &self.daemons {
            add(match v.split_once('=') {
                Some((name, cmd)) => DaemonSpec::parse(name.trim(), cmd)?,
                None => DaemonSpec::builtin(v.trim()).ok_or_else(|| format!("no built-in daemon '{v}' (use NAME=CMD)"))?,
            })?;
        }
        if self.daemons.is_empty() {
            // the smoke test must not wait the default W (30 s) after every workload
            let default = if self.quick { "ng-w1000" } else { "pmxcfs-ng" };
            add(DaemonSpec::builtin(default).ok_or("built-in pmxcfs-ng binary not found")?)?;
        }
        for ms in &self.sync_intervals {
            add(DaemonSpec::builtin(&format!("ng-w{ms}")).ok_or("built-in pmxcfs-ng binary not found")?)?;
        }
        let mut workloads = Vec::new();
        for v in &self.workloads {
            let w = Workload::from_name(v).ok_or_else(|| format!("unknown workload '{v}' (see --list)"))?;
            if !workloads.contains(&w) {
                workloads.push(w);
            }
        }
        if workloads.is_empty() {
            workloads = ALL_WORKLOADS.to_vec();
        }
        let golden = (self.db != "none").then(|| PathBuf::from(&self.db));
        if let Some(g) = &golden {
            if !g.is_file() {
                return Err(format!("database '{}' not found (--db FILE, or --db none for an empty one)", g.display()));
            }
        }
        let out = default_out_dir();
        Ok(Some(Config {
            daemons,
            workloads,
            reps: self.reps.unwrap_or(if self.quick { 1 } else { 3 }).max(1),
            params,
            json: self.json.unwrap_or_else(|| out.join("results.json")),
            svg_dir: self.svg_dir.unwrap_or(out.clone()),
            work_dir: out,
            base_dir: self.dir,
            shm_dir: PathBuf::from("/dev/shm"),
            device: !self.no_device,
            golden,
        }))
    }
}
