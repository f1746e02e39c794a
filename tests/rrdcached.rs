//! RRD data posted through IPC `SET_STATUS rrd/…` reaches a REAL rrdcached (Debian package
//! `rrdcached`) on `<root>/var/run/rrdcached.sock`, lands in the 9.0 files under
//! `<root>/var/lib/rrdcached/db` (19/17/2 data sources), and without rrdcached (no socket, or
//! a dead one) the daemon falls back to the `rrdtool` binary. Needs root, rrdtool, rrdcached.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::qb::QbClient;
use common::*;
use pmxcfs_ipc::protocol::build;

/// The daemon's IPC service (the harness returns once it is up).
fn ipc(d: &Daemon) -> QbClient {
    QbClient::connect(&d.ipc_name())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A real rrdcached in the foreground (`-g`), restricted to the daemon's RRD directory (`-B`),
/// with a long write timeout so updates stay pending until flushed. Killed in Drop.
struct RrdCached {
    child: Option<Child>,
    sock: PathBuf,
    log: PathBuf,
}

impl RrdCached {
    fn start(root: &Path) -> RrdCached {
        let base = root.join("var/lib/rrdcached/db");
        let journal = root.join("var/lib/rrdcached/journal");
        let rundir = root.join("var/run");
        for d in [&base, &journal, &rundir] {
            std::fs::create_dir_all(d).unwrap();
        }
        let sock = rundir.join("rrdcached.sock");
        let log = root.join("rrdcached.log");
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new("rrdcached")
            .arg("-g")
            .arg("-l")
            .arg(format!("unix:{}", sock.display()))
            .arg("-b")
            .arg(&base)
            .arg("-B")
            .arg("-p")
            .arg(root.join("rrdcached.pid"))
            .arg("-j")
            .arg(&journal)
            .args(["-w", "3600", "-z", "1", "-f", "7200"])
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("rrdcached (apt-get install rrdcached)");
        let r = RrdCached { child: Some(child), sock, log };
        let t0 = Instant::now();
        while UnixStream::connect(&r.sock).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(10), "rrdcached did not listen:\n{}", r.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One command over the socket: (status, message, extra lines).
    fn cmd(&self, line: &str) -> (i64, String, Vec<String>) {
        let mut s = UnixStream::connect(&self.sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let mut head = String::new();
        r.read_line(&mut head).unwrap();
        let (status, msg) = head.trim_end().split_once(' ').unwrap_or((head.trim_end(), ""));
        let status: i64 = status.parse().unwrap_or_else(|_| panic!("bad rrdcached answer {head:?}"));
        let mut extra = Vec::new();
        for _ in 0..status.max(0) {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            extra.push(l.trim_end().to_string());
        }
        (status, msg.to_string(), extra)
    }

    fn stat(&self, name: &str) -> u64 {
        let (_, _, lines) = self.cmd("STATS");
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in STATS: {lines:?}"))
            .parse()
            .unwrap()
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RrdCached {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn rrdtool(args: &[&str]) -> String {
    let out = Command::new("rrdtool").args(args).output().expect("rrdtool");
    assert!(out.status.success(), "rrdtool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `rrdtool info` of the file on disk (no daemon): (number of DS, last_update).
fn info(file: &Path) -> (usize, u64, String) {
    let text = rrdtool(&["info", file.to_str().unwrap()]);
    let ds = text.lines().filter(|l| l.starts_with("ds[") && l.contains("].type = ")).count();
    let last = text.lines().find_map(|l| l.strip_prefix("last_update = ")).expect("last_update").parse().unwrap();
    (ds, last, text)
}

/// The values line of `rrdtool lastupdate` ("T: v1 v2 ...") as "T:v1:v2:...".
fn lastupdate(args: &[&str]) -> String {
    let text = rrdtool(args);
    let line = text.lines().rev().find(|l| l.contains(": ")).unwrap_or_else(|| panic!("lastupdate: {text}"));
    let (t, vals) = line.split_once(": ").unwrap();
    format!("{t}:{}", vals.split_whitespace().collect::<Vec<_>>().join(":"))
}

/// What the tests post: (status key, value, file below the db dir, update string, DS count).
fn posts(t: u64) -> Vec<(String, String, &'static str, String, usize)> {
    let node12 = format!("{t}:0.5:4:0.1:0.01:1000:500:200:100:5000:2500:123:456");
    let vm17 = format!("{t}:2:0.5:2048:1024:10000:5000:1:2:3:4:900:0.1:0.2:0.3:0.4:0.5:0.6");
    vec![
        ("rrd/pve2-node/testnode".into(), format!("3600:0:{node12}"), "pve-node-9.0/testnode", format!("{node12}:U:U:U:U:U:U:U"), 19),
        ("rrd/pve-vm-9.0/100".into(), format!("3600:vm100:running:0:{vm17}"), "pve-vm-9.0/100", vm17.clone(), 17),
        ("rrd/pve2-storage/testnode/local".into(), format!("{t}:1000:500"), "pve-storage-9.0/testnode/local", format!("{t}:1000:500"), 2),
    ]
}

fn post_all(c: &QbClient, t: u64) {
    for (key, value, ..) in posts(t) {
        let mut v = value.into_bytes();
        v.push(0);
        assert_eq!(c.call(&build::set_status(key.as_bytes(), &v)).0, 0, "{key}");
    }
}

#[test]
fn real_rrdcached_receives_node_vm_and_storage_updates() {
    require_root();
    let root = tempfile::Builder::new().prefix("pmxcfs-test.").tempdir().unwrap();
    let mut cached = RrdCached::start(root.path());
    let d = Daemon::start_in_root(root, &[]);
    let db = d.root.path().join("var/lib/rrdcached/db");
    let sock = format!("unix:{}", cached.sock.display());
    let c = ipc(&d);
    let received0 = cached.stat("UpdatesReceived");

    let t = now();
    post_all(&c, t);
    let midnight = pmxcfs_status::rrd::local_midnight(t as i64) as u64;
    assert_eq!(cached.stat("UpdatesReceived") - received0, 3, "rrdcached got one UPDATE per post\n{}", d.log_text());
    for (key, _, file, update, ds) in posts(t) {
        let path = db.join(file);
        // rrdcached holds the value: pending in its cache, not yet in the file
        let (n, _, pending) = cached.cmd(&format!("PENDING {}", path.display()));
        assert_eq!((n, pending), (1, vec![update.clone()]), "{key}: pending in rrdcached\n{}", cached.log_text());
        let (dsn, last, text) = info(&path);
        assert_eq!(dsn, ds, "{key}: 9.0 layout\n{text}");
        assert_eq!(last, midnight, "{key}: file created at local midnight, update still pending");
        assert!(text.contains("step = 60") && text.contains("rra[7].cf = \"MAX\"") && text.contains("rra[3].pdp_per_row = 10080"), "{text}");
        // an rrdtool client through the daemon socket flushes and sees the value
        assert_eq!(lastupdate(&["lastupdate", "--daemon", &sock, path.to_str().unwrap()]), update, "{key}");
        assert_eq!(info(&path).1, t, "{key}: flushed to disk");
        assert_eq!(lastupdate(&["lastupdate", path.to_str().unwrap()]), update, "{key} on disk");
    }
    assert!(!d.log_text().contains("RRDC update error"), "no fallback while rrdcached runs:\n{}", d.log_text());

    // rrdcached dies and leaves its socket behind: the daemon falls back to rrdtool
    cached.kill9();
    assert!(cached.sock.exists(), "stale socket stays");
    let t2 = t + 60;
    post_all(&c, t2);
    for (key, _, file, update, _) in posts(t2) {
        assert_eq!(lastupdate(&["lastupdate", db.join(file).to_str().unwrap()]), update, "{key} via the rrdtool fallback");
    }
    assert!(d.log_text().contains("RRDC update error"), "fallback logged:\n{}", d.log_text());
}

#[test]
fn without_rrdcached_the_rrdtool_fallback_creates_and_updates_the_files() {
    let d = Daemon::start(&[]);
    let db = d.root.path().join("var/lib/rrdcached/db");
    assert!(!d.root.path().join("var/run/rrdcached.sock").exists());
    let c = ipc(&d);
    let t = now();
    post_all(&c, t);
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    for (key, _, file, update, ds) in posts(t) {
        let path = db.join(file);
        let (dsn, last, text) = info(&path);
        assert_eq!((dsn, last), (ds, t), "{key}\n{text}\n{}", d.log_text());
        assert_eq!(lastupdate(&["lastupdate", path.to_str().unwrap()]), update, "{key}");
        assert_eq!(mode(path.parent().unwrap()), 0o750, "{key}: directory mode");
    }
    assert_eq!(mode(&db.join("pve-storage-9.0")), 0o750);
    // a later post updates the same files (no re-create)
    post_all(&c, t + 60);
    for (key, _, file, update, _) in posts(t + 60) {
        let path = db.join(file);
        assert_eq!(lastupdate(&["lastupdate", path.to_str().unwrap()]), update, "{key}");
    }
    // the old VM format is padded to the 9.0 layout as well
    let vm10 = format!("{}:2:0.5:2048:1024:10000:5000:1:2:3:4", t + 60);
    assert_eq!(c.call(&build::set_status(b"rrd/pve2.3-vm/101", format!("1:vm:running:0:{vm10}\0").as_bytes())).0, 0);
    let path = db.join("pve-vm-9.0/101");
    assert_eq!(info(&path).0, 17);
    assert_eq!(lastupdate(&["lastupdate", path.to_str().unwrap()]), format!("{vm10}:U:U:U:U:U:U:U"));
}
