//! Authentication and read-only rules (spec §7.1), exercised through setpriv'd clients.

mod common;

use common::*;
use libc::{EACCES, EINVAL, ENOENT, EPERM};
use pmxcfs_ipc::protocol::build::*;
use pmxcfs_ipc::protocol::encode_request;

const NOBODY: u32 = 65534;
const NOGROUP: u32 = 65534;

fn read_only_requests() -> Vec<Vec<u8>> {
    vec![
        set_status(b"tasklist", b"x\0"),                      // 0 EPERM
        log_cluster_msg(6, b"root@pam", b"t", b"m"),          // 1 EPERM
        get_config(b"priv/shadow.cfg"),                       // 2 EPERM
        get_config(b"/priv/shadow.cfg"),                      // 3 EPERM
        get_config(b"nodes/n1/priv/x"),                       // 4 EPERM
        get_config(b"priv"),                                  // 5 EPERM
        get_config(b"storage.cfg"),                           // 6 ok
        get_status(b"tasklist", b""),                         // 7 ENOENT (allowed)
        verify_token(b"user@pve!t2 abc"),                     // 8 ok (allowed)
        simple(1),                                            // 9 ok
        encode_request(4, b"short"),                          // 10 EPERM before EINVAL
        encode_request(7, b""),                               // 11 EPERM before EINVAL
        simple(6),                                            // 12 EINVAL before EPERM
        get_config(b"nodes/n1/privx"),                        // 13 ENOENT (not private)
    ]
}

fn check_read_only(res: &RunResult) {
    assert_eq!(res.connect_error, None, "read-only client must be accepted");
    let r = &res.replies;
    for i in [0, 1, 2, 3, 4, 5, 10, 11] {
        assert_eq!(err_of(&r[i]), EPERM, "request {i}");
    }
    assert_eq!(ok_body(&r[6]), STORAGE_CFG.as_bytes());
    assert_eq!(err_of(&r[7]), ENOENT);
    assert_eq!(ok_body(&r[8]), b"");
    assert_eq!(ok_body(&r[9]), VERSION.as_bytes());
    assert_eq!(err_of(&r[12]), EINVAL);
    assert_eq!(err_of(&r[13]), ENOENT);
}

#[test]
fn root_has_full_access() {
    let (srv, h, name) = start(FakeHandler::new());
    let res = run_client(&name, &read_only_requests(), Some((0, 0)));
    let r = &res.replies;
    assert_eq!(ok_body(&r[0]), b"");
    assert_eq!(ok_body(&r[1]), b"");
    assert_eq!(ok_body(&r[2]), b"secret\n");
    assert_eq!(ok_body(&r[3]), b"secret\n");
    assert_eq!(ok_body(&r[4]), b"secret x\n");
    assert_eq!(err_of(&r[5]), ENOENT);
    assert_eq!(ok_body(&r[7]), b"x\0");
    assert_eq!(err_of(&r[10]), EINVAL);
    assert_eq!(err_of(&r[11]), EINVAL);
    assert_eq!(h.calls.lock().unwrap().len(), 2);
    drop(srv);
}

#[test]
fn uid0_with_www_data_gid_is_read_only() {
    let (srv, h, name) = start(FakeHandler::new());
    let res = run_client(&name, &read_only_requests(), Some((0, WWW_DATA_GID)));
    check_read_only(&res);
    assert!(h.calls.lock().unwrap().is_empty(), "handler must not see denied requests");
    drop(srv);
}

#[test]
fn www_data_user_is_read_only() {
    let (srv, h, name) = start(FakeHandler::new());
    let res = run_client(&name, &read_only_requests(), Some((33, WWW_DATA_GID)));
    check_read_only(&res);
    let res = run_client(&name, &read_only_requests(), Some((NOBODY, WWW_DATA_GID)));
    check_read_only(&res);
    assert!(h.calls.lock().unwrap().is_empty());
    drop(srv);
}

#[test]
fn other_users_are_rejected() {
    let (srv, h, name) = start(FakeHandler::new());
    for (uid, gid) in [(NOBODY, NOGROUP), (0, NOGROUP), (33, 0), (1000, 1000), (NOBODY, 0)] {
        let res = run_client(&name, &[simple(1)], Some((uid, gid)));
        assert_eq!(res.connect_error, Some(EACCES), "uid {uid} gid {gid}");
    }
    assert!(h.calls.lock().unwrap().is_empty());
    // the server still serves accepted clients afterwards
    let res = run_client(&name, &[simple(1)], None);
    assert_eq!(ok_body(&res.replies[0]), VERSION.as_bytes());
    drop(srv);
}
