//! Start-up and shutdown: refusals with clear messages, daemonizing, the instance lock.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn run_once(root: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["-f", "-l", "--nodename", NODE, "--root"])
        .arg(root)
        .args(extra)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn corrupt_database_refuses_to_start_naming_the_file() {
    require_root();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("var/lib/pve-cluster");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.db"), vec![0x5au8; 16384]).unwrap();
    let (code, err) = run_once(root.path(), &[]);
    assert_eq!(code, 255);
    assert!(err.contains("config.db") && err.contains("[main] crit:"), "{err}");
    assert!(!is_mounted(&root.path().join("etc/pve")));
}

#[test]
fn database_with_duplicate_names_refuses_to_start_naming_the_row() {
    require_root();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("var/lib/pve-cluster");
    std::fs::create_dir_all(&dir).unwrap();
    let c = rusqlite::Connection::open(dir.join("config.db")).unwrap();
    c.execute_batch(pmxcfs_schema()).unwrap();
    c.execute_batch("INSERT INTO tree VALUES (2,0,2,0,0,8,'a',NULL); INSERT INTO tree VALUES (3,0,3,0,0,8,'a',NULL);").unwrap();
    drop(c);
    let (code, err) = run_once(root.path(), &[]);
    assert_eq!(code, 255);
    assert!(err.contains("duplicate name 'a'"), "{err}");
}

fn pmxcfs_schema() -> &'static str {
    pmxcfs_backend::store::SCHEMA
}

#[test]
fn second_instance_on_the_same_database_refuses_to_start() {
    let d = Daemon::start(&[]);
    let t0 = Instant::now();
    let (code, err) = run_once(d.root.path(), &[]);
    assert_eq!(code, 255);
    assert!(err.contains("unable to acquire pmxcfs lock"), "{err}");
    assert!(t0.elapsed() >= Duration::from_secs(9), "retries for about 10 s like the original");
    assert!(is_mounted(&d.mnt()), "the first instance keeps serving");
    std::fs::write(d.p("still-works"), b"yes").unwrap();
}

#[test]
fn without_f_it_daemonizes_writes_the_pid_file_and_stops_on_sigterm() {
    require_root();
    let root = tempfile::tempdir().unwrap();
    let st = Command::new(BIN).args(["-l", "--nodename", NODE, "--root"]).arg(root.path()).status().unwrap();
    assert!(st.success(), "parent exits 0 once the child is ready");
    let mnt = root.path().join("etc/pve");
    assert!(is_mounted(&mnt), "mounted when the parent returns");
    let pid: i32 = std::fs::read_to_string(root.path().join("run/pve-cluster.pid")).unwrap().trim().parse().unwrap();
    std::fs::write(mnt.join("x.cfg"), b"daemon").unwrap();
    // SAFETY: signalling the daemon we started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let t0 = Instant::now();
    while is_mounted(&mnt) || std::path::Path::new(&format!("/proc/{pid}")).exists() {
        if t0.elapsed() > Duration::from_secs(15) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            lazy_umount(&mnt);
            panic!("daemon did not stop");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!root.path().join("run/pve-cluster.pid").exists(), "pid file removed");
    assert!(root.path().join("run/pve-cluster/cfs-restart-flag").exists(), "restart flag left for clients");
}

#[test]
fn without_corosync_a_cluster_node_mounts_read_only_and_l_forces_local_mode() {
    let mut d = Daemon::start(&[]);
    std::fs::write(d.p("corosync.conf"), b"totem { cluster_name: x\n config_version: 1\n}\n").unwrap();
    std::fs::write(d.p("datacenter.cfg"), b"keyboard: en-us\n").unwrap();
    assert_eq!(d.stop(), 0);
    // cluster mode: no corosync reachable here, so the node is not quorate
    let mnt = d.mnt();
    let mut child = Command::new(BIN)
        .args(["-f", "--nodename", NODE, "--ipc-name", &d.ipc_name(), "--root"])
        .arg(d.root.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !is_mounted(&mnt) {
        assert!(t0.elapsed() < Duration::from_secs(20), "cluster-mode daemon did not mount");
        std::thread::sleep(Duration::from_millis(50));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(mnt.join("datacenter.cfg")).map(|m| m.permissions().mode() & 0o777);
    let write = std::fs::write(mnt.join("datacenter.cfg"), b"x");
    let read = std::fs::read(mnt.join("datacenter.cfg"));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = wait_timeout(&mut child, Duration::from_secs(20));
    lazy_umount(&mnt);
    assert_eq!(mode.unwrap(), 0o440, "not quorate: read-only modes");
    assert_eq!(errno(&write.unwrap_err()), libc::EACCES, "not quorate: writes refused");
    assert_eq!(read.unwrap(), b"keyboard: en-us\n", "reads still work");
    d.spawn().expect("-l forces local mode");
    assert!(d.log_text().contains("forcing local mode (although corosync.conf exists)"));
    std::fs::write(d.p("datacenter.cfg"), b"writable again\n").unwrap();
}

#[test]
fn offline_check_and_dump_read_the_golden_database() {
    let out = Command::new(BIN).args(["check", "--db"]).arg(golden("c-config.db")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("integrity_check: ok") && text.contains("healthy") && text.contains("guests: 100"), "{text}");
    let out = Command::new(BIN).args(["dump", "--db"]).arg(golden("c-config.db")).arg("datacenter.cfg").output().unwrap();
    assert!(out.status.success());
    assert!(!out.stdout.is_empty());
    let out = Command::new(BIN).args(["dump", "--db"]).arg(golden("c-config.db")).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("nodes/pve1/qemu-server/100.conf"));
}

#[test]
fn readiness_is_notified_to_systemd_once_mounted() {
    require_root();
    let root = tempfile::tempdir().unwrap();
    let sock_path = root.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut child = Command::new(BIN)
        .args(["-f", "-l", "--nodename", NODE, "--root"])
        .arg(root.path())
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY=1 datagram");
    let mnt = root.path().join("etc/pve");
    let mounted = is_mounted(&mnt);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = wait_timeout(&mut child, Duration::from_secs(15));
    lazy_umount(&mnt);
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("READY=1"));
    assert!(mounted, "READY=1 only after the mount");
}
