//! The daemon's life: prepare paths, daemonize, lock, load the database, mount, serve,
//! and on SIGTERM/SIGINT unmount, commit and leave (spec §1.3–1.4).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pmxcfs_backend::db_sharing::SharingOptions;
use pmxcfs_backend::{ChangeSink, Database, DatabaseOptions, LocalSink};
use pmxcfs_fuse::{mount_options, FsConfig, FsCounters, PendingCommitter, PmxcfsFs};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use tracing::{error, info, warn};

use crate::cli::Cli;
use pmxcfs_cluster::corosync_conf;
use pmxcfs_cluster::services::{ClusterOptions, ClusterServices};
use crate::daemonize::{self, ReadySignal};
use crate::instance_lock;
use crate::ipc_handler::DaemonIpc;
use pmxcfs_ipc::IpcServer;
use crate::logging;
use crate::paths::Paths;
use crate::sd_notify;
use crate::stats;
use pmxcfs_status::node::Status;
use crate::status_files::StatusFiles;

/// Exit status of error paths (the original's `exit(-1)`).
const EXIT_FAIL: i32 = 255;

fn short_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.split('.').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn www_data_gid() -> Option<u32> {
    nix::unistd::Group::from_name("www-data").ok().flatten().map(|g| g.gid.as_raw())
}

/// Creates `path` with `mode`; missing ancestors (DIR/etc, DIR/var/lib under `--root`) get
/// 0755 like /etc and /var/lib, whatever the umask, so non-root users can reach the mount.
fn mkdir_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let missing: Vec<&Path> = path.ancestors().skip(1).take_while(|a| !a.as_os_str().is_empty() && !a.exists()).collect();
    for dir in missing.into_iter().rev() {
        std::fs::create_dir(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::create_dir(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn is_mounted(mountpoint: &Path) -> bool {
    let want = mountpoint.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(want.as_str())))
        .unwrap_or(false)
}

fn clear_stale_mount(mountpoint: &Path) {
    if is_mounted(mountpoint) {
        warn!(target: "main", "clearing stale mount on '{}'", mountpoint.display());
        if nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_FORCE).is_err() {
            let _ = nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn write_restart_flag(paths: &Paths, gid: u32) {
    if std::fs::write(&paths.restart_flag, b"").is_ok() {
        let _ = std::fs::set_permissions(&paths.restart_flag, std::fs::Permissions::from_mode(0o440));
        let _ = nix::unistd::chown(&paths.restart_flag, Some(0.into()), Some(gid.into()));
    }
}

/// Runs the daemon; returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    let log = logging::init(cli.debug);
    let root = cli.root.clone().unwrap_or_else(|| "/".into());
    let paths = Paths::under(&root);
    let nodename = cli.nodename.clone().unwrap_or_else(short_hostname);
    if !pmxcfs_backend::path::valid_nodename(&nodename) {
        error!(target: "main", "invalid node name '{nodename}'");
        return EXIT_FAIL;
    }
    let Some(gid) = www_data_gid() else {
        error!(target: "main", "unable to get 'www-data' group ID");
        return EXIT_FAIL;
    };
    // SAFETY: umask only changes this process's file creation mask.
    unsafe { libc::umask(0o027) };
    for (dir, mode) in [(&paths.var_lib, 0o750), (&paths.run_dir, 0o750)] {
        if let Err(e) = mkdir_mode(dir, mode) {
            error!(target: "main", "unable to create directory '{}': {e}", dir.display());
            return EXIT_FAIL;
        }
    }
    let _ = nix::unistd::chown(&paths.run_dir, Some(0.into()), Some(gid.into()));

    let mut ready = if cli.foreground { ReadySignal::none() } else { daemonize::daemonize(&paths.pid_file) };
    if !cli.foreground {
        logging::enable_syslog(&log);
    }

    let _lock = match instance_lock::acquire(&paths.lock_file, 11) {
        Ok(l) => l,
        Err(e) => {
            error!(target: "main", "{e}");
            return EXIT_FAIL;
        }
    };

    // The crash record lives in the run directory: a tmpfs on a real node, so it survives a
    // daemon crash and costs the SSD nothing (docs/crash-safety.md).
    let options = DatabaseOptions { sync_interval: Duration::from_millis(cli.sync_interval_ms), record_dir: Some(paths.run_dir.clone()), exclusive_when_alone: (!cli.shared_db).then(|| SharingOptions { gate_helper: std::env::current_exe().ok(), hold: Duration::from_secs(cli.shared_db_hold_s) }),
    };
    let new_db = !paths.db_file.exists();
    let db = match Database::open(&paths.db_file, options) {
        Ok(db) => Arc::new(db),
        Err(e) => {
            error!(target: "main", "memdb_open failed - {e}");
            return EXIT_FAIL;
        }
    };
    if new_db && !cli.local {
        if let Err(e) = corosync_conf::import_into_new_db(&db, &paths.corosync_conf) {
            error!(target: "main", "memdb_write failed - unable to import corosync.conf: {e}");
            return EXIT_FAIL;
        }
    }
    // The database is open and the crash record replayed. Leftovers of files that were still
    // open at a crash (fuse/src/crash_copy.rs) are committed below, once the sink exists and
    // before anything is mounted (cluster mode: once quorate).
    let has_corosync_conf = db.tree().lookup("corosync.conf").is_some();
    let cluster_mode = has_corosync_conf && !cli.local;
    if has_corosync_conf && cli.local {
        info!(target: "main", "forcing local mode (although corosync.conf exists)");
    } else if !has_corosync_conf {
        info!(target: "main", "using local mode (corosync.conf does not exist)");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let maintenance = db.spawn_maintenance(stop.clone());
    let start_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let status = Arc::new(Status::new(&nodename, &paths.rrd_dir, Some(paths.rrdcached_socket.clone()), start_time));
    let mut cluster = None;
    let sink: Arc<dyn ChangeSink> = if cluster_mode {
        status.quorate.store(false, Ordering::SeqCst);
        let opts = ClusterOptions {
            host_corosync_conf: paths.corosync_conf.clone(),
            verify_interval: cli.verify_interval,
            cmap_delay: Duration::from_millis(cli.cmap_delay_ms),
            node_ip: cli.node_ip.clone(),
        };
        match ClusterServices::start(db.clone(), status.clone(), opts) {
            Ok(c) => {
                info!(target: "main", "cluster mode: joining corosync process groups");
                let sink = c.sink.clone();
                cluster = Some(c);
                sink
            }
            Err(e) => {
                error!(target: "main", "unable to start cluster services: {e}");
                return EXIT_FAIL;
            }
        }
    } else {
        Arc::new(LocalSink { db: db.clone() })
    };
    let files = Arc::new(StatusFiles { status: status.clone(), db: db.clone(), log: log.clone() });
    let files_for_ipc = files.clone();

    clear_stale_mount(&paths.mountpoint);
    if let Err(e) = mkdir_mode(&paths.mountpoint, 0o750) {
        error!(target: "main", "unable to create mount point '{}': {e}", paths.mountpoint.display());
        return EXIT_FAIL;
    }
    let counters = Arc::new(FsCounters::default());
    // Content that open files held when an earlier run died (crash copies): committed
    // before the mount serves anyone (cluster mode: once quorate).
    let crash_copy_dir = paths.run_dir.join("open-files");
    pmxcfs_fuse::recovery::recover_when_writable(crash_copy_dir.clone(), db.clone(), sink.clone(), Duration::from_secs(600));
    let fs = PmxcfsFs::new(FsConfig {
        nodename,
        gid,
        db: db.clone(),
        sink,
        virtual_files: files,
        counters: counters.clone(),
        crash_copy_dir: Some(crash_copy_dir),
        pending_cap: pmxcfs_fuse::DEFAULT_PENDING_CAP,
        io_uring: !cli.no_io_uring,
    });
    let committer = fs.committer();
    let ring_setup = fs.ring_setup();
    let mut session = match pmxcfs_fuse::Session::new(fs, &paths.mountpoint, &mount_options()) {
        Ok(s) => s,
        Err(e) => {
            error!(target: "main", "fuse_mount error on '{}': {e}", paths.mountpoint.display());
            return EXIT_FAIL;
        }
    };
    match std::os::fd::AsFd::as_fd(&session).try_clone_to_owned() {
        Ok(fd) => ring_setup.set_device(fd),
        Err(e) => warn!(target: "fuse", "io_uring not used: {e}"),
    }
    spawn_signal_thread(session.unmount_callable(), paths.clone(), db.clone(), counters, gid, committer.clone());
    let handler = Arc::new(DaemonIpc {
        files: files_for_ipc,
        status: status.clone(),
        db: db.clone(),
        kvstore: cluster.as_ref().map(|c| c.kvstore.clone()),
    });
    let mut ipc = match IpcServer::start(&cli.ipc_name, handler, gid) {
        Ok(s) => Some(s),
        Err(e) => {
            error!(target: "ipcs", "unable to start IPC service '{}': {e} - continuing without it", cli.ipc_name);
            None
        }
    };

    let _ = std::fs::remove_file(&paths.restart_flag);
    if cli.foreground {
        if let Err(e) = daemonize::write_pid_file(&paths.pid_file, std::process::id()) {
            warn!(target: "main", "unable to write pid file '{}': {e}", paths.pid_file.display());
        }
    }
    info!(target: "main", "mounted pmxcfs-ng on '{}' (database '{}')", paths.mountpoint.display(), paths.db_file.display());
    ready.ready();
    sd_notify::notify(&format!("READY=1\nMAINPID={}", std::process::id()));
    if !cli.foreground {
        daemonize::detach_stdio();
        log.stderr.store(false, Ordering::SeqCst);
    }

    let served = session.run();
    sd_notify::notify("STOPPING=1");
    write_restart_flag(&paths, gid);
    info!(target: "main", "teardown filesystem");
    if let Some(s) = ipc.as_mut() {
        s.stop();
    }
    drop(session);
    // the io_uring queues end with the connection; a handler still running finishes first
    ring_setup.wait_stopped(Duration::from_secs(5));
    // every open file's pending content, before the cluster services and the store go
    if let Err(e) = committer.commit_all() {
        error!(target: "main", "unable to commit the content of open files: {e}");
    }
    if let Some(c) = &cluster {
        c.shutdown();
    }
    stop.store(true, Ordering::SeqCst);
    let _ = maintenance.join();
    let commit = db.close();
    let _ = std::fs::remove_file(&paths.pid_file);
    let code = match (&served, &commit) {
        (Ok(()), Ok(())) => 0,
        (Err(e), _) => {
            error!(target: "main", "fuse loop failed: {e}");
            EXIT_FAIL
        }
        (_, Err(e)) => {
            error!(target: "main", "final commit failed: {e}");
            EXIT_FAIL
        }
    };
    info!(target: "main", "exit proxmox configuration filesystem ({code})");
    code
}

/// SIGTERM/SIGINT/SIGHUP: unmount (the FUSE loop then returns); if the mount stays busy,
/// detach it lazily and, after 5 s, commit and exit anyway. SIGUSR1: write the stats file.
fn spawn_signal_thread(mut unmounter: pmxcfs_fuse::SessionUnmounter, paths: Paths, db: Arc<Database>, counters: Arc<FsCounters>, gid: u32, committer: PendingCommitter) {
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1]) {
        Ok(s) => s,
        Err(e) => {
            error!(target: "main", "unable to install signal handlers: {e}");
            return;
        }
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGUSR1 {
                    stats::write(&paths.stats_file, &db.stats(), &counters);
                    continue;
                }
                info!(target: "main", "received signal {sig} - unmounting");
                // open files' pending content first: the mount may stay busy
                if let Err(e) = committer.commit_all() {
                    error!(target: "main", "unable to commit the content of open files: {e}");
                }
                let _ = unmounter.unmount();
                if is_mounted(&paths.mountpoint) {
                    let _ = nix::mount::umount2(&paths.mountpoint, nix::mount::MntFlags::MNT_DETACH);
                }
                std::thread::sleep(Duration::from_secs(5));
                warn!(target: "main", "filesystem still busy after 5 s - committing and exiting");
                let _ = committer.commit_all();
                let code = if db.close().is_ok() { 0 } else { EXIT_FAIL };
                write_restart_flag(&paths, gid);
                let _ = std::fs::remove_file(&paths.pid_file);
                std::process::exit(code);
            }
        })
        .expect("spawn signal thread");
}
