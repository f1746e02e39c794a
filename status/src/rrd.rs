//! RRD status handling (`status.c`: `rrdentry_hash_set`, `update_rrd_data`,
//! `create_rrd_file`, `cfs_rrd_dump`).
//!
//! Three independent pieces:
//!
//! * [`RrdStore`]: the table of the latest `rrd/<key>` value per key with its receive time,
//!   and the `.rrd` / `GET_RRD_DUMP` text (`<key>:<data>\n` for entries at most 300 s old),
//!   cached for 2 s. A freshly generated dump is sent over IPC with a trailing NUL, a cached
//!   one without ([`RrdDump`]).
//! * [`RrdTarget`] / [`plan_update`]: key parsing (node, VM and storage keys in the old and
//!   the 9.0 formats), the RRD file path under a configurable base directory, and the
//!   column adjustment of the value string (skip live columns, pad old formats with `:U`,
//!   cut unknown newer formats to the known column count). Pure functions.
//! * [`RrdUpdater`] with an [`RrdBackend`]: creates missing files (step 60, start = local
//!   midnight, the DS/RRA definitions of [`RrdKind`]) and applies updates. [`RrdTool`] talks
//!   to rrdcached's socket when it exists and falls back to the `rrdtool` binary; tests use a
//!   recording fake.
//!
//! The original updates RRD files synchronously under the status mutex; callers may do the
//! same or hand the [`RrdUpdatePlan`] to a worker.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pmxcfs_dfsm::wire::cstr_prefix;

/// Where the original keeps its RRD files.
pub const RRD_DEFAULT_DIR: &str = "/var/lib/rrdcached/db";
/// rrdcached's socket as the original uses it.
pub const RRDCACHED_SOCKET: &str = "/var/run/rrdcached.sock";
/// RRD step in seconds.
pub const RRD_STEP: u32 = 60;
/// Entries older than this many seconds are dropped from the dump.
pub const RRD_ENTRY_MAX_AGE: i64 = 300;
/// A dump is reused while it is younger than this many seconds.
pub const RRD_DUMP_CACHE_SECS: i64 = 2;
/// Values must be shorter than this (including their NUL).
pub const RRD_MAX_DATA_LEN: usize = 4096;

/// RRA definitions shared by all three file kinds.
pub const RRA_DEFS: [&str; 8] = [
    "RRA:AVERAGE:0.5:1:1440",
    "RRA:AVERAGE:0.5:30:1440",
    "RRA:AVERAGE:0.5:360:1440",
    "RRA:AVERAGE:0.5:10080:570",
    "RRA:MAX:0.5:1:1440",
    "RRA:MAX:0.5:30:1440",
    "RRA:MAX:0.5:360:1440",
    "RRA:MAX:0.5:10080:570",
];

const NODE_DS: [&str; 19] = [
    "DS:loadavg:GAUGE:120:0:U",
    "DS:maxcpu:GAUGE:120:0:U",
    "DS:cpu:GAUGE:120:0:U",
    "DS:iowait:GAUGE:120:0:U",
    "DS:memtotal:GAUGE:120:0:U",
    "DS:memused:GAUGE:120:0:U",
    "DS:swaptotal:GAUGE:120:0:U",
    "DS:swapused:GAUGE:120:0:U",
    "DS:roottotal:GAUGE:120:0:U",
    "DS:rootused:GAUGE:120:0:U",
    "DS:netin:DERIVE:120:0:U",
    "DS:netout:DERIVE:120:0:U",
    "DS:memavailable:GAUGE:120:0:U",
    "DS:arcsize:GAUGE:120:0:U",
    "DS:pressurecpusome:GAUGE:120:0:U",
    "DS:pressureiosome:GAUGE:120:0:U",
    "DS:pressureiofull:GAUGE:120:0:U",
    "DS:pressurememorysome:GAUGE:120:0:U",
    "DS:pressurememoryfull:GAUGE:120:0:U",
];

const VM_DS: [&str; 17] = [
    "DS:maxcpu:GAUGE:120:0:U",
    "DS:cpu:GAUGE:120:0:U",
    "DS:maxmem:GAUGE:120:0:U",
    "DS:mem:GAUGE:120:0:U",
    "DS:maxdisk:GAUGE:120:0:U",
    "DS:disk:GAUGE:120:0:U",
    "DS:netin:DERIVE:120:0:U",
    "DS:netout:DERIVE:120:0:U",
    "DS:diskread:DERIVE:120:0:U",
    "DS:diskwrite:DERIVE:120:0:U",
    "DS:memhost:GAUGE:120:0:U",
    "DS:pressurecpusome:GAUGE:120:0:U",
    "DS:pressurecpufull:GAUGE:120:0:U",
    "DS:pressureiosome:GAUGE:120:0:U",
    "DS:pressureiofull:GAUGE:120:0:U",
    "DS:pressurememorysome:GAUGE:120:0:U",
    "DS:pressurememoryfull:GAUGE:120:0:U",
];

const STORAGE_DS: [&str; 2] = ["DS:total:GAUGE:120:0:U", "DS:used:GAUGE:120:0:U"];

/// Errors of the RRD module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RrdError {
    #[error("invalid RRD data: {0}")]
    InvalidData(&'static str),
    #[error("RRD update error: unknown/wrong key {0}")]
    BadKey(String),
    #[error("RRD I/O error on {path}: {msg}")]
    Io { path: PathBuf, msg: String },
    #[error("rrdtool failed ({status}): {stderr}")]
    Tool { status: String, stderr: String },
    #[error("rrdcached error: {0}")]
    Daemon(String),
}

impl RrdError {
    /// errno for IPC `SET_STATUS`: invalid data is reported as ENOMEM like the original;
    /// the other errors never reach an IPC client there (the original only logs them).
    pub fn errno(&self) -> i32 {
        match self {
            RrdError::InvalidData(_) => libc::ENOMEM,
            RrdError::BadKey(_) => libc::EINVAL,
            RrdError::Io { .. } | RrdError::Tool { .. } | RrdError::Daemon(_) => libc::EIO,
        }
    }
}

/// Validate an RRD value (`0 < len < 4096`, last byte NUL) and return its text (before
/// the first NUL).
pub fn validate_data(data: &[u8]) -> Result<&[u8], RrdError> {
    if data.is_empty() {
        return Err(RrdError::InvalidData("empty"));
    }
    if data.len() >= RRD_MAX_DATA_LEN {
        return Err(RrdError::InvalidData("4096 bytes or more"));
    }
    if data[data.len() - 1] != 0 {
        return Err(RrdError::InvalidData("not NUL-terminated"));
    }
    Ok(cstr_prefix(data))
}

/// The three kinds of RRD files (only the 9.0 formats are written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RrdKind {
    Node,
    Vm,
    Storage,
}

impl RrdKind {
    /// Directory below the RRD base directory.
    pub fn dir_name(self) -> &'static str {
        match self {
            RrdKind::Node => "pve-node-9.0",
            RrdKind::Vm => "pve-vm-9.0",
            RrdKind::Storage => "pve-storage-9.0",
        }
    }

    /// `DS:` definitions, in column order.
    pub fn data_sources(self) -> &'static [&'static str] {
        match self {
            RrdKind::Node => &NODE_DS,
            RrdKind::Vm => &VM_DS,
            RrdKind::Storage => &STORAGE_DS,
        }
    }

    /// Number of data columns of the 9.0 format (19, 17, 2).
    pub fn columns(self) -> usize {
        self.data_sources().len()
    }

    /// All create definitions: the DS list, then [`RRA_DEFS`].
    pub fn create_defs(self) -> Vec<&'static str> {
        self.data_sources()
            .iter()
            .chain(RRA_DEFS.iter())
            .copied()
            .collect()
    }
}

/// How the value columns are adjusted to the 9.0 format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnAdjust {
    /// Already the 9.0 layout.
    None,
    /// Old format: append this many `:U` columns.
    Pad(usize),
    /// Unknown (newer) format: keep the timestamp and this many data columns.
    Keep(usize),
}

/// A parsed RRD key (the status key without `rrd/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrdTarget {
    pub kind: RrdKind,
    /// Node name, VMID, or `<node>/<storage>`.
    pub id: String,
    /// Leading live columns dropped before the timestamp (2 node, 4 VM, 0 storage).
    pub skip: usize,
    pub adjust: ColumnAdjust,
}

fn plain_id(id: &str) -> bool {
    !id.is_empty() && !id.contains('/') && id != "." && id != ".."
}

/// One family of RRD keys: the pre-9.0 prefix and the versioned `pve-<kind>-<ver>/` one.
struct KeyFamily {
    kind: RrdKind,
    /// Leading live columns dropped before the timestamp.
    skip: usize,
    legacy: &'static str,
    /// Data columns of a legacy row, padded up to the 9.0 layout (`None`: not padded).
    legacy_columns: Option<usize>,
    versioned: &'static str,
}

const KEY_FAMILIES: [KeyFamily; 3] = [
    KeyFamily {
        kind: RrdKind::Node,
        skip: 2,
        legacy: "pve2-node/",
        legacy_columns: Some(12),
        versioned: "pve-node-",
    },
    KeyFamily {
        kind: RrdKind::Vm,
        skip: 4,
        legacy: "pve2.3-vm/",
        legacy_columns: Some(10),
        versioned: "pve-vm-",
    },
    KeyFamily {
        kind: RrdKind::Storage,
        skip: 0,
        legacy: "pve2-storage/",
        legacy_columns: None,
        versioned: "pve-storage-",
    },
];

impl KeyFamily {
    /// How the columns of `key`'s rows are adjusted; `None` when `key` is not of this family.
    fn adjust(&self, key: &str) -> Option<ColumnAdjust> {
        let columns = self.kind.columns();
        if key.starts_with(self.legacy) {
            return Some(
                self.legacy_columns
                    .map_or(ColumnAdjust::None, |n| ColumnAdjust::Pad(columns - n)),
            );
        }
        let version = key.strip_prefix(self.versioned)?;
        Some(if version.starts_with("9.0/") {
            ColumnAdjust::None
        } else {
            ColumnAdjust::Keep(columns)
        })
    }
}

impl RrdTarget {
    /// Parse `pve2-node/<node>`, `pve-node-<ver>/<node>`, `pve2.3-vm/<vmid>`,
    /// `pve-vm-<ver>/<vmid>`, `pve2-storage/<node>/<storage>`,
    /// `pve-storage-<ver>/<node>/<storage>`. Ids must be non-empty and must not contain `/`
    /// (nor be `.`/`..`); anything else is [`RrdError::BadKey`].
    pub fn parse(key: &str) -> Result<RrdTarget, RrdError> {
        let bad = || RrdError::BadKey(key.to_string());
        let id = key.split_once('/').map(|(_, id)| id).unwrap_or("");
        let (family, adjust) = KEY_FAMILIES
            .iter()
            .find_map(|f| f.adjust(key).map(|a| (f, a)))
            .ok_or_else(bad)?;
        let (kind, skip) = (family.kind, family.skip);
        let ok = match kind {
            RrdKind::Storage => id
                .split_once('/')
                .is_some_and(|(n, s)| plain_id(n) && plain_id(s)),
            _ => plain_id(id),
        };
        if !ok {
            return Err(bad());
        }
        Ok(RrdTarget {
            kind,
            id: id.to_string(),
            skip,
            adjust,
        })
    }

    /// `<base>/<pve-kind-9.0>/<id>`.
    pub fn file_path(&self, base: &Path) -> PathBuf {
        base.join(self.kind.dir_name()).join(&self.id)
    }

    /// The rrd update string for a posted value: drop `skip` leading fields, then pad or cut.
    pub fn update_values(&self, data: &str) -> String {
        let mut rest = data;
        for _ in 0..self.skip {
            rest = rest.split_once(':').map(|(_, r)| r).unwrap_or("");
        }
        match self.adjust {
            ColumnAdjust::None => rest.to_string(),
            ColumnAdjust::Pad(n) => format!("{rest}{}", ":U".repeat(n)),
            ColumnAdjust::Keep(n) => {
                // timestamp + n columns; the original also chops the last character when
                // there are not more columns than that (a bug not reproduced here)
                match rest.match_indices(':').nth(n) {
                    Some((pos, _)) => rest[..pos].to_string(),
                    None => rest.to_string(),
                }
            }
        }
    }
}

/// One RRD file update, computed from a key and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrdUpdatePlan {
    pub kind: RrdKind,
    pub file: PathBuf,
    /// The argument for `rrdtool update` / rrdcached `UPDATE` (timestamp first).
    pub values: String,
}

/// Validate `data` and compute the file update for `key` (without `rrd/`).
pub fn plan_update(base: &Path, key: &str, data: &[u8]) -> Result<RrdUpdatePlan, RrdError> {
    let text = validate_data(data)?;
    let target = RrdTarget::parse(key)?;
    let text = String::from_utf8_lossy(text);
    Ok(RrdUpdatePlan {
        kind: target.kind,
        file: target.file_path(base),
        values: target.update_values(&text),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RrdEntry {
    data: Vec<u8>,
    time: i64,
}

/// Result of [`RrdStore::dump`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrdDump {
    /// `<key>:<data>\n` lines, without any NUL.
    pub text: Vec<u8>,
    /// True when generated now, false when served from the 2-s cache.
    pub fresh: bool,
}

impl RrdDump {
    /// The IPC `GET_RRD_DUMP` body: the text plus a NUL when freshly generated (the
    /// original appends the NUL only to a new dump, not to the cached copy).
    pub fn ipc_body(&self) -> Vec<u8> {
        let mut b = self.text.clone();
        if self.fresh {
            b.push(0);
        }
        b
    }

    /// The `.rrd` file content (never shows a NUL).
    pub fn file_text(&self) -> &[u8] {
        &self.text
    }
}

/// Latest RRD value per key plus the cached dump.
#[derive(Debug, Clone, Default)]
pub struct RrdStore {
    entries: HashMap<String, RrdEntry>,
    cache: Option<(i64, Vec<u8>)>,
}

impl RrdStore {
    pub fn new() -> RrdStore {
        RrdStore::default()
    }

    /// Store a value received at `now` (epoch seconds). The data must be valid
    /// ([`validate_data`]); the key is *not* checked here, as in the original, where a value
    /// with an unknown key still shows up in the dump.
    pub fn set(&mut self, key: &str, data: &[u8], now: i64) -> Result<(), RrdError> {
        validate_data(data)?;
        self.entries.insert(
            key.to_string(),
            RrdEntry {
                data: data.to_vec(),
                time: now,
            },
        );
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The stored value text for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries.get(key).map(|e| cstr_prefix(&e.data))
    }

    /// `.rrd` / `GET_RRD_DUMP` at time `now`.
    ///
    /// If the previous dump is less than 2 s old it is returned again (`fresh == false`),
    /// even if values changed since. Otherwise entries more than 300 s old are removed and
    /// a new dump is built, sorted by key, and cached. A clock that went backwards
    /// invalidates the cache (the original would keep serving the old dump).
    pub fn dump(&mut self, now: i64) -> RrdDump {
        if let Some((last, text)) = &self.cache {
            if now >= *last && now - *last < RRD_DUMP_CACHE_SECS {
                return RrdDump {
                    text: text.clone(),
                    fresh: false,
                };
            }
        }
        self.entries
            .retain(|_, e| now - e.time <= RRD_ENTRY_MAX_AGE);
        let mut keys: Vec<&String> = self.entries.keys().collect();
        keys.sort_unstable();
        let mut text = Vec::new();
        for k in keys {
            let e = &self.entries[k];
            text.extend_from_slice(k.as_bytes());
            text.push(b':');
            text.extend_from_slice(cstr_prefix(&e.data));
            text.push(b'\n');
        }
        self.cache = Some((now, text.clone()));
        RrdDump { text, fresh: true }
    }
}

/// Local midnight of the day containing `now` (epoch seconds), via the C library's
/// time zone handling (`localtime_r` + `mktime`, as the original uses `timelocal`).
pub fn local_midnight(now: i64) -> i64 {
    let t = now as libc::time_t;
    // SAFETY: localtime_r and mktime only access the tm we pass; tm is plain data.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return now - now.rem_euclid(86400);
        }
        tm.tm_sec = 0;
        tm.tm_min = 0;
        tm.tm_hour = 0;
        let r = libc::mktime(&mut tm);
        if r == -1 {
            now - now.rem_euclid(86400)
        } else {
            r as i64
        }
    }
}

/// Where RRD files are created and updated.
pub trait RrdBackend {
    /// Whether the RRD file exists already.
    fn exists(&self, file: &Path) -> bool {
        file.exists()
    }
    /// Create `file` (and its directories) with step [`RRD_STEP`], the given start time and
    /// `kind.create_defs()`.
    fn create(&mut self, file: &Path, start: i64, kind: RrdKind) -> Result<(), RrdError>;
    /// Apply one update string (`<timestamp>:<v1>:...`).
    fn update(&mut self, file: &Path, values: &str) -> Result<(), RrdError>;
}

/// Applies [`RrdUpdatePlan`]s through a backend: create the file when missing, then update.
#[derive(Debug)]
pub struct RrdUpdater<B: RrdBackend> {
    backend: B,
}

impl<B: RrdBackend> RrdUpdater<B> {
    pub fn new(backend: B) -> Self {
        RrdUpdater { backend }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Create the file if it does not exist (start = local midnight of `now`); a create
    /// failure is logged and the update is still attempted, as in the original.
    pub fn apply(&mut self, plan: &RrdUpdatePlan, now: i64) -> Result<(), RrdError> {
        if !self.backend.exists(&plan.file) {
            if let Err(e) = self
                .backend
                .create(&plan.file, local_midnight(now), plan.kind)
            {
                tracing::warn!("RRD create error {}: {e}", plan.file.display());
            }
        }
        self.backend.update(&plan.file, &plan.values)
    }
}

/// The real backend: rrdcached over its unix socket when the socket exists, else (and on
/// any rrdcached error) the `rrdtool` binary. Files are always created with `rrdtool
/// create`, directories with mode 0750.
#[derive(Debug)]
pub struct RrdTool {
    socket: Option<PathBuf>,
    rrdtool: PathBuf,
    timeout: Duration,
    conn: Option<BufReader<UnixStream>>,
}

impl Default for RrdTool {
    fn default() -> Self {
        RrdTool::new(
            Some(PathBuf::from(RRDCACHED_SOCKET)),
            PathBuf::from("rrdtool"),
        )
    }
}

impl RrdTool {
    /// `socket`: rrdcached's unix socket (None: never use rrdcached); `rrdtool`: the binary.
    pub fn new(socket: Option<PathBuf>, rrdtool: PathBuf) -> RrdTool {
        RrdTool {
            socket,
            rrdtool,
            timeout: Duration::from_secs(5),
            conn: None,
        }
    }

    fn daemon_update(&mut self, sock: &Path, file: &Path, values: &str) -> Result<(), RrdError> {
        let derr = |e: std::io::Error| RrdError::Daemon(e.to_string());
        if self.conn.is_none() {
            let s = UnixStream::connect(sock).map_err(derr)?;
            s.set_read_timeout(Some(self.timeout)).map_err(derr)?;
            s.set_write_timeout(Some(self.timeout)).map_err(derr)?;
            self.conn = Some(BufReader::new(s));
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(RrdError::Daemon("not connected".into()));
        };
        let line = format!("UPDATE {} {}\n", file.display(), values);
        conn.get_mut().write_all(line.as_bytes()).map_err(derr)?;
        let mut resp = String::new();
        if conn.read_line(&mut resp).map_err(derr)? == 0 {
            return Err(RrdError::Daemon("connection closed".into()));
        }
        // "<status> <message>": status < 0 is an error, > 0 announces that many more lines
        let status: i64 = resp
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| RrdError::Daemon(format!("bad response {resp:?}")))?;
        for _ in 0..status.clamp(0, 1000) {
            let mut extra = String::new();
            if conn.read_line(&mut extra).map_err(derr)? == 0 {
                break;
            }
        }
        if status < 0 {
            return Err(RrdError::Daemon(resp.trim_end().to_string()));
        }
        Ok(())
    }

    fn run(&self, args: &[&std::ffi::OsStr]) -> Result<(), RrdError> {
        let out = Command::new(&self.rrdtool)
            .args(args)
            .output()
            .map_err(|e| RrdError::Io {
                path: self.rrdtool.clone(),
                msg: e.to_string(),
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(RrdError::Tool {
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
            })
        }
    }
}

fn mkdir_0750(dir: &Path) -> Result<(), RrdError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|e| RrdError::Io {
            path: dir.to_path_buf(),
            msg: e.to_string(),
        })
}

impl RrdBackend for RrdTool {
    fn create(&mut self, file: &Path, start: i64, kind: RrdKind) -> Result<(), RrdError> {
        if let Some(dir) = file.parent() {
            mkdir_0750(dir)?;
        }
        let step = RRD_STEP.to_string();
        let start = start.to_string();
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "create".as_ref(),
            file.as_os_str(),
            "--no-overwrite".as_ref(),
            "--step".as_ref(),
            step.as_ref(),
            "--start".as_ref(),
            start.as_ref(),
        ];
        let defs = kind.create_defs();
        args.extend(defs.iter().map(|d| std::ffi::OsStr::new(*d)));
        self.run(&args)
    }

    fn update(&mut self, file: &Path, values: &str) -> Result<(), RrdError> {
        if let Some(sock) = self.socket.clone().filter(|s| s.exists()) {
            match self.daemon_update(&sock, file, values) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!("RRDC update error {}: {e}", file.display());
                    self.conn = None;
                }
            }
        }
        self.run(&[
            "update".as_ref(),
            file.as_os_str(),
            "--".as_ref(),
            values.as_ref(),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defs_have_expected_columns() {
        assert_eq!(RrdKind::Node.columns(), 19);
        assert_eq!(RrdKind::Vm.columns(), 17);
        assert_eq!(RrdKind::Storage.columns(), 2);
        assert_eq!(RrdKind::Storage.create_defs().len(), 10);
    }

    #[test]
    fn midnight_is_before_now_and_within_a_day() {
        let now = 1_795_350_139;
        let m = local_midnight(now);
        assert!(m <= now && now - m < 86400 + 3600, "{m}");
    }
}
