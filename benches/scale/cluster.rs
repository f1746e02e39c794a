//! The cluster rows: two pmxcfs-ng nodes on real corosync (../shared/harness/cluster.sh,
//! one network namespace per node, unique names per run). Node1 starts with the tree the
//! local round left behind; node2 is a fresh node that syncs all of it, is stopped while
//! node1 makes `--changes` overwrites, and catches up when started again.
use super::*;

#[path = "../common/corosync.rs"]
mod corosync;

use corosync::{daemon_pid, Corosync, RunNames};

/// The corosync cluster and the daemons on it; Drop stops the daemons, then corosync goes down.
struct Coro {
    coro: Corosync,
    daemons: Vec<(Child, u32, PathBuf)>,
}

impl Coro {
    fn up() -> Result<Coro, String> {
        let names = RunNames { dir: "scale", prefix: "pxsc", net: "10.227", tag_from: 30, cluster: "ngscale" };
        Ok(Coro { coro: Corosync::up(2, &names)?, daemons: Vec::new() })
    }

    /// Starts `bin` as node `id` on `root`; returns its pid once mounted.
    fn start(&mut self, bin: &str, id: u32, root: &Path) -> Result<u32, String> {
        let child = self.coro.spawn_daemon(bin, id, root)?;
        let mnt = root.join("etc/pve");
        let t0 = Instant::now();
        let pid = loop {
            if let (true, Some(pid)) = (is_mounted(&mnt), daemon_pid(bin, root)) {
                break pid;
            }
            if t0.elapsed() > Duration::from_secs(60) || ABORT.load(Ordering::SeqCst) {
                return Err(format!("node{id} did not mount"));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.daemons.push((child, pid, root.to_path_buf()));
        Ok(pid)
    }

    fn stop(&mut self, pid: u32) {
        if let Some(i) = self.daemons.iter().position(|d| d.1 == pid) {
            let (mut child, pid, root) = self.daemons.remove(i);
            stop_pid(&mut child, pid);
            lazy_umount(&root.join("etc/pve"));
        }
    }
}

fn stop_pid(child: &mut Child, pid: u32) {
    // SAFETY: the daemon we started (found by its --root).
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) && Path::new(&format!("/proc/{pid}")).exists() {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Coro {
    fn drop(&mut self) {
        for (mut child, pid, root) in std::mem::take(&mut self.daemons) {
            stop_pid(&mut child, pid);
            lazy_umount(&root.join("etc/pve"));
        }
    }
}

/// Like `pvecm create`/`add`: local mode, put corosync.conf into the database, stop.
fn seed(bin: &str, root: &Path, node: &str, conf: &[u8]) -> Result<(), String> {
    for d in ["etc/pve", "var/lib/pve-cluster", "run/pve-cluster"] {
        fs::create_dir_all(root.join(d)).map_err(|e| e.to_string())?;
    }
    let spec = DaemonSpec::parse(&format!("seed=unshare -n {bin} -f -l --root {{root}} --nodename {node}"))?;
    let (d, _) = Daemon::start(&spec, root).map_err(|e| e.to_string())?;
    write_file(&d.mnt().join("corosync.conf"), conf).map_err(|e| format!("seed corosync.conf: {e}"))?;
    d.stop().map_err(|e| e.to_string())?;
    Ok(())
}

/// Samples VmRSS of `pids` every 10 ms until `stop`; returns the peaks.
fn rss_sampler(pids: Vec<u32>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<u64>> {
    std::thread::spawn(move || {
        let mut peak = vec![0u64; pids.len()];
        while !stop.load(Ordering::SeqCst) {
            for (i, pid) in pids.iter().enumerate() {
                peak[i] = peak[i].max(status_bytes(*pid, "VmRSS"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    })
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) -> Result<(), String> {
    let t0 = Instant::now();
    while !f() {
        if ABORT.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            return Err(format!("timeout waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

pub fn run(p: &Params, spec: &DaemonSpec, local_root: &Path) -> Result<Map<String, Value>, String> {
    let bin = spec.argv[0].clone();
    let mut r = Map::new();
    let mut coro = Coro::up()?;
    let conf = coro.coro.conf()?;
    let work = Root::new(&p.base, &format!("{}-cluster", spec.name)).map_err(|e| e.to_string())?;
    let (root1, root2) = (work.path().join("node1"), work.path().join("node2"));
    // node1: the local round's tree (+ corosync.conf); node2: a fresh node
    fs::create_dir_all(root1.join("var/lib/pve-cluster")).map_err(|e| e.to_string())?;
    fs::copy(local_root.join("var/lib/pve-cluster/config.db"), root1.join("var/lib/pve-cluster/config.db")).map_err(|e| format!("copy config.db: {e}"))?;
    seed(&bin, &root1, "node1", &conf)?;
    seed(&bin, &root2, "node2", &conf)?;
    let pid1 = coro.start(&bin, 1, &root1)?;
    let (mnt1, mnt2) = (root1.join("etc/pve"), root2.join("etc/pve"));
    wait_for("a quorate node1", 60, || fs::create_dir(mnt1.join("scale-cluster")).is_ok() || mnt1.join("scale-cluster").is_dir())?;

    // full sync of a fresh node
    let last = file_rel(p, p.files - 1);
    let want_last = fs::read(mnt1.join(&last)).map_err(|e| format!("node1 {last}: {e}"))?;
    let cpu1 = cpu_secs(pid1);
    let t0 = Instant::now();
    let pid2 = coro.start(&bin, 2, &root2)?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = rss_sampler(vec![pid1, pid2], stop.clone());
    let reader = Reader::start(mnt2.join("corosync.conf"));
    let synced = wait_for("node2 synced", 600, || fs::read(mnt2.join(&last)).is_ok_and(|d| d == want_last));
    let secs = t0.elapsed().as_secs_f64();
    let (_, p99, _, _, read_errors) = reader.finish();
    stop.store(true, Ordering::SeqCst);
    let peaks = sampler.join().unwrap_or_default();
    synced?;
    r.insert("sync_seconds".into(), json!(secs));
    r.insert("sync_read_p99_ms".into(), json!(p99));
    r.insert("sync_read_errors".into(), json!(read_errors));
    r.insert("sync_sender_peak_rss_mb".into(), json!(peaks.first().copied().unwrap_or(0) as f64 / 1e6));
    r.insert("sync_receiver_peak_rss_mb".into(), json!(peaks.get(1).copied().unwrap_or(0) as f64 / 1e6));
    std::thread::sleep(Duration::from_millis(500));
    r.insert("sync_sender_cpu_s".into(), json!(cpu_secs(pid1) - cpu1));

    // catch-up of a restarted node
    coro.stop(pid2);
    let step = (p.files / p.changes.max(1)).max(1);
    let mut last_changed = String::new();
    let mut want = Vec::new();
    for k in 0..p.changes {
        let i = (k * step + 1) % p.files;
        last_changed = file_rel(p, i);
        want = payload(i, 1000 + k, p.size);
        write_file(&mnt1.join(&last_changed), &want).map_err(|e| format!("change {k}: {e}"))?;
    }
    std::thread::sleep(Duration::from_millis(1500));
    let cpu1 = cpu_secs(pid1);
    let t0 = Instant::now();
    let pid2 = coro.start(&bin, 2, &root2)?;
    wait_for("node2 caught up", 300, || fs::read(mnt2.join(&last_changed)).is_ok_and(|d| d == want))?;
    r.insert("catchup_seconds".into(), json!(t0.elapsed().as_secs_f64()));
    std::thread::sleep(Duration::from_millis(500));
    r.insert("catchup_cpu_s".into(), json!(cpu_secs(pid2)));
    r.insert("catchup_sender_cpu_s".into(), json!(cpu_secs(pid1) - cpu1));
    drop(coro);
    Ok(r)
}
