//! Command line: the original's flags (`-f -d -l`) plus test/install overrides.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// pmxcfs-ng — the Proxmox cluster configuration filesystem, without write amplification.
#[derive(Debug, Parser)]
#[command(name = "pmxcfs", version, about, long_about = None)]
pub struct Cli {
    /// Turn on debug messages (also switchable at runtime through /etc/pve/.debug).
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,

    /// Do not daemonize: stay in the foreground and log to stderr.
    #[arg(short = 'f', long = "foreground")]
    pub foreground: bool,

    /// Force local mode (ignore corosync.conf, force quorum).
    #[arg(short = 'l', long = "local")]
    pub local: bool,

    /// Relocate every default path under DIR (DIR/etc/pve, DIR/var/lib/pve-cluster, DIR/run/pve-cluster, …).
    #[arg(long = "root", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Node name to use instead of the short host name.
    #[arg(long = "nodename", value_name = "NAME")]
    pub nodename: Option<String>,

    /// Power-cut window W: an acknowledged change (kept in the crash record on the run
    /// directory's tmpfs, safe from a daemon crash at once) reaches config.db durably at most
    /// MS milliseconds later, in one store transaction with everything else changed meanwhile.
    /// 0 = durable before every system call returns. fsync(2) makes everything durable at once.
    #[arg(long = "sync-interval", alias = "commit-delay", value_name = "MS", default_value_t = 30_000)]
    pub sync_interval_ms: u64,

    /// Keep config.db shared with other processes all the time (SQLite's normal locking, the
    /// WAL index in config.db-shm, as the original). By default it is locked exclusively
    /// while no other process has it open - its WAL index then never reaches the disk - and
    /// shared from the moment another process opens it until 10 minutes after the last did.
    #[arg(long = "shared-db")]
    pub shared_db: bool,

    /// How long config.db stays shared after another process last opened it (seconds).
    #[arg(long = "shared-db-hold", value_name = "S", default_value_t = pmxcfs_backend::db_sharing::SHARED_HOLD.as_secs(), hide = true)]
    pub shared_db_hold_s: u64,

    /// Serve requests over FUSE's io_uring transport (one queue per CPU, answered on the
    /// caller's CPU) when the kernel offers it (Linux 6.14+ with the fuse module parameter
    /// enable_uring=1); otherwise, or with --no-io-uring, over /dev/fuse alone.
    #[arg(long = "no-io-uring")]
    pub no_io_uring: bool,

    /// libqb IPC service name (the original's `pve2`; tests run several daemons side by side).
    #[arg(long = "ipc-name", value_name = "NAME", default_value = "pve2")]
    pub ipc_name: String,

    /// Seconds between the cluster-wide checksum verifications (the original: 3600).
    #[arg(long = "verify-interval", value_name = "SECS", default_value_t = 3600, hide = true)]
    pub verify_interval: u32,

    /// Test hook: hold the first cmap answer back for MS milliseconds (CPG may come first).
    #[arg(long = "cmap-delay", value_name = "MS", default_value_t = 0, hide = true)]
    pub cmap_delay_ms: u64,

    /// This node's IP address as published (`nodeip`), instead of resolving the node name.
    #[arg(long = "node-ip", value_name = "ADDR", hide = true)]
    pub node_ip: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Offline tools (no mount, no daemon).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Internal: the daemon's helper that holds other processes' opens of config.db while
    /// the daemon leaves exclusive locking (pmxcfs_backend::open_gate).
    #[command(hide = true)]
    OpenGateHelper { db: PathBuf, daemon_pid: i32 },
    /// Check a database: integrity, load rules, duplicate VMIDs; print version and checksum.
    Check {
        /// Database file (default: the config.db under --root or /var/lib/pve-cluster).
        #[arg(long = "db", value_name = "FILE")]
        db: Option<PathBuf>,
    },
    /// List the files of a database, or print one file's contents.
    Dump {
        /// Database file (default: the config.db under --root or /var/lib/pve-cluster).
        #[arg(long = "db", value_name = "FILE")]
        db: Option<PathBuf>,
        /// Path inside the tree to print (omit to list everything).
        path: Option<String>,
    },
    /// Write a new database holding every valid entry of a broken one; list what was dropped.
    Repair {
        /// Database file to repair (read only; default: the config.db under --root or /var/lib/pve-cluster).
        #[arg(long = "db", value_name = "FILE")]
        db: Option<PathBuf>,
        /// New database file to write (must not exist).
        #[arg(long = "out", value_name = "NEW")]
        out: PathBuf,
    },
}
