//! The point of the project: writes are coalesced per open file; SQLite sees one
//! transaction per close or rename, never one per write block.

mod common;

use std::fs::{File, OpenOptions};
use std::io::Write;

use common::*;

fn write_in_blocks(f: &mut File, total: usize, block: usize) {
    let chunk = vec![b'a'; block];
    let mut left = total;
    while left > 0 {
        let n = left.min(block);
        f.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
}

#[test]
fn dd_bs512_1mib_over_an_existing_file_is_exactly_one_transaction() {
    let d = Daemon::start(&[]);
    std::fs::write(d.p("big.cfg"), b"old").unwrap();
    let base = d.commits();
    let mut f = OpenOptions::new().write(true).truncate(true).open(d.p("big.cfg")).unwrap();
    write_in_blocks(&mut f, 1024 * 1024, 512);
    drop(f);
    assert_eq!(d.commits() - base, 1);
    assert_eq!(std::fs::metadata(d.p("big.cfg")).unwrap().len(), 1024 * 1024);
}

#[test]
fn dd_bs512_1mib_into_a_new_file_is_at_most_two_transactions() {
    let d = Daemon::start(&[]);
    let base = d.commits();
    let mut f = File::create(d.p("new.cfg")).unwrap();
    write_in_blocks(&mut f, 1024 * 1024, 512);
    drop(f);
    let n = d.commits() - base;
    assert!((1..=2).contains(&n), "{n} transactions");
    assert_eq!(n, 1, "create is folded into the first close");
}

#[test]
fn guest_config_write_is_one_transaction_and_rename_is_one_more() {
    let d = Daemon::start(&[]);
    std::fs::create_dir_all(d.p("nodes/testnode/qemu-server")).unwrap();
    let base = d.commits();
    std::fs::write(d.p("nodes/testnode/qemu-server/100.conf.tmp"), vec![b'x'; 500]).unwrap();
    assert_eq!(d.commits() - base, 1);
    std::fs::rename(d.p("nodes/testnode/qemu-server/100.conf.tmp"), d.p("nodes/testnode/qemu-server/100.conf")).unwrap();
    assert_eq!(d.commits() - base, 2);
}

#[test]
fn kill9_loses_no_acknowledged_change() {
    let mut d = Daemon::start(&[]);
    std::fs::create_dir(d.p("dir")).unwrap();
    std::fs::write(d.p("dir/a.tmp"), b"acknowledged").unwrap();
    std::fs::rename(d.p("dir/a.tmp"), d.p("dir/a")).unwrap();
    let mut open_new = File::create(d.p("dir/unclosed")).unwrap();
    open_new.write_all(b"never closed").unwrap();
    let before = d.stats();
    d.kill9();
    drop(open_new);
    d.spawn().unwrap();
    assert_eq!(std::fs::read(d.p("dir/a")).unwrap(), b"acknowledged");
    assert!(!d.p("dir/a.tmp").exists());
    assert!(!d.p("dir/unclosed").exists(), "the documented exception: a new file not yet closed");
    assert!(d.stats()["version"].as_u64().unwrap() <= before["version"].as_u64().unwrap());
    let conn = rusqlite::Connection::open(d.db_path()).unwrap();
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
}
