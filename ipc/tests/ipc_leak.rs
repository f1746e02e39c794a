//! Connect/disconnect cycles leave no fds or /dev/shm files behind.
//!
//! 1000 connect/disconnect cycles (plus rejected and malformed connections) leave no fds
//! or /dev/shm/qb-* files behind; stopping the server releases everything.
//! Own test binary so no other test opens fds concurrently.

mod common;

use std::time::{Duration, Instant};

use common::*;
use pmxcfs_ipc::protocol::build::*;

fn count_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn count_shm() -> usize {
    let prefix = format!("qb-{}-", std::process::id());
    std::fs::read_dir("/dev/shm")
        .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).count())
        .unwrap_or(0)
}

fn settle(fds: usize) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = (count_fds(), count_shm());
        if (now.0 <= fds && now.1 == 0) || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn no_fd_or_shm_leaks() {
    let _ = client_binary(); // compile first (spawns cc)
    init_logging();
    let fds_before = count_fds();
    let shm_before = count_shm();
    assert_eq!(shm_before, 0);
    let (mut srv, _h, name) = start(FakeHandler::new());
    let fds_running = count_fds();

    // 1000 connect / request / disconnect cycles through the libqb client
    let out = std::process::Command::new(client_binary())
        .arg(&name)
        .arg("cycles")
        .arg("1000")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1000");

    let (fds, shm) = settle(fds_running);
    assert_eq!((fds, shm), (fds_running, 0), "leak after 1000 cycles");
    // rejected connections
    for _ in 0..10 {
        let res = run_client(&name, &[simple(1)], Some((65534, 65534)));
        assert_eq!(res.connect_error, Some(libc::EACCES));
    }
    // malformed requests and a client killed mid-connection
    let res = run_client(&name, &[vec![1, 0, 0, 0], simple(9), simple(1)], None);
    assert!(!res.replies.is_empty());
    let mut child = std::process::Command::new(client_binary())
        .arg(&name)
        .arg("flood")
        .arg("1000")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let _ = child.kill();
    let _ = child.wait();
    drop(child); // closes our ends of its pipes

    let (fds, shm) = settle(fds_running);
    assert_eq!(shm, 0, "shm files left behind");
    assert!(fds <= fds_running, "fd leak: {fds} open, {fds_running} expected");

    // a live connection at stop time is torn down too
    let mut child = std::process::Command::new(client_binary())
        .arg(&name)
        .arg("flood")
        .arg("1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    srv.stop();
    drop(child.stdin.take());
    let _ = child.wait();
    drop(child);
    let (fds, shm) = settle(fds_before);
    assert_eq!(shm, 0, "shm files left behind after stop");
    assert!(fds <= fds_before, "fd leak after stop: {fds} open, {fds_before} expected");
}
