//! config.db is locked exclusively while the daemon is alone with it (no `-shm` page reaches
//! the disk), and any other process that opens it gets in at once — even one that does not
//! wait for locks (the sqlite3 command line) — and reads what the store holds.

mod common;

use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

use common::Daemon;

fn shm_of(d: &Daemon) -> std::path::PathBuf {
    let mut p = d.db_path().into_os_string();
    p.push("-shm");
    p.into()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// write + fsync through the mount: durable in config.db when it returns
fn write_durably(d: &Daemon, rel: &str, data: &[u8]) {
    let mut f = fs::File::create(d.p(rel)).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

/// A reader that never waits for a lock, as `sqlite3` on the command line.
fn impatient_read(d: &Daemon, name: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    let c = rusqlite::Connection::open(d.db_path())?;
    c.busy_timeout(Duration::ZERO)?;
    let mut s = c.prepare("SELECT data FROM tree WHERE name = ?1")?;
    let mut rows = s.query([name])?;
    match rows.next()? {
        Some(r) => r.get(0),
        None => Ok(None),
    }
}

#[test]
fn alone_the_database_is_locked_exclusively_and_has_no_shm() {
    let d = Daemon::start(&[]);
    write_durably(&d, "a.conf", b"one");
    assert_eq!(d.stats()["db_exclusive"], true);
    assert!(!shm_of(&d).exists(), "no -shm while the daemon is alone with config.db");
    let maps = fs::read_to_string(format!("/proc/{}/maps", d.pid())).unwrap();
    assert!(!maps.contains("config.db-shm"), "the WAL index is in the daemon's heap, no -shm mapped:\n{maps}");
}

#[test]
fn a_reader_that_never_waits_gets_in_at_once_and_sees_what_is_durable() {
    let d = Daemon::start(&[]);
    write_durably(&d, "a.conf", b"one");
    assert_eq!(impatient_read(&d, "a.conf").expect("the first attempt already succeeds"), Some(b"one".to_vec()));
    assert!(d.log_text().contains("[database] notice: another process opened the database - sharing it"), "{}", d.log_text());
    assert_eq!(d.stats()["db_exclusive"], false);
    // the store goes on writing into the WAL every process uses: nothing is lost
    write_durably(&d, "b.conf", b"two");
    assert_eq!(impatient_read(&d, "b.conf").unwrap(), Some(b"two".to_vec()));
}

#[test]
fn the_sqlite3_command_line_reads_a_live_database_on_the_first_try() {
    let d = Daemon::start(&[]);
    write_durably(&d, "x.conf", b"cli");
    let out = std::process::Command::new("sqlite3").arg(d.db_path()).arg("SELECT data FROM tree WHERE name = 'x.conf'").output();
    let Ok(out) = out else {
        eprintln!("sqlite3 command not installed - skipped");
        return;
    };
    assert!(out.status.success(), "sqlite3: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cli");
}

#[test]
fn once_alone_again_the_database_goes_back_to_exclusive_and_keeps_everything() {
    let mut d = Daemon::start(&["--shared-db-hold", "1"]);
    write_durably(&d, "a.conf", b"one");
    assert_eq!(impatient_read(&d, "a.conf").unwrap(), Some(b"one".to_vec()));
    wait_for("exclusive locking again", || d.stats()["db_exclusive"] == true);
    assert!(d.log_text().contains("locking it exclusively again"), "{}", d.log_text());
    assert!(!shm_of(&d).exists(), "the shared phase's -shm is gone");
    write_durably(&d, "b.conf", b"two");
    // and once more: the hand-over works every time
    assert_eq!(impatient_read(&d, "b.conf").unwrap(), Some(b"two".to_vec()));
    assert_eq!(d.stop(), 0);
    let mut wal = d.db_path().into_os_string();
    wal.push("-wal");
    assert!(!std::path::Path::new(&wal).exists(), "a clean stop leaves no -wal");
    assert!(!shm_of(&d).exists(), "a clean stop leaves no -shm");
    let c = rusqlite::Connection::open(d.db_path()).unwrap();
    let n: i64 = c.query_row("SELECT count(*) FROM tree WHERE name IN ('a.conf', 'b.conf')", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 2);
}

#[test]
fn a_reader_that_keeps_the_database_open_keeps_it_shared() {
    let d = Daemon::start(&["--shared-db-hold", "1"]);
    write_durably(&d, "a.conf", b"one");
    let c = rusqlite::Connection::open(d.db_path()).unwrap();
    let n: i64 = c.query_row("SELECT count(*) FROM tree", [], |r| r.get(0)).unwrap();
    assert!(n >= 2);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(d.stats()["db_exclusive"], false, "still open elsewhere: stays shared");
    write_durably(&d, "b.conf", b"two");
    let got: Vec<u8> = c.query_row("SELECT data FROM tree WHERE name = 'b.conf'", [], |r| r.get(0)).unwrap();
    assert_eq!(got, b"two");
}

#[test]
fn with_shared_db_the_database_is_shared_all_the_time() {
    let d = Daemon::start(&["--shared-db"]);
    write_durably(&d, "a.conf", b"one");
    assert_eq!(d.stats()["db_exclusive"], false);
    assert!(shm_of(&d).exists(), "SQLite's normal locking: the WAL index in config.db-shm");
    assert_eq!(impatient_read(&d, "a.conf").unwrap(), Some(b"one".to_vec()));
    assert!(!d.log_text().contains("sharing it"));
}

#[test]
fn the_open_gate_helper_ends_with_the_daemon() {
    let mut d = Daemon::start(&[]);
    let pid = d.pid();
    let helpers = || -> Vec<i32> {
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| {
                let cmd = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                cmd.contains("open-gate-helper") && cmd.contains(&format!(" {pid}"))
            })
            .collect()
    };
    assert_eq!(helpers().len(), 1, "one helper per daemon");
    d.kill9();
    wait_for("the helper to end", || helpers().is_empty());
}
