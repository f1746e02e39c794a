//! Process-crash test: writers run file_set_contents-style updates (tmp + rename), appends,
//! mkdir/rmdir and deletes while the daemon is killed with SIGKILL at random moments. After
//! every restart each acknowledged change is present (or the in-flight one replaced it),
//! the database passes `PRAGMA integrity_check`, and the tree loads. Cycles:
//! `PMXCFS_CRASH_CYCLES` (default 200).

mod common;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// What a path may hold after a crash: the acknowledged state, or the in-flight one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Missing,
    File(Vec<u8>),
    Dir,
}

#[derive(Debug, Default)]
struct Model {
    acked: BTreeMap<PathBuf, State>,
    inflight: BTreeMap<PathBuf, State>,
    /// Acknowledged operations so far (the test must really exercise the daemon).
    acks: usize,
}

impl Model {
    fn begin(&mut self, p: &Path, s: State) {
        self.inflight.insert(p.to_path_buf(), s);
    }
    fn ack(&mut self, p: &Path) {
        if let Some(s) = self.inflight.remove(p) {
            self.acks += 1;
            self.acked.insert(p.to_path_buf(), s);
        }
    }
    fn current(&self, p: &Path) -> State {
        self.acked.get(p).cloned().unwrap_or(State::Missing)
    }
}

fn write_file(p: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(p)?;
    f.write_all(data)?;
    close_checked(f)
}

fn actual(p: &Path) -> State {
    match std::fs::symlink_metadata(p) {
        Err(_) => State::Missing,
        Ok(m) if m.is_dir() => State::Dir,
        Ok(_) => State::File(std::fs::read(p).unwrap_or_default()),
    }
}


/// One writer thread's work until an operation fails (daemon gone) or `ops` are done.
fn writer(mnt: PathBuf, t: usize, seed: u64, model: Arc<Mutex<Model>>, ops: usize) {
    let dir = mnt.join(format!("w{t}"));
    let mut rng = Rng(seed | 1);
    for seq in 0..ops {
        let k = rng.below(4);
        let ok = match rng.below(4) {
            0 | 1 => {
                // file_set_contents: write tmp, rename onto the target
                let target = dir.join(format!("file{k}"));
                let tmp = dir.join(format!("file{k}.tmp.{seq}"));
                let content = format!("w{t} file{k} seq {seq}\n").repeat(1 + (seq % 7)).into_bytes();
                model.lock().unwrap().begin(&target, State::File(content.clone()));
                write_file(&tmp, &content).and_then(|_| std::fs::rename(&tmp, &target)).is_ok()
                    && {
                        model.lock().unwrap().ack(&target);
                        true
                    }
            }
            2 => {
                let log = dir.join("log");
                let mut new = match model.lock().unwrap().current(&log) {
                    State::File(d) => d,
                    _ => Vec::new(),
                };
                new.extend_from_slice(format!("line {seq}\n").as_bytes());
                model.lock().unwrap().begin(&log, State::File(new));
                let r = OpenOptions::new().create(true).append(true).open(&log).and_then(|mut f| {
                    f.write_all(format!("line {seq}\n").as_bytes())?;
                    close_checked(f)
                });
                r.is_ok() && {
                    model.lock().unwrap().ack(&log);
                    true
                }
            }
            _ => {
                let d = dir.join(format!("d{k}"));
                let now = model.lock().unwrap().current(&d);
                let (next, r) = if now == State::Dir {
                    (State::Missing, {
                        model.lock().unwrap().begin(&d, State::Missing);
                        std::fs::remove_dir(&d)
                    })
                } else {
                    (State::Dir, {
                        model.lock().unwrap().begin(&d, State::Dir);
                        std::fs::create_dir(&d)
                    })
                };
                let _ = next;
                r.is_ok() && {
                    model.lock().unwrap().ack(&d);
                    true
                }
            }
        };
        if !ok {
            return;
        }
    }
}

fn verify(_mnt: &Path, model: &Mutex<Model>, cycle: usize) {
    let mut m = model.lock().unwrap();
    let paths: Vec<PathBuf> = m.acked.keys().chain(m.inflight.keys()).cloned().collect();
    for p in paths {
        let got = actual(&p);
        let acked = m.current(&p);
        let inflight = m.inflight.get(&p).cloned();
        // a file being created may also survive empty: its open(O_CREAT) had returned (the
        // create rides along with any other commit), its write had not been closed
        let created_empty = acked == State::Missing && got == State::File(Vec::new()) && matches!(inflight, Some(State::File(_)));
        assert!(
            got == acked || Some(&got) == inflight.as_ref() || created_empty,
            "cycle {cycle}: {} is {:?}, acknowledged {:?}, in flight {:?}",
            p.display(),
            got,
            acked,
            inflight
        );
        // whatever survived is now the acknowledged state
        m.acked.insert(p.clone(), got);
    }
    m.inflight.clear();
}

fn remove_tmp_files(mnt: &Path, writers: usize) {
    for t in 0..writers {
        if let Ok(rd) = std::fs::read_dir(mnt.join(format!("w{t}"))) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().contains(".tmp.") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

#[test]
fn kill9_at_random_moments_loses_no_acknowledged_change() {
    let cycles: usize = std::env::var("PMXCFS_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let writers = 4;
    let mut d = Daemon::start(&[]);
    for t in 0..writers {
        std::fs::create_dir(d.p(&format!("w{t}"))).unwrap();
    }
    let model = Arc::new(Mutex::new(Model::default()));
    let mut rng = Rng(0x5eed_1234_abcd);
    for cycle in 0..cycles {
        let handles: Vec<_> = (0..writers)
            .map(|t| {
                let (mnt, model) = (d.mnt(), model.clone());
                let seed = rng.next();
                std::thread::spawn(move || writer(mnt, t, seed, model, 10_000))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(5 + rng.below(60)));
        d.kill9();
        for h in handles {
            h.join().unwrap();
        }
        d.spawn().unwrap_or_else(|e| panic!("cycle {cycle}: restart failed: {e}\n{}", d.log_text()));
        verify(&d.mnt(), &model, cycle);
        remove_tmp_files(&d.mnt(), writers);
        if cycle % 50 == 0 {
            let conn = rusqlite::Connection::open(d.db_path()).unwrap();
            let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            assert_eq!(ok, "ok", "cycle {cycle}");
        }
    }
    let acks = model.lock().unwrap().acks;
    assert!(acks >= cycles * 4, "only {acks} acknowledged operations in {cycles} cycles");
    eprintln!("{cycles} kill cycles, {acks} acknowledged operations verified");
    assert_eq!(d.stop(), 0);
    let check = |db: &Path| {
        let out = std::process::Command::new(BIN).args(["check", "--db"]).arg(db).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{text}");
        text.lines().find(|l| l.starts_with("checksum:")).unwrap().to_string()
    };
    let first = check(&d.db_path());
    d.spawn().unwrap();
    assert_eq!(d.stop(), 0);
    assert_eq!(check(&d.db_path()), first, "the whole-tree checksum is stable across restarts");
}

fn record_files(d: &Daemon) -> Vec<PathBuf> {
    let run = d.root.path().join("run/pve-cluster");
    let mut v: Vec<PathBuf> = std::fs::read_dir(run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("pmxcfs-ng.record."))
        .collect();
    v.sort();
    v
}

fn rows_named(db: &Path, name: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT count(*) FROM tree WHERE name = ?1", [name], |r| r.get(0)).unwrap()
}

#[test]
fn kill9_keeps_what_only_the_crash_record_holds() {
    // a long sync interval: nothing acknowledged below reaches config.db before the kill
    let mut d = Daemon::start(&["--sync-interval", "3600000"]);
    std::fs::create_dir(d.p("dir")).unwrap();
    std::fs::write(d.p("dir/a.tmp"), b"only in the record").unwrap();
    std::fs::rename(d.p("dir/a.tmp"), d.p("dir/a")).unwrap();
    let before = snapshot(&d.mnt());
    d.kill9();
    assert_eq!(rows_named(&d.db_path(), "a"), 0, "the store transaction had not happened yet");
    assert!(record_files(&d).iter().any(|p| std::fs::metadata(p).unwrap().len() > 16));
    d.spawn().unwrap();
    assert_eq!(std::fs::read(d.p("dir/a")).unwrap(), b"only in the record");
    assert_eq!(snapshot(&d.mnt()), before);
    assert!(d.log_text().contains("replaying crash record"));
    assert_eq!(rows_named(&d.db_path(), "a"), 1, "the replay wrote it to config.db");
}

#[test]
fn a_torn_record_tail_is_ignored_and_replaying_twice_equals_once() {
    let mut d = Daemon::start(&["--sync-interval", "3600000"]);
    for i in 0..20 {
        std::fs::write(d.p(&format!("f{i}")), format!("version one of {i}\n")).unwrap();
    }
    std::fs::write(d.p("f3"), b"rewritten\n").unwrap();
    std::fs::remove_file(d.p("f7")).unwrap();
    d.kill9();
    // the kill also cut an append short: a frame header promising more than is there
    let newest = record_files(&d).pop().unwrap();
    let mut f = OpenOptions::new().append(true).open(&newest).unwrap();
    f.write_all(&[0x40, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3]).unwrap();
    drop(f);
    let saved: Vec<(PathBuf, Vec<u8>)> = record_files(&d).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    d.spawn().unwrap();
    let once = snapshot(&d.mnt());
    assert_eq!(std::fs::read(d.p("f3")).unwrap(), b"rewritten\n");
    assert!(!d.p("f7").exists());
    assert!(d.log_text().contains("ignoring a torn tail of 11 bytes"), "{}", d.log_text());
    // killed again after the replay reached config.db but before the record was removed
    d.kill9();
    for p in record_files(&d) {
        std::fs::remove_file(p).unwrap();
    }
    for (p, bytes) in &saved {
        std::fs::write(p, bytes).unwrap();
    }
    d.spawn().unwrap();
    assert_eq!(snapshot(&d.mnt()), once, "a second replay changes nothing");
    assert_eq!(d.stop(), 0);
    assert!(record_files(&d).is_empty(), "a clean stop removes the record");
}

#[test]
fn kill9_keeps_data_written_to_a_file_that_is_still_open() {
    let mut d = Daemon::start(&[]);
    let mut open_new = File::create(d.p("unclosed")).unwrap();
    open_new.write_all(b"written, never closed").unwrap();
    let mut open_old = OpenOptions::new().write(true).create(true).truncate(false).open(d.p("existing")).unwrap();
    open_old.write_all(b"overwritten in place").unwrap();
    d.kill9();
    drop((open_new, open_old));
    d.spawn().unwrap();
    assert_eq!(std::fs::read(d.p("unclosed")).unwrap(), b"written, never closed");
    assert_eq!(std::fs::read(d.p("existing")).unwrap(), b"overwritten in place");
}
