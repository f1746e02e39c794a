//! Summaries of the repetitions, the text tables (per workload, and the W trade-off) and
//! the description of the machine.

use std::fs;
use std::path::Path;

use crate::workloads::{unix_now, Params, Workload};
use crate::{Config, Rep};

pub(crate) struct Row {
    pub(crate) workload: Workload,
    pub(crate) daemon: String,
    pub(crate) reps: Vec<Rep>,
    pub(crate) errors: Vec<String>,
}

pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

pub(crate) struct Summary {
    pub(crate) logical: f64,
    pub(crate) written: f64,
    pub(crate) device: Option<f64>,
    pub(crate) device_ckpt: Option<f64>,
    /// (device + device_ckpt) / logical where measured.
    pub(crate) device_ratio: Option<f64>,
    pub(crate) ratio: f64,
    pub(crate) per_op: f64,
    pub(crate) ops_per_s: f64,
    pub(crate) txns: Option<f64>,
    pub(crate) wal_syncs: Option<f64>,
    pub(crate) per_day: Option<f64>,
    pub(crate) device_per_day: Option<f64>,
    pub(crate) ckpt: f64,
}

impl Row {
    /// Median acknowledgements per repetition.
    pub(crate) fn summary_acks(&self) -> Option<f64> {
        median(self.reps.iter().filter_map(|r| r.acks).map(|x| x as f64).collect())
    }

    pub(crate) fn summary(&self, p: &Params) -> Option<Summary> {
        if self.reps.is_empty() {
            return None;
        }
        let m = |f: &dyn Fn(&Rep) -> f64| median(self.reps.iter().map(f).collect()).unwrap_or(0.0);
        let mo = |f: &dyn Fn(&Rep) -> Option<u64>| {
            median(self.reps.iter().filter_map(f).map(|x| x as f64).collect())
        };
        let logical = m(&|r| r.logical as f64);
        let written = m(&|r| r.written as f64);
        let device = mo(&|r| r.device);
        let device_ckpt = mo(&|r| r.device_ckpt);
        let device_ratio = median(self.reps.iter().filter_map(|r| r.device.map(|d| (d + r.device_ckpt.unwrap_or(0)) as f64 / r.logical.max(1) as f64)).collect());
        Some(Summary {
            logical,
            written,
            device,
            device_ckpt,
            device_ratio,
            ratio: m(&|r| r.written as f64 / (r.logical.max(1)) as f64),
            per_op: m(&|r| r.written as f64 / r.ops.max(1) as f64),
            ops_per_s: m(&|r| r.ops as f64 / r.elapsed.max(1e-9)),
            txns: mo(&|r| r.txns),
            wal_syncs: mo(&|r| r.wal_syncs),
            ckpt: m(&|r| r.ckpt as f64),
            per_day: if self.workload.paced() {
                Some(written * 86400.0 / p.idle_secs)
            } else {
                None
            },
            device_per_day: device.filter(|_| self.workload.paced()).map(|d| d * 86400.0 / p.idle_secs),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting

pub(crate) fn fmt_bytes(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} B")
    } else if v < 10.0 {
        format!("{v:.2} {}", units[i])
    } else if v < 100.0 {
        format!("{v:.1} {}", units[i])
    } else {
        format!("{v:.0} {}", units[i])
    }
}

pub(crate) fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let (sign, digits) = if let Some(d) = s.strip_prefix('-') {
        ("-", d)
    } else {
        ("", s.as_str())
    };
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

pub(crate) fn fmt_ratio(r: f64, times: &str) -> String {
    if r < 10.0 {
        format!("{r:.2}{times}")
    } else if r < 100.0 {
        format!("{r:.1}{times}")
    } else {
        format!("{}{times}", thousands(r))
    }
}

pub(crate) fn fmt_rate(v: f64) -> String {
    if v >= 100.0 {
        thousands(v)
    } else {
        format!("{v:.2}")
    }
}

pub(crate) fn table(rows: &[Row], p: &Params) -> String {
    let header = [
        "workload",
        "daemon",
        "reps",
        "logical",
        "device",
        "write_bytes",
        "ratio",
        "write_bytes/op",
        "ops/s",
        "acks",
        "txns",
        "+ckpt",
        "note",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        match r.summary(p) {
            Some(s) => lines.push(vec![
                r.workload.name().into(),
                r.daemon.clone(),
                r.reps.len().to_string(),
                fmt_bytes(s.logical),
                s.device.map(fmt_bytes).unwrap_or_else(|| "n/a".into()),
                fmt_bytes(s.written),
                fmt_ratio(s.device_ratio.unwrap_or(s.ratio), "x"),
                fmt_bytes(s.per_op),
                fmt_rate(s.ops_per_s),
                r.summary_acks().map(thousands).unwrap_or_else(|| "n/a".into()),
                s.txns.map(thousands).unwrap_or_else(|| "n/a".into()),
                fmt_bytes(s.device_ckpt.unwrap_or(s.ckpt)),
                {
                    let mut note = match (s.device_per_day, s.per_day) {
                        (Some(d), Some(w)) => format!("device {}/day, write_bytes {}/day", fmt_bytes(d), fmt_bytes(w)),
                        (None, Some(w)) => format!("write_bytes {}/day", fmt_bytes(w)),
                        _ => String::new(),
                    };
                    if !r.errors.is_empty() {
                        note.push_str(&format!(" ({} failed)", r.errors.len()));
                    }
                    note.trim().to_string()
                },
            ]),
            None => lines.push(vec![
                r.workload.name().into(),
                r.daemon.clone(),
                "0".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!(
                    "FAILED: {}",
                    r.errors
                        .first()
                        .map(|e| e.lines().next().unwrap_or(""))
                        .unwrap_or("")
                ),
            ]),
        }
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in l.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            // Text columns left-aligned, numbers right-aligned.
            if c < 2 || c == header.len() - 1 {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
            line.push_str("  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            out.push('\n');
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Machine description

pub(crate) struct Machine {
    pub(crate) date: String,
    pub(crate) cores: usize,
    pub(crate) kernel: String,
    pub(crate) cpu: String,
    pub(crate) fs: String,
}

pub(crate) fn utc_date() -> String {
    let secs = unix_now() as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil from days (H. Hinnant).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Filesystem type and device of the mount holding `path` (longest mount-point prefix).
pub(crate) fn fs_of(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return "unknown".into();
    };
    let mut best: Option<(usize, String)> = None;
    for l in text.lines() {
        let Some(mp) = l.split(' ').nth(4) else {
            continue;
        };
        let mp = mp.replace("\\040", " ");
        if path.starts_with(&mp) && best.as_ref().is_none_or(|(n, _)| mp.len() >= *n) {
            let mut tail = l.split(" - ").nth(1).unwrap_or("").split(' ');
            let fstype = tail.next().unwrap_or("?");
            let dev = tail.next().unwrap_or("?");
            best = Some((mp.len(), format!("{fstype} ({dev})")));
        }
    }
    best.map(|b| b.1).unwrap_or_else(|| "unknown".into())
}

pub(crate) fn machine(base: &Path, device: bool) -> Machine {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    Machine {
        date: utc_date(),
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        cpu,
        fs: if device { "own ext4 on a loop device per instance (run dir on tmpfs)".into() } else { format!("{} {}", base.display(), fs_of(base)) },
    }
}


/// One line of the trade-off: a daemon whose W is known, its idle device bytes per day.
pub(crate) struct TradeOff {
    pub(crate) daemon: String,
    pub(crate) w_ms: Option<u64>,
    pub(crate) workload: Workload,
    pub(crate) device_per_day: Option<f64>,
    pub(crate) write_bytes_per_day: f64,
    pub(crate) txns_per_day: Option<f64>,
}

/// The idle rows, ordered by W (daemons without a known W last).
pub(crate) fn tradeoffs(rows: &[Row], cfg: &Config) -> Vec<TradeOff> {
    let mut v: Vec<TradeOff> = rows
        .iter()
        .filter(|r| r.workload.paced())
        .filter_map(|r| {
            let s = r.summary(&cfg.params)?;
            let spec = cfg.daemons.iter().find(|d| d.name == r.daemon)?;
            Some(TradeOff {
                daemon: r.daemon.clone(),
                w_ms: spec.sync_interval_ms,
                workload: r.workload,
                device_per_day: s.device_per_day,
                write_bytes_per_day: s.per_day.unwrap_or(0.0),
                txns_per_day: s.txns.map(|t| t * 86400.0 / cfg.params.idle_secs),
            })
        })
        .collect();
    v.sort_by_key(|t| (t.workload.name(), t.w_ms.unwrap_or(u64::MAX)));
    v
}

/// "W | power-cut window | device bytes/day | write_bytes/day | store txns/day" per idle row.
pub(crate) fn tradeoff_table(rows: &[Row], cfg: &Config) -> String {
    let t = tradeoffs(rows, cfg);
    if t.is_empty() {
        return String::new();
    }
    let mut out = format!("{:<15} {:<16} {:>8} {:<34} {:>14} {:>16} {:>14}\n", "workload", "daemon", "W", "a power cut loses at most", "device/day", "write_bytes/day", "store txns/day");
    for x in t {
        let (w, window) = match x.w_ms {
            Some(0) => ("0".to_string(), "nothing acknowledged".to_string()),
            Some(ms) => (format!("{} s", ms as f64 / 1000.0), format!("the last {} s of acknowledged changes", ms as f64 / 1000.0)),
            None => ("?".into(), "(not a pmxcfs-ng built-in)".into()),
        };
        out.push_str(&format!(
            "{:<15} {:<16} {:>8} {:<34} {:>14} {:>16} {:>14}\n",
            x.workload.name(),
            x.daemon,
            w,
            window,
            x.device_per_day.map(fmt_bytes).unwrap_or_else(|| "n/a".into()),
            fmt_bytes(x.write_bytes_per_day),
            x.txns_per_day.map(thousands).unwrap_or_else(|| "n/a".into())
        ));
    }
    out
}
