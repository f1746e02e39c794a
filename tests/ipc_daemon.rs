//! Proxmox's Perl stack (PVE::IPCC) reaches the daemon through libqb IPC: an unmodified
//! libqb client gets the same texts as the virtual files, and status/log writes show up.

mod common;

use common::qb::QbClient;
use common::*;
use pmxcfs_ipc::protocol::build;

fn trim_nul(mut b: Vec<u8>) -> Vec<u8> {
    while b.last() == Some(&0) {
        b.pop();
    }
    b
}

#[test]
fn libqb_client_gets_the_virtual_file_texts_and_can_set_status_and_log() {
    let d = Daemon::start(&[]);
    std::fs::create_dir_all(d.p("nodes/testnode/qemu-server")).unwrap();
    std::fs::write(d.p("nodes/testnode/qemu-server/100.conf"), b"name: vm100\nmemory: 512\n[snap]\nname: old\n").unwrap();
    std::fs::create_dir(d.p("priv")).unwrap();
    std::fs::write(d.p("priv/token.cfg"), b"root@pam!tok 1234\n").unwrap();
    let c = QbClient::connect(&d.ipc_name());

    let (err, body) = c.call(&build::simple(2));
    assert_eq!((err, body), (0, std::fs::read(d.p(".members")).unwrap()), "GET_CLUSTER_INFO = .members");
    let (err, body) = c.call(&build::simple(3));
    assert_eq!((err, body), (0, std::fs::read(d.p(".vmlist")).unwrap()), "GET_GUEST_LIST = .vmlist");
    let (err, body) = c.call(&build::simple(1));
    assert_eq!(err, 0);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["kvstore"]["testnode"].is_object());

    let (err, body) = c.call(&build::get_config(b"nodes/testnode/qemu-server/100.conf"));
    assert_eq!((err, body.as_slice()), (0, &b"name: vm100\nmemory: 512\n[snap]\nname: old\n"[..]));
    let (err, _) = c.call(&build::get_config(b"missing.cfg"));
    assert_eq!(err, -libc::ENOENT);

    let (err, _) = c.call(&build::set_status(b"kv/test", b"hello\0"));
    assert_eq!(err, 0);
    let (err, body) = c.call(&build::get_status(b"kv/test", b""));
    assert_eq!((err, body.as_slice()), (0, &b"hello\0"[..]));
    let version: serde_json::Value = serde_json::from_slice(&std::fs::read(d.p(".version")).unwrap()).unwrap();
    assert_eq!(version["kvstore"]["testnode"]["kv/test"], 0, "a new key starts at version 0");

    let (err, _) = c.call(&build::log_cluster_msg(6, b"root@pam", b"test-tag", b"hello from IPC"));
    assert_eq!(err, 0);
    let log = String::from_utf8(std::fs::read(d.p(".clusterlog")).unwrap()).unwrap();
    assert!(log.contains("\"msg\": \"hello from IPC\"") && log.contains("\"tag\": \"test-tag\""), "{log}");
    let (err, body) = c.call(&build::get_cluster_log(10, b"root@pam"));
    assert_eq!(err, 0);
    assert!(String::from_utf8_lossy(&body).contains("hello from IPC"));

    let (err, body) = c.call(&build::get_guest_config_property(100, b"name"));
    assert_eq!(err, 0);
    assert_eq!(String::from_utf8(body).unwrap(), "{\n\"100\":{\"name\": \"vm100\"}\n}\n");
    let (err, _) = c.call(&build::get_guest_config_property(101, b"name"));
    assert_eq!(err, -libc::ENOENT);
    let (err, body) = c.call(&build::get_guest_config_properties(0, &[b"memory", b"name"]));
    assert_eq!(err, 0);
    assert_eq!(String::from_utf8(body).unwrap(), "{\n\"100\":{\"memory\": \"512\",\"name\": \"vm100\"}\n}\n", "vmid 0 = every guest, snapshot sections ignored");

    let mut token = b"root@pam!tok 1234".to_vec();
    token.push(0);
    let (err, _) = c.call(&pmxcfs_ipc::protocol::encode_request(12, &token));
    assert_eq!(err, 0, "VERIFY_TOKEN of a configured token");
    let (err, _) = c.call(&pmxcfs_ipc::protocol::encode_request(12, b"nope\0"));
    assert_eq!(err, -libc::ENOENT);

    let (err, body) = c.call(&build::simple(10));
    assert_eq!(err, 0);
    assert!(trim_nul(body).is_empty(), "no RRD data yet");
    let (err, _) = c.call(&build::simple(9));
    assert_eq!(err, -libc::ECHRNG, "id 9 is unused");
}
