//! Every request type through a real libqb client against a running server.

mod common;

use common::*;
use libc::{ECHRNG, EFBIG, EINVAL, ENOENT, EIO};
use pmxcfs_ipc::protocol::build::*;
use pmxcfs_ipc::protocol::{self, encode_request};

#[test]
fn every_request_type_matches_fixtures() {
    let (mut srv, h, name) = start(FakeHandler::new());
    let reqs = vec![
        simple(1),                                              // 0
        simple(2),                                              // 1
        simple(3),                                              // 2
        set_status(b"tasklist", b"[\"x\"]\0"),                  // 3
        get_status(b"tasklist", b""),                           // 4
        get_status(b"tasklist", b"testnode"),                   // 5
        get_status(b"nope", b""),                               // 6
        get_config(b"storage.cfg"),                             // 7
        get_config(b"/storage.cfg"),                            // 8
        get_config(b"missing.cfg"),                             // 9
        get_config(b"empty.cfg"),                               // 10
        log_cluster_msg(6, b"root@pam", b"cluster", b"hello"),  // 11
        get_cluster_log(0, b""),                                // 12
        get_cluster_log(10, b"root@pam"),                       // 13
        simple(9),                                              // 14
        simple(10),                                             // 15
        get_guest_config_property(100, b"lock"),                // 16
        get_guest_config_property(0, b"lock"),                  // 17
        get_guest_config_property(99, b"lock"),                 // 18
        get_guest_config_property(300, b"lock"),                // 19
        verify_token(b"user@pve!t2 abc"),                       // 20
        verify_token(b"user@pve!t2 abd"),                       // 21
        get_guest_config_properties(0, &[b"lock", b"description", b"tags"]), // 22
        get_guest_config_properties(200, &[b"name", b"description"]),        // 23
        set_status(b"big", &vec![b'x'; 32769]),                 // 24
        set_status(b"tasklist", b""),                           // 25
        get_status(b"tasklist", b""),                           // 26
        simple(14),                                             // 27
    ];
    let res = run_client(&name, &reqs, None);
    assert_eq!(res.connect_error, None);
    let r = &res.replies;
    assert_eq!(r.len(), reqs.len());
    // ids are echoed
    for (req, rep) in reqs.iter().zip(r) {
        let id = i32::from_ne_bytes(req[0..4].try_into().unwrap());
        assert_eq!(rep.as_ref().unwrap().id, id);
    }
    assert_eq!(ok_body(&r[0]), VERSION.as_bytes());
    assert_eq!(ok_body(&r[1]), MEMBERS.as_bytes());
    assert_eq!(ok_body(&r[2]), VMLIST.as_bytes());
    assert_eq!(ok_body(&r[3]), b"");
    assert_eq!(ok_body(&r[4]), b"[\"x\"]\0");
    assert_eq!(ok_body(&r[5]), b"[\"x\"]\0");
    assert_eq!(err_of(&r[6]), ENOENT);
    assert_eq!(ok_body(&r[7]), STORAGE_CFG.as_bytes());
    assert_eq!(ok_body(&r[8]), STORAGE_CFG.as_bytes());
    assert_eq!(err_of(&r[9]), ENOENT);
    assert_eq!(ok_body(&r[10]), b""); // empty file: success without body
    assert_eq!(ok_body(&r[11]), b"");
    assert_eq!(ok_body(&r[12]), CLUSTERLOG_EMPTY.as_bytes());
    assert_eq!(ok_body(&r[13]), CLUSTERLOG_EMPTY.as_bytes());
    assert_eq!(err_of(&r[14]), ECHRNG);
    assert_eq!(ok_body(&r[15]), RRD);
    assert_eq!(ok_body(&r[16]), b"{\n\"100\":{\"lock\": \"backup\"}\n}\n");
    assert_eq!(ok_body(&r[17]), b"{\n\"100\":{\"lock\": \"backup\"}\n}\n");
    assert_eq!(err_of(&r[18]), EINVAL);
    assert_eq!(err_of(&r[19]), ENOENT);
    assert_eq!(ok_body(&r[20]), b"");
    assert_eq!(err_of(&r[21]), ENOENT);
    assert_eq!(
        String::from_utf8(ok_body(&r[22])).unwrap(),
        "{\n\"100\":{\"lock\": \"backup\",\"tags\": \"a;b\"},\n\"200\":{\"description\": \"say \\\"hi\\\" \\\\o/\"}\n}\n"
    );
    assert_eq!(
        String::from_utf8(ok_body(&r[23])).unwrap(),
        "{\n\"200\":{\"name\": \"vm200\",\"description\": \"say \\\"hi\\\" \\\\o/\"}\n}\n"
    );
    assert_eq!(err_of(&r[24]), EFBIG);
    assert_eq!(ok_body(&r[25]), b"");
    assert_eq!(err_of(&r[26]), ENOENT);
    assert_eq!(err_of(&r[27]), ECHRNG);

    let calls = h.calls.lock().unwrap().clone();
    assert!(calls.contains(&Call::SetStatus { pid: res.pid, name: b"tasklist".to_vec(), data: b"[\"x\"]\0".to_vec() }));
    // the log entry carries the client pid from libqb's connection stats
    assert!(calls.contains(&Call::Log {
        pid: res.pid,
        priority: 6,
        ident: b"root@pam".to_vec(),
        tag: b"cluster".to_vec(),
        msg: b"hello".to_vec()
    }));
    assert!(calls.contains(&Call::ClusterLog { max: 50, user: b"".to_vec() }));
    assert!(calls.contains(&Call::ClusterLog { max: 10, user: b"root@pam".to_vec() }));
    srv.stop();
}

#[test]
fn large_payloads_and_response_limits() {
    let mut h = FakeHandler::new();
    // a response that does not fit the client's 1 MiB buffer → connection closed
    h.rrd_override = Some(vec![b'r'; 2 * 1024 * 1024]);
    let (srv, _h, name) = start(h);
    let reqs = vec![
        set_status(b"k", &vec![b'y'; 32768]), // at the limit: ok
        get_status(b"k", b""),
        simple(10), // too large: disconnect
        RECONNECT.to_vec(),
        simple(1),
    ];
    let res = run_client(&name, &reqs, None);
    let r = &res.replies;
    assert_eq!(ok_body(&r[0]), b"");
    assert_eq!(ok_body(&r[1]).len(), 32768);
    assert!(r[2].is_err(), "oversized response must close the connection, got {:?}", r[2].as_ref().map(|x| x.error));
    assert_eq!(ok_body(&r[3]), VERSION.as_bytes());
    drop(srv);
}

#[test]
fn handler_errno_normalisation() {
    // A handler returning a bogus errno (0 or negative) is reported as EIO, never success.
    struct Bad;
    impl pmxcfs_ipc::IpcHandler for Bad {
        fn get_fs_version(&self, _: &pmxcfs_ipc::Client) -> Result<Vec<u8>, IpcError> { Err(IpcError::Errno(0)) }
        fn get_cluster_info(&self, _: &pmxcfs_ipc::Client) -> Result<Vec<u8>, IpcError> { Err(IpcError::Errno(-5)) }
        fn get_guest_list(&self, _: &pmxcfs_ipc::Client) -> Result<Vec<u8>, IpcError> { panic!("boom") }
        fn set_status(&self, _: &pmxcfs_ipc::Client, _: &[u8], _: &[u8]) -> Result<(), IpcError> { Ok(()) }
        fn get_status(&self, _: &pmxcfs_ipc::Client, _: &[u8], _: &[u8]) -> Result<Vec<u8>, IpcError> { Err(IpcError::NotFound) }
        fn get_config(&self, _: &pmxcfs_ipc::Client, _: &[u8]) -> Result<Vec<u8>, IpcError> { Err(IpcError::NotFound) }
        fn log_cluster_msg(&self, _: &pmxcfs_ipc::Client, _: u8, _: &[u8], _: &[u8], _: &[u8]) -> Result<(), IpcError> { Ok(()) }
        fn get_cluster_log(&self, _: &pmxcfs_ipc::Client, _: u32, _: &[u8]) -> Result<Vec<u8>, IpcError> { Ok(vec![]) }
        fn get_rrd_dump(&self, _: &pmxcfs_ipc::Client) -> Result<Vec<u8>, IpcError> { Ok(vec![]) }
        fn guest_exists(&self, _: u32) -> bool { false }
        fn get_guest_config_property(&self, _: &pmxcfs_ipc::Client, _: u32, _: &[u8]) -> Result<Vec<u8>, IpcError> { Ok(vec![]) }
        fn verify_token(&self, _: &pmxcfs_ipc::Client, _: &[u8]) -> Result<(), IpcError> { Err(IpcError::NotFound) }
        fn get_guest_config_properties(&self, _: &pmxcfs_ipc::Client, _: u32, _: &[&[u8]]) -> Result<Vec<u8>, IpcError> { Ok(vec![]) }
    }
    init_logging();
    let name = unique_name("bad");
    let srv = pmxcfs_ipc::IpcServer::start(&name, std::sync::Arc::new(Bad), WWW_DATA_GID).unwrap();
    let res = run_client(&name, &[simple(1), simple(2), simple(3), simple(1)], None);
    assert_eq!(err_of(&res.replies[0]), EIO);
    assert_eq!(err_of(&res.replies[1]), EIO);
    assert_eq!(err_of(&res.replies[2]), EIO); // handler panic → EIO, server keeps running
    assert_eq!(err_of(&res.replies[3]), EIO);
    drop(srv);
}

#[test]
fn service_name_in_use_is_an_error() {
    let (srv, h, name) = start(FakeHandler::new());
    let e = pmxcfs_ipc::IpcServer::start(&name, h.clone(), WWW_DATA_GID).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE), "{e}");
    // the first server still works
    let res = run_client(&name, &[simple(1)], None);
    assert_eq!(ok_body(&res.replies[0]), VERSION.as_bytes());
    drop(srv);
    // and after stop the name is free again
    let srv2 = pmxcfs_ipc::IpcServer::start(&name, h, WWW_DATA_GID).unwrap();
    let res = run_client(&name, &[simple(2)], None);
    assert_eq!(ok_body(&res.replies[0]), MEMBERS.as_bytes());
    drop(srv2);
    let _ = protocol::CFS_IPC_GET_FS_VERSION;
    let _ = encode_request;
}

/// A reply too large for the client's buffer disconnects it without touching freed memory
/// (libqb frees a connection disconnected inside `msg_process` under its own dispatcher):
/// the test above, re-run under valgrind's memcheck.
#[test]
fn too_large_replies_disconnect_without_touching_freed_memory_under_valgrind() {
    rerun_under_valgrind(&["large_payloads_and_response_limits"], 1);
}
