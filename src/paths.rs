//! Every path the daemon touches, with the original's defaults, relocatable under `--root`.

use std::path::{Path, PathBuf};

/// The daemon's file-system locations.
#[derive(Debug, Clone)]
pub struct Paths {
    pub mountpoint: PathBuf,
    pub var_lib: PathBuf,
    pub db_file: PathBuf,
    pub lock_file: PathBuf,
    pub run_dir: PathBuf,
    pub restart_flag: PathBuf,
    pub pid_file: PathBuf,
    pub stats_file: PathBuf,
    #[allow(dead_code)] // used by cluster mode
    pub corosync_conf: PathBuf,
    pub rrd_dir: PathBuf,
    pub rrdcached_socket: PathBuf,
}

impl Paths {
    /// Defaults of the original, below `root` (`/` for a real installation).
    pub fn under(root: &Path) -> Paths {
        let r = |p: &str| root.join(p.trim_start_matches('/'));
        Paths {
            mountpoint: r("/etc/pve"),
            var_lib: r("/var/lib/pve-cluster"),
            db_file: r("/var/lib/pve-cluster/config.db"),
            lock_file: r("/var/lib/pve-cluster/.pmxcfs.lockfile"),
            run_dir: r("/run/pve-cluster"),
            restart_flag: r("/run/pve-cluster/cfs-restart-flag"),
            pid_file: r("/run/pve-cluster.pid"),
            stats_file: r("/run/pve-cluster/pmxcfs-ng.stats"),
            corosync_conf: r("/etc/corosync/corosync.conf"),
            rrd_dir: r("/var/lib/rrdcached/db"),
            rrdcached_socket: r("/var/run/rrdcached.sock"),
        }
    }
}
