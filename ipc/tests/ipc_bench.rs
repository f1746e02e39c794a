//! Throughput / latency benchmark through the real libqb client (ignored by default):
//! `CARGO_TARGET_DIR=/work/target-ipc cargo test --release -p pmxcfs-ipc --test ipc_bench -- --ignored --nocapture`

mod common;

use std::fmt::Write;
use std::sync::Arc;

use common::*;

/// `.vmlist` text with `n` guests in the §5.4 format.
fn vmlist(n: u32) -> String {
    let mut s = String::from("{\n\"version\": 1001,\n\"ids\": {\n");
    for i in 0..n {
        let vmid = 100 + i;
        if i > 0 {
            s.push_str(",\n");
        }
        let _ = write!(s, "\"{vmid}\": {{ \"node\": \"node{}\", \"type\": \"qemu\", \"version\": {} }}", i % 8, i + 1);
    }
    s.push_str("}\n\n}\n");
    s
}

struct BenchHandler {
    inner: FakeHandler,
    vmlist: Vec<u8>,
}

macro_rules! delegate {
    ($($f:ident($($a:ident: $t:ty),*) -> $r:ty;)*) => {
        $(fn $f(&self, $($a: $t),*) -> $r { self.inner.$f($($a),*) })*
    };
}

impl pmxcfs_ipc::IpcHandler for BenchHandler {
    fn get_guest_list(&self, _c: &pmxcfs_ipc::Client) -> Result<Vec<u8>, IpcError> {
        Ok(self.vmlist.clone())
    }
    delegate! {
        get_fs_version(c: &pmxcfs_ipc::Client) -> Result<Vec<u8>, IpcError>;
        get_cluster_info(c: &pmxcfs_ipc::Client) -> Result<Vec<u8>, IpcError>;
        set_status(c: &pmxcfs_ipc::Client, n: &[u8], d: &[u8]) -> Result<(), IpcError>;
        get_status(c: &pmxcfs_ipc::Client, n: &[u8], d: &[u8]) -> Result<Vec<u8>, IpcError>;
        get_config(c: &pmxcfs_ipc::Client, p: &[u8]) -> Result<Vec<u8>, IpcError>;
        log_cluster_msg(c: &pmxcfs_ipc::Client, p: u8, i: &[u8], t: &[u8], m: &[u8]) -> Result<(), IpcError>;
        get_cluster_log(c: &pmxcfs_ipc::Client, m: u32, u: &[u8]) -> Result<Vec<u8>, IpcError>;
        get_rrd_dump(c: &pmxcfs_ipc::Client) -> Result<Vec<u8>, IpcError>;
        guest_exists(v: u32) -> bool;
        get_guest_config_property(c: &pmxcfs_ipc::Client, v: u32, p: &[u8]) -> Result<Vec<u8>, IpcError>;
        verify_token(c: &pmxcfs_ipc::Client, t: &[u8]) -> Result<(), IpcError>;
        get_guest_config_properties(c: &pmxcfs_ipc::Client, v: u32, p: &[&[u8]]) -> Result<Vec<u8>, IpcError>;
    }
}

#[test]
#[ignore]
fn bench_fs_version_and_guest_list() {
    let name = unique_name("bench");
    let h = Arc::new(BenchHandler { inner: FakeHandler::new(), vmlist: vmlist(1000).into_bytes() });
    let srv = pmxcfs_ipc::IpcServer::start(&name, h, WWW_DATA_GID).unwrap();
    for (label, id) in [("GET_FS_VERSION", "1"), ("GET_GUEST_LIST(1000)", "3")] {
        for threads in ["1", "8"] {
            let out = std::process::Command::new(client_binary())
                .args([name.as_str(), "bench", id, "20000", threads])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let s = String::from_utf8_lossy(&out.stdout);
            let v: Vec<&str> = s.split_whitespace().collect();
            println!("{label:22} threads={threads}: {} req/s, p50 {} us, p99 {} us", v[0], v[1], v[2]);
        }
    }
    drop(srv);
}
