//! kvstore tests: golden UPDATE payloads, version rules, nodeip, GET_STATUS, `.version` text.

mod common;

use common::load_hex;
use pmxcfs_status::kvstore::*;
use pmxcfs_status::{SetOutcome, StatusStore};
use std::path::Path;

const NORMAL_HDR: usize = 24;

#[test]
fn golden_update_messages_decode() {
    let m = load_hex("update_nodeip_node1_l7.hex");
    assert_eq!(m.len(), 291);
    let (key, value) = decode_update(&m[NORMAL_HDR..]).unwrap();
    assert_eq!(key, "nodeip");
    assert_eq!(value, b"10.216.0.1\0");

    let m = load_hex("update_kv_golden_node2_l60.hex");
    assert_eq!(m.len(), 297);
    let payload = &m[NORMAL_HDR..];
    // the capture has stack garbage after the key's NUL; it must be ignored
    assert!(payload[10..256].iter().any(|&b| b != 0));
    let (key, value) = decode_update(payload).unwrap();
    assert_eq!(key, "kv/golden");
    assert_eq!(value, b"hello from node2\0");

    // our encoding zero-fills the key tail, otherwise identical
    let enc = encode_update(key, value).unwrap();
    assert_eq!(enc.len(), payload.len());
    assert_eq!(&enc[..10], &payload[..10]);
    assert!(enc[10..256].iter().all(|&b| b == 0));
    assert_eq!(&enc[256..], &payload[256..]);
}

#[test]
fn update_payload_errors() {
    assert!(decode_update(&[0u8; 255]).is_err());
    assert!(decode_update(&[b'a'; 300]).is_err());
    let (k, v) = decode_update(&[0u8; 256]).unwrap();
    assert_eq!((k, v), ("", &b""[..]));
    assert!(encode_update(&"k".repeat(256), b"").is_err());
    assert!(encode_update("a\0b", b"").is_err());
    assert_eq!(encode_update(&"k".repeat(255), b"x").unwrap().len(), 257);
}

#[test]
fn versions_and_deletes() {
    let mut kv = KvStore::new("pve1");
    assert_eq!(
        kv.set_local("tasklist", b"a\0").unwrap(),
        KvSet::Stored { version: 0 }
    );
    assert_eq!(
        kv.set_local("tasklist", b"a\0").unwrap(),
        KvSet::Stored { version: 1 }
    );
    assert_eq!(
        kv.set_local("tasklist", b"b\0").unwrap(),
        KvSet::Stored { version: 2 }
    );
    assert_eq!(kv.get("", "tasklist").unwrap(), b"b\0");
    assert_eq!(kv.get("pve1", "tasklist").unwrap(), b"b\0");
    assert_eq!(kv.set_local("tasklist", b"").unwrap(), KvSet::Deleted);
    assert_eq!(kv.get("", "tasklist"), Err(KvError::NotFound));
    // re-created key starts at 0 again
    assert_eq!(
        kv.set_local("tasklist", b"c\0").unwrap(),
        KvSet::Stored { version: 0 }
    );
}

#[test]
fn size_limit_is_efbig() {
    let mut kv = KvStore::new("pve1");
    assert!(kv.set_local("big", &vec![1u8; 32768]).is_ok());
    let e = kv.set_local("big", &vec![1u8; 32769]).unwrap_err();
    assert_eq!(e, KvError::TooLarge(32769));
    assert_eq!(e.errno(), libc::EFBIG);
    // remote updates have no limit
    assert!(kv.set_remote("pve2", "big", &vec![1u8; 40000]).is_ok());
}

#[test]
fn nodeip_rules() {
    let mut kv = KvStore::new("pve1");
    assert_eq!(
        kv.set_local("nodeip", b"192.0.2.1\0").unwrap(),
        KvSet::NodeIp { changed: true }
    );
    assert_eq!(
        kv.set_local("nodeip", b"192.0.2.1\0").unwrap(),
        KvSet::NodeIp { changed: false }
    );
    assert_eq!(
        kv.set_local("nodeip", b"192.0.2.9\0").unwrap(),
        KvSet::NodeIp { changed: true }
    );
    assert_eq!(kv.node_ip("pve1"), Some("192.0.2.9"));
    for bad in [&b""[..], b"192.0.2.1", &[b'1'; 256][..]] {
        let e = kv.set_local("nodeip", bad).unwrap_err();
        assert_eq!(e, KvError::InvalidNodeIp);
        assert_eq!(e.errno(), libc::ENOMEM);
    }
    let mut long = vec![b'1'; 254];
    long.push(0);
    assert!(kv.set_local("nodeip", &long).is_ok());
    // nodeip is not a table entry
    assert_eq!(kv.get("", "nodeip"), Err(KvError::NotFound));
    assert_eq!(
        kv.set_remote("pve2", "nodeip", b"192.0.2.2\0").unwrap(),
        KvSet::NodeIp { changed: true }
    );
    assert_eq!(kv.node_ip("pve2"), Some("192.0.2.2"));
    assert!(kv.remote_table("pve2").is_none());
}

#[test]
fn get_status_local_vs_named() {
    let mut kv = KvStore::new("pve1");
    kv.set_local("kv/x", b"local\0").unwrap();
    kv.set_remote("pve2", "kv/x", b"remote\0").unwrap();
    assert_eq!(kv.get("", "kv/x").unwrap(), b"local\0");
    assert_eq!(kv.get("pve1", "kv/x").unwrap(), b"local\0");
    assert_eq!(kv.get("pve2", "kv/x").unwrap(), b"remote\0");
    assert_eq!(kv.get("pve3", "kv/x"), Err(KvError::NotFound));
    assert_eq!(kv.get("pve2", "kv/y"), Err(KvError::NotFound));
    assert_eq!(KvError::NotFound.errno(), libc::ENOENT);
    kv.remove_node("pve2");
    assert_eq!(kv.get("pve2", "kv/x"), Err(KvError::NotFound));
}

#[test]
fn version_text_format() {
    let mut kv = KvStore::new("testnode");
    assert_eq!(
        kv.version_text(&[]),
        "\"kvstore\": {\n\"testnode\": {\n}\n}\n"
    );
    kv.set_local("tasklist", b"x\0").unwrap();
    kv.set_local("tasklist", b"y\0").unwrap();
    kv.set_local("tasklist", b"z\0").unwrap();
    kv.set_local("tasklist", b"w\0").unwrap();
    kv.set_local("ceph-versions", b"v\0").unwrap();
    kv.set_remote("pve2", "kv/a", b"1\0").unwrap();
    kv.set_remote("pve3", "kv/b", b"1\0").unwrap();
    kv.set_remote("pve3", "kv/b", b"").unwrap(); // empty table still listed
    assert_eq!(kv.remote_nodes(), vec!["pve2", "pve3"]);
    assert_eq!(
        kv.version_text(&["pve3", "pve4", "pve2"]),
        "\"kvstore\": {\n\"testnode\": {\n\"ceph-versions\": 0,\n\"tasklist\": 3}\n,\n\"pve3\": {\n}\n,\n\"pve2\": {\n\"kv/a\": 0}\n}\n"
    );
}

#[test]
fn status_store_dispatch() {
    let mut st = StatusStore::new("pve1", Path::new("/base"));
    assert_eq!(
        st.set_local("kv/a", b"1\0", 100).unwrap(),
        SetOutcome::Kv(KvSet::Stored { version: 0 })
    );
    assert_eq!(st.get("", "kv/a").unwrap(), b"1\0");
    // RRD keys go to the RRD table and come with a plan
    match st
        .set_local("rrd/pve2-storage/pve1/local", b"1000:10:5\0", 100)
        .unwrap()
    {
        SetOutcome::Rrd { plan: Some(p) } => {
            assert_eq!(p.file, Path::new("/base/pve-storage-9.0/pve1/local"));
            assert_eq!(p.values, "1000:10:5");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        st.get("", "rrd/pve2-storage/pve1/local").unwrap_err(),
        KvError::NotFound
    );
    // unknown RRD key: stored (and dumped) but no plan
    assert_eq!(
        st.set_local("rrd/bogus/x", b"1:2\0", 100).unwrap(),
        SetOutcome::Rrd { plan: None }
    );
    assert_eq!(
        st.rrd.dump(100).text,
        b"bogus/x:1:2\npve2-storage/pve1/local:1000:10:5\n"
    );
    // invalid RRD data → ENOMEM; oversize → EFBIG
    assert_eq!(
        st.set_local("rrd/pve2-node/pve1", b"1:2", 100)
            .unwrap_err()
            .errno(),
        libc::ENOMEM
    );
    assert_eq!(
        st.set_local("rrd/pve2-node/pve1", &vec![b'1'; 40000], 100)
            .unwrap_err()
            .errno(),
        libc::EFBIG
    );
    // remote
    st.set_remote("pve2", "tasklist", b"t\0", 100).unwrap();
    assert_eq!(st.get("pve2", "tasklist").unwrap(), b"t\0");
    assert!(matches!(
        st.set_remote("pve2", "nodeip", b"10.0.0.2\0", 100).unwrap(),
        SetOutcome::Kv(KvSet::NodeIp { changed: true })
    ));
}
