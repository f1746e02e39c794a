//! The cluster rows: two pmxcfs-ng nodes on real corosync (../shared/harness/cluster.sh,
//! one network namespace per node, unique names per run). Node1 starts with the tree the
//! local round left behind; node2 is a fresh node that syncs all of it, is stopped while
//! node1 makes `--changes` overwrites, and catches up when started again.
use super::*;

fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/harness/cluster.sh")
}

/// The corosync cluster; Drop stops the daemons and tears corosync down.
struct Coro {
    env: Vec<(String, String)>,
    base: PathBuf,
    daemons: Vec<(Child, u32, PathBuf)>,
}

impl Coro {
    fn sh(&self, args: &[&str]) -> Result<(), String> {
        let out = Command::new("bash").arg(harness()).args(args).envs(self.env.iter().map(|(k, v)| (k, v))).output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("cluster.sh {args:?} failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
        }
    }

    fn up() -> Result<Coro, String> {
        let tag = std::process::id() % 200 + 30;
        let base = PathBuf::from(format!("/tmp/pmxcfs-ng-scale-{}", std::process::id()));
        let env = vec![
            ("CORO_BASE".into(), base.display().to_string()),
            ("CORO_PREFIX".into(), format!("pxsc{tag}n")),
            ("CORO_NET".into(), format!("10.227.{tag}")),
            ("CORO_NAME".into(), "ngscale".into()),
            ("CORO_TOKEN".into(), "1000".into()),
            ("CORO_TOKEN_COEFF".into(), "0".into()),
        ];
        let c = Coro { env, base, daemons: Vec::new() };
        c.sh(&["up", "2"])?;
        Ok(c)
    }

    fn conf(&self) -> Result<Vec<u8>, String> {
        fs::read(self.base.join("n1/corosync.conf")).map_err(|e| format!("harness corosync.conf: {e}"))
    }

    /// Starts `bin` as node `id` on `root`; returns its pid once mounted.
    fn start(&mut self, bin: &str, id: u32, root: &Path) -> Result<u32, String> {
        let log = fs::OpenOptions::new().create(true).append(true).open(root.join("daemon.log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("bash");
        cmd.arg(harness()).args(["netexec", &id.to_string(), bin, "-f", "--nodename", &format!("node{id}"), "--root"]).arg(root);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null()).stdout(log.try_clone().map_err(|e| e.to_string())?).stderr(log);
        let child = cmd.spawn().map_err(|e| e.to_string())?;
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
        let _ = self.sh(&["down"]);
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// The process of `bin` serving `root` (the harness starts it under `ip netns exec`).
fn daemon_pid(bin: &str, root: &Path) -> Option<u32> {
    let want = root.to_string_lossy().to_string();
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let exe_ok = fs::read_link(e.path().join("exe")).map(|p| p == Path::new(bin)).unwrap_or(false);
        if exe_ok && args.windows(2).any(|w| w[0] == b"--root" && w[1] == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
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
    let conf = coro.conf()?;
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
