//! Shared pending content in cluster mode over REAL corosync: local readers see a local write
//! at once, other nodes get the whole content at the commit point, and a change from another
//! node that reaches a locally pending file loses to the local commit (last commit wins).
//! Also: a non-UTF-8 name replicates byte-exact.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use common::cluster::*;

fn read(p: &std::path::Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_default()
}

#[test]
fn pending_content_is_local_until_its_commit_point_and_the_last_commit_wins() {
    let c = Cluster::up(3);
    let f1 = c.nodes[0].p("shared.cfg");
    let f2 = c.nodes[1].p("shared.cfg");
    write_retry(&f1, b"committed\n");
    wait_for("shared.cfg on node2", 15, || read(&f2) == b"committed\n");

    let h = OpenOptions::new().write(true).truncate(true).open(&f1).unwrap();
    h.write_all_at(b"local pending\n", 0).unwrap();
    assert_eq!(read(&f1), b"local pending\n", "local readers see the write at once");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(read(&f2), b"committed\n", "other nodes get nothing before the commit point");

    // another node changes the file meanwhile: local readers keep the local pending content
    write_retry(&f2, b"remote change\n");
    wait_for("node3 sees node2's change", 15, || read(&c.nodes[2].p("shared.cfg")) == b"remote change\n");
    assert_eq!(read(&f1), b"local pending\n");

    // the local commit point replaces it on every node
    drop(h);
    for n in &c.nodes {
        let p = n.p("shared.cfg");
        wait_for(&format!("node{} has the committed local content", n.id), 15, || read(&p) == b"local pending\n");
    }

    // two appenders on node1: one whole content reaches the others at the close
    let log = c.nodes[0].p("append.log");
    write_retry(&log, b"");
    let a = OpenOptions::new().append(true).open(&log).unwrap();
    let b = OpenOptions::new().append(true).open(&log).unwrap();
    for i in 0..50 {
        a.write_all_at(format!("a{i}\n").as_bytes(), 0).unwrap();
        b.write_all_at(format!("b{i}\n").as_bytes(), 0).unwrap();
    }
    drop(a);
    drop(b);
    let want = read(&log);
    assert_eq!(String::from_utf8_lossy(&want).lines().count(), 100);
    let p3 = c.nodes[2].p("append.log");
    wait_for("node3 has every appended line", 15, || read(&p3) == want);

    // names are bytes: a non-UTF-8 name replicates byte-exact (and so would one from a C node)
    use std::os::unix::ffi::OsStrExt;
    let raw = std::ffi::OsStr::from_bytes(b"caf\xe9-\xff.cfg");
    write_retry(&c.nodes[0].mnt().join(raw), b"bytes\n");
    let on3 = c.nodes[2].mnt().join(raw);
    wait_for("node3 has the non-UTF-8 name", 15, || read(&on3) == b"bytes\n");
    let listed: Vec<Vec<u8>> = std::fs::read_dir(c.nodes[1].mnt()).unwrap().map(|e| e.unwrap().file_name().as_bytes().to_vec()).collect();
    assert!(listed.iter().any(|n| n.as_slice() == raw.as_bytes()));
}
