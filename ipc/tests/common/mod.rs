//! Shared test helpers: a fake handler with fixture texts and a libqb C test client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pmxcfs_ipc::guest_props;
use pmxcfs_ipc::protocol::{self, Response};
use pmxcfs_ipc::{Client, IpcHandler, IpcServer};
pub use pmxcfs_ipc::IpcError;

pub const WWW_DATA_GID: u32 = 33;

// Fixture texts written from spec §5 / §6.4 / §7.3.
pub const VERSION: &str = "{\n\"starttime\": 1795345923,\n\"clinfo\": 0,\n\"vmlist\": 6,\n\"corosync.conf\": 1,\n\"storage.cfg\": 1,\n\"kvstore\": {\n\"testnode\": {\n}\n}\n}\n";
pub const MEMBERS: &str = "{\n\"nodename\": \"pve1\",\n\"version\": 7,\n\"cluster\": { \"name\": \"mycluster\", \"version\": 3, \"nodes\": 2, \"quorate\": 1 },\n\"nodelist\": {\n  \"pve1\": { \"id\": 1, \"online\": 1, \"ip\": \"192.0.2.1\"},\n  \"pve2\": { \"id\": 2, \"online\": 0}\n  }\n}\n";
pub const VMLIST: &str = "{\n\"version\": 6,\n\"ids\": {\n\"100\": { \"node\": \"n2\", \"type\": \"lxc\", \"version\": 3 },\n\"200\": { \"node\": \"n1\", \"type\": \"qemu\", \"version\": 4 }}\n\n}\n";
pub const RRD: &[u8] = b"pve2-node/pve1:1234:0:1.5:8:0.1:0.01:100:50:10:5:1000:500:10:20\n\0";
pub const CLUSTERLOG_EMPTY: &str = "{\n\"data\": [\n]\n}\n";
pub const STORAGE_CFG: &str = "dir: local\n\tpath /var/lib/vz\n\tcontent iso,backup\n";
pub const TOKEN_CFG: &str = "root@pam!t1 11111111-2222-3333-4444-555555555555\nuser@pve!t2 abc\n";
pub const CONF_100: &str = "arch: amd64\nlock: backup\ntags: a;b\n\n[snap]\nlock: snapshot\n";
pub const CONF_200: &str = "boot: order=scsi0\nname: vm200\ndescription: say \"hi\" \\o/\n";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    SetStatus { pid: u32, name: Vec<u8>, data: Vec<u8> },
    Log { pid: u32, priority: u8, ident: Vec<u8>, tag: Vec<u8>, msg: Vec<u8> },
    ClusterLog { max: u32, user: Vec<u8> },
}

#[derive(Default)]
pub struct FakeHandler {
    pub kv: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    pub calls: Mutex<Vec<Call>>,
    pub files: HashMap<Vec<u8>, Vec<u8>>,
    /// Artificial delay for GET_GUEST_LIST (slow-handler tests).
    pub guest_list_delay: Option<Duration>,
    /// Body returned by GET_RRD_DUMP (default: RRD).
    pub rrd_override: Option<Vec<u8>>,
}

impl FakeHandler {
    pub fn new() -> FakeHandler {
        let mut files = HashMap::new();
        files.insert(b"storage.cfg".to_vec(), STORAGE_CFG.as_bytes().to_vec());
        files.insert(b"empty.cfg".to_vec(), Vec::new());
        files.insert(b"priv/token.cfg".to_vec(), TOKEN_CFG.as_bytes().to_vec());
        files.insert(b"priv/shadow.cfg".to_vec(), b"secret\n".to_vec());
        files.insert(b"nodes/n1/priv/x".to_vec(), b"secret x\n".to_vec());
        files.insert(b"nodes/n1/lxc/100.conf".to_vec(), CONF_100.as_bytes().to_vec());
        files.insert(b"nodes/n1/qemu-server/200.conf".to_vec(), CONF_200.as_bytes().to_vec());
        FakeHandler { files, ..Default::default() }
    }

    fn read(&self, path: &[u8]) -> Option<&[u8]> {
        let mut p = path;
        while let [b'/', rest @ ..] = p {
            p = rest;
        }
        self.files.get(p).map(|v| v.as_slice())
    }

    fn conf(&self, vmid: u32) -> Option<&[u8]> {
        match vmid {
            100 => self.read(b"nodes/n1/lxc/100.conf"),
            200 => self.read(b"nodes/n1/qemu-server/200.conf"),
            _ => None,
        }
    }

    fn props_json(&self, vmid: u32, props: &[&[u8]]) -> Result<Vec<u8>, IpcError> {
        if vmid == 0 {
            Ok(guest_props::all_guests_json([100, 200].map(|v| (v, self.conf(v))), props))
        } else {
            guest_props::single_guest_json(vmid, self.conf(vmid), props)
        }
    }
}

impl IpcHandler for FakeHandler {
    fn get_fs_version(&self, _c: &Client) -> Result<Vec<u8>, IpcError> {
        Ok(VERSION.as_bytes().to_vec())
    }
    fn get_cluster_info(&self, _c: &Client) -> Result<Vec<u8>, IpcError> {
        Ok(MEMBERS.as_bytes().to_vec())
    }
    fn get_guest_list(&self, _c: &Client) -> Result<Vec<u8>, IpcError> {
        if let Some(d) = self.guest_list_delay {
            std::thread::sleep(d);
        }
        Ok(VMLIST.as_bytes().to_vec())
    }
    fn set_status(&self, c: &Client, name: &[u8], data: &[u8]) -> Result<(), IpcError> {
        self.calls.lock().unwrap().push(Call::SetStatus { pid: c.pid, name: name.to_vec(), data: data.to_vec() });
        if data.len() > 32768 {
            return Err(IpcError::TooLarge);
        }
        let mut kv = self.kv.lock().unwrap();
        if data.is_empty() {
            kv.remove(name);
        } else {
            kv.insert(name.to_vec(), data.to_vec());
        }
        Ok(())
    }
    fn get_status(&self, _c: &Client, name: &[u8], nodename: &[u8]) -> Result<Vec<u8>, IpcError> {
        if !nodename.is_empty() && nodename != b"testnode" {
            return Err(IpcError::NotFound);
        }
        self.kv.lock().unwrap().get(name).cloned().ok_or(IpcError::NotFound)
    }
    fn get_config(&self, _c: &Client, path: &[u8]) -> Result<Vec<u8>, IpcError> {
        self.read(path).map(|v| v.to_vec()).ok_or(IpcError::NotFound)
    }
    fn log_cluster_msg(&self, c: &Client, priority: u8, ident: &[u8], tag: &[u8], msg: &[u8]) -> Result<(), IpcError> {
        self.calls.lock().unwrap().push(Call::Log {
            pid: c.pid,
            priority,
            ident: ident.to_vec(),
            tag: tag.to_vec(),
            msg: msg.to_vec(),
        });
        Ok(())
    }
    fn get_cluster_log(&self, _c: &Client, max: u32, user: &[u8]) -> Result<Vec<u8>, IpcError> {
        self.calls.lock().unwrap().push(Call::ClusterLog { max, user: user.to_vec() });
        Ok(CLUSTERLOG_EMPTY.as_bytes().to_vec())
    }
    fn get_rrd_dump(&self, _c: &Client) -> Result<Vec<u8>, IpcError> {
        Ok(self.rrd_override.clone().unwrap_or_else(|| RRD.to_vec()))
    }
    fn guest_exists(&self, vmid: u32) -> bool {
        vmid == 100 || vmid == 200
    }
    fn get_guest_config_property(&self, _c: &Client, vmid: u32, prop: &[u8]) -> Result<Vec<u8>, IpcError> {
        self.props_json(vmid, &[prop])
    }
    fn verify_token(&self, _c: &Client, token: &[u8]) -> Result<(), IpcError> {
        match self.read(b"priv/token.cfg") {
            Some(cfg) if protocol::token_cfg_contains(cfg, token) => Ok(()),
            _ => Err(IpcError::NotFound),
        }
    }
    fn get_guest_config_properties(&self, _c: &Client, vmid: u32, props: &[&[u8]]) -> Result<Vec<u8>, IpcError> {
        self.props_json(vmid, props)
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A service name unique to this test process and call.
pub fn unique_name(tag: &str) -> String {
    format!("pve2-test-{}-{}-{}", std::process::id(), tag, COUNTER.fetch_add(1, Ordering::SeqCst))
}

pub fn start(handler: FakeHandler) -> (IpcServer, Arc<FakeHandler>, String) {
    init_logging();
    let h = Arc::new(handler);
    let name = unique_name("srv");
    let srv = IpcServer::start(&name, h.clone(), WWW_DATA_GID).expect("start server");
    (srv, h, name)
}

pub fn init_logging() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_test_writer()
            .try_init();
    });
}

/// Build the C client once per test process (world-readable so setpriv'd users can run it).
pub fn client_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // inside cargo's per-target temp dir (reused between runs, nothing left in /tmp)
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("qbclient");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/c/qbclient.c");
        let out = dir.join("qbclient");
        // test binaries run in parallel: build under a private name, then rename atomically
        let tmp = dir.join(format!("qbclient.{}.tmp", std::process::id()));
        let st = Command::new("cc")
            .args(["-O1", "-Wall", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg("-lqb")
            .arg("-lpthread")
            .status()
            .expect("run cc");
        assert!(st.success(), "compiling the libqb test client failed");
        std::fs::rename(&tmp, &out).expect("install the test client");
        out
    })
    .clone()
}

/// One reply as seen by the client: Ok(response) or Err(negative qb_ipcc_sendv_recv rc).
pub type Reply = Result<Response, i32>;

pub struct RunResult {
    pub pid: u32,
    pub replies: Vec<Reply>,
    pub connect_error: Option<i32>,
}

/// Frame marker: reconnect.
pub const RECONNECT: &[u8] = &[];

/// Run the client with `requests` (an empty request = reconnect), optionally as another
/// user via setpriv (`Some((uid, gid))`).
pub fn run_client(name: &str, requests: &[Vec<u8>], as_user: Option<(u32, u32)>) -> RunResult {
    let bin = client_binary();
    let mut cmd = match as_user {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}")).arg("--clear-groups").arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    cmd.arg(name).arg("requests").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn client");
    let pid = child.id();
    let mut input = Vec::new();
    for r in requests {
        if r.is_empty() {
            input.extend_from_slice(&u32::MAX.to_ne_bytes());
        } else {
            input.extend_from_slice(&(r.len() as u32).to_ne_bytes());
            input.extend_from_slice(r);
        }
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("client timed out");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    let out = reader.join().unwrap();
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err);
    if status.code() == Some(2) {
        let errno = err.trim().strip_prefix("connect failed: ").and_then(|s| s.parse().ok()).unwrap_or(-1);
        return RunResult { pid, replies: Vec::new(), connect_error: Some(errno) };
    }
    assert!(status.success(), "client failed: {status:?} {err}");
    let mut replies = Vec::new();
    let mut off = 0;
    while off + 4 <= out.len() {
        let rc = i32::from_ne_bytes(out[off..off + 4].try_into().unwrap());
        off += 4;
        if rc > 0 {
            let n = rc as usize;
            let resp = protocol::decode_response(&out[off..off + n]).expect("decodable response");
            assert_eq!(resp.size as usize, n, "size field equals received length");
            replies.push(Ok(resp));
            off += n;
        } else {
            replies.push(Err(rc));
        }
    }
    RunResult { pid, replies, connect_error: None }
}

pub fn ok_body(r: &Reply) -> Vec<u8> {
    match r {
        Ok(resp) => {
            assert_eq!(resp.error, 0, "expected success, got error {}", resp.error);
            resp.body.clone()
        }
        Err(rc) => panic!("transport error {rc}"),
    }
}

pub fn err_of(r: &Reply) -> i32 {
    match r {
        Ok(resp) => {
            assert!(resp.body.is_empty(), "error reply must have no body");
            -resp.error
        }
        Err(rc) => panic!("transport error {rc}"),
    }
}

/// Re-runs the named tests of the calling test binary under valgrind's memcheck and asserts
/// no error and `passed` passing tests (skipped when valgrind is missing; the re-run itself
/// sees PMXCFS_UNDER_VALGRIND and does not recurse).
pub fn rerun_under_valgrind(tests: &[&str], passed: usize) {
    if std::env::var_os("PMXCFS_UNDER_VALGRIND").is_some() {
        return;
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("valgrind not installed: skipped (scripts/install-deps.sh installs it)");
        return;
    }
    client_binary(); // built before valgrind slows everything down
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("valgrind")
        .args(["-q", "--error-exitcode=99"])
        .arg(&exe)
        .arg("--test-threads=1")
        .args(tests)
        .env("PMXCFS_UNDER_VALGRIND", "1")
        .output()
        .expect("run valgrind");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "memcheck found errors ({:?}):\n{text}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("{passed} passed")), "{stdout}");
}
