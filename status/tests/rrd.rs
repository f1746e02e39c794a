//! RRD tests: key table, column adjustment, dump cache, updater with a recording fake, a
//! fake rrdcached socket, and (if installed) the real `rrdtool`.

use pmxcfs_status::rrd::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

fn plan(key: &str, data: &str) -> Result<RrdUpdatePlan, RrdError> {
    let mut d = data.as_bytes().to_vec();
    d.push(0);
    plan_update(Path::new("/db"), key, &d)
}

const NODE_OLD: &str = "3600:0:1795350000:0.5:4:0.1:0.01:1000:500:200:100:5000:2500:123:456";
const NODE_90: &str =
    "3600:0:1795350000:0.5:4:0.1:0.01:1000:500:200:100:5000:2500:123:456:700:0:1:2:3:4:5";

#[test]
fn key_table() {
    let cases: &[(&str, RrdKind, &str, usize, ColumnAdjust, &str)] = &[
        (
            "pve2-node/pve1",
            RrdKind::Node,
            "pve1",
            2,
            ColumnAdjust::Pad(7),
            "/db/pve-node-9.0/pve1",
        ),
        (
            "pve-node-9.0/pve1",
            RrdKind::Node,
            "pve1",
            2,
            ColumnAdjust::None,
            "/db/pve-node-9.0/pve1",
        ),
        (
            "pve-node-10.1/pve1",
            RrdKind::Node,
            "pve1",
            2,
            ColumnAdjust::Keep(19),
            "/db/pve-node-9.0/pve1",
        ),
        (
            "pve2.3-vm/100",
            RrdKind::Vm,
            "100",
            4,
            ColumnAdjust::Pad(7),
            "/db/pve-vm-9.0/100",
        ),
        (
            "pve-vm-9.0/100",
            RrdKind::Vm,
            "100",
            4,
            ColumnAdjust::None,
            "/db/pve-vm-9.0/100",
        ),
        (
            "pve-vm-9.2/100",
            RrdKind::Vm,
            "100",
            4,
            ColumnAdjust::Keep(17),
            "/db/pve-vm-9.0/100",
        ),
        (
            "pve2-storage/pve1/local",
            RrdKind::Storage,
            "pve1/local",
            0,
            ColumnAdjust::None,
            "/db/pve-storage-9.0/pve1/local",
        ),
        (
            "pve-storage-9.0/pve1/local",
            RrdKind::Storage,
            "pve1/local",
            0,
            ColumnAdjust::None,
            "/db/pve-storage-9.0/pve1/local",
        ),
        (
            "pve-storage-9.9/pve1/local",
            RrdKind::Storage,
            "pve1/local",
            0,
            ColumnAdjust::Keep(2),
            "/db/pve-storage-9.0/pve1/local",
        ),
    ];
    for &(key, kind, id, skip, adjust, file) in cases {
        let t = RrdTarget::parse(key).unwrap();
        assert_eq!(
            t,
            RrdTarget {
                kind,
                id: id.to_string(),
                skip,
                adjust
            },
            "{key}"
        );
        assert_eq!(t.file_path(Path::new("/db")), Path::new(file), "{key}");
    }
}

#[test]
fn bad_keys() {
    for key in [
        "",
        "pve2-node/",
        "pve2-node",
        "pve2-node/a/b",
        "pve-node-9.0",
        "pve2-node/..",
        "pve2.3-vm/",
        "pve2.3-vm/1/2",
        "pve2-vm/100",
        "pve2-storage/pve1",
        "pve2-storage/pve1/",
        "pve2-storage//local",
        "pve2-storage/a/b/c",
        "pve2-storage/../x",
        "something/else",
    ] {
        let e = RrdTarget::parse(key).unwrap_err();
        assert_eq!(e, RrdError::BadKey(key.to_string()), "{key}");
        assert!(e.to_string().contains("unknown/wrong key"));
    }
}

#[test]
fn data_validation() {
    assert!(validate_data(b"").is_err());
    assert!(validate_data(b"1:2").is_err());
    assert!(validate_data(&[b'1'; 4096]).is_err());
    let mut ok = vec![b'1'; 4095];
    ok[4094] = 0;
    assert!(validate_data(&ok).is_ok());
    assert_eq!(validate_data(b"1:2\0").unwrap(), b"1:2");
    assert_eq!(RrdError::InvalidData("x").errno(), libc::ENOMEM);
}

#[test]
fn column_adjustment() {
    // old node format: skip uptime+sublevel, 12 values + 7 x U
    let p = plan("pve2-node/pve1", NODE_OLD).unwrap();
    assert_eq!(
        p.values,
        "1795350000:0.5:4:0.1:0.01:1000:500:200:100:5000:2500:123:456:U:U:U:U:U:U:U"
    );
    assert_eq!(p.values.split(':').count(), 1 + 19);
    // 9.0 format: unchanged after the skip
    let p = plan("pve-node-9.0/pve1", NODE_90).unwrap();
    assert_eq!(p.values, NODE_90.splitn(3, ':').nth(2).unwrap());
    // unknown newer format: cut to timestamp + 19
    let newer = format!("{NODE_90}:99:98");
    let p = plan("pve-node-9.5/pve1", &newer).unwrap();
    assert_eq!(p.values, NODE_90.splitn(3, ':').nth(2).unwrap());
    // exactly 19 columns in an unknown format stay intact
    let p = plan("pve-node-9.5/pve1", NODE_90).unwrap();
    assert_eq!(p.values.split(':').count(), 20);
    // old VM format: skip 4, 10 values + 7 x U
    let vm = "100:vm100:running:0:1795350000:2:0.5:2048:1024:10000:5000:1:2:3:4";
    let p = plan("pve2.3-vm/100", vm).unwrap();
    assert_eq!(
        p.values,
        "1795350000:2:0.5:2048:1024:10000:5000:1:2:3:4:U:U:U:U:U:U:U"
    );
    assert_eq!(p.kind, RrdKind::Vm);
    // storage
    assert_eq!(
        plan("pve2-storage/n/s", "1795350000:100:50")
            .unwrap()
            .values,
        "1795350000:100:50"
    );
    assert_eq!(
        plan("pve-storage-9.1/n/s", "1795350000:100:50:7")
            .unwrap()
            .values,
        "1795350000:100:50"
    );
    // too few fields to skip: empty update string (rrdtool will reject it)
    assert_eq!(
        plan("pve2.3-vm/100", "1:2").unwrap().values,
        ":U:U:U:U:U:U:U"
    );
}

#[test]
fn dump_cache_and_expiry() {
    let mut st = RrdStore::new();
    let d = st.dump(1000);
    assert!(d.fresh);
    assert_eq!(d.text, b"");
    assert_eq!(d.ipc_body(), b"\0");

    st.set("pve2-node/a", b"1:2:3\0", 1000).unwrap();
    // still cached at +1 s: the new value is not visible yet, and no NUL over IPC
    let d = st.dump(1001);
    assert!(!d.fresh);
    assert_eq!(d.text, b"");
    assert_eq!(d.ipc_body(), b"");
    // at +2 s a new dump is made
    let d = st.dump(1002);
    assert!(d.fresh);
    assert_eq!(d.file_text(), b"pve2-node/a:1:2:3\n");
    assert_eq!(d.ipc_body(), b"pve2-node/a:1:2:3\n\0");

    st.set("pve2-storage/a/s", b"5:6:7\0", 1100).unwrap();
    st.set("pve2-node/a", b"9:9:9\0", 1100).unwrap(); // replaced, new time
    assert_eq!(
        st.dump(1100).text,
        b"pve2-node/a:9:9:9\npve2-storage/a/s:5:6:7\n"
    );
    // exactly 300 s old is kept, older is dropped
    st.set("old", b"x\0", 1200).unwrap();
    assert_eq!(st.dump(1500).text, b"old:x\n");
    assert_eq!(st.len(), 1);
    assert!(!st.dump(1501).fresh);
    let d = st.dump(1502);
    assert!(d.fresh);
    assert_eq!(d.text, b"");
    assert!(st.is_empty());
    // a clock going backwards invalidates the cache
    st.set("new", b"y\0", 1300).unwrap();
    assert!(st.dump(1300).fresh);
    // invalid data is refused and not stored
    assert!(st.set("k", b"no-nul", 1300).is_err());
    assert_eq!(st.get("k"), None);
    assert_eq!(st.get("new"), Some(&b"y"[..]));
}

#[derive(Default)]
struct Recording {
    existing: Vec<PathBuf>,
    calls: Vec<String>,
    fail_create: bool,
}

impl RrdBackend for Recording {
    fn exists(&self, file: &Path) -> bool {
        self.existing.iter().any(|p| p == file)
    }
    fn create(&mut self, file: &Path, start: i64, kind: RrdKind) -> Result<(), RrdError> {
        self.calls.push(format!(
            "create {} {start} {:?} {}",
            file.display(),
            kind,
            kind.create_defs().len()
        ));
        if self.fail_create {
            return Err(RrdError::Tool {
                status: "1".into(),
                stderr: "nope".into(),
            });
        }
        self.existing.push(file.to_path_buf());
        Ok(())
    }
    fn update(&mut self, file: &Path, values: &str) -> Result<(), RrdError> {
        self.calls
            .push(format!("update {} {values}", file.display()));
        Ok(())
    }
}

#[test]
fn updater_creates_once_then_updates() {
    let now = 1_795_350_139;
    let midnight = local_midnight(now);
    let mut u = RrdUpdater::new(Recording::default());
    let p = plan("pve2-storage/n/s", "1795350000:100:50").unwrap();
    u.apply(&p, now).unwrap();
    u.apply(&p, now).unwrap();
    assert_eq!(
        u.backend().calls,
        vec![
            format!("create /db/pve-storage-9.0/n/s {midnight} Storage 10"),
            "update /db/pve-storage-9.0/n/s 1795350000:100:50".to_string(),
            "update /db/pve-storage-9.0/n/s 1795350000:100:50".to_string(),
        ]
    );
    // a failed create still attempts the update
    let mut u = RrdUpdater::new(Recording {
        fail_create: true,
        ..Default::default()
    });
    u.apply(&plan("pve2-node/n", NODE_OLD).unwrap(), now)
        .unwrap();
    assert_eq!(u.backend().calls.len(), 2);
    assert!(u.backend().calls[0].contains("Node 27"));
}

/// A one-connection fake rrdcached answering each line with the given responses.
fn fake_rrdcached(
    dir: &Path,
    responses: Vec<&'static str>,
) -> (PathBuf, std::thread::JoinHandle<Vec<String>>) {
    let sock = dir.join("rrdcached.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let h = std::thread::spawn(move || {
        let mut got = Vec::new();
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        for resp in responses {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            got.push(line);
            w.write_all(resp.as_bytes()).unwrap();
        }
        got
    });
    (sock, h)
}

#[test]
fn rrdcached_protocol_and_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, h) = fake_rrdcached(
        dir.path(),
        vec!["0 errors, enqueued 1 value(s).\n", "-1 No such file\n"],
    );
    // "rrdtool" = /bin/true: the fallback after a daemon error succeeds
    let mut tool = RrdTool::new(Some(sock.clone()), PathBuf::from("/bin/true"));
    tool.update(Path::new("/db/pve-node-9.0/n"), "1:2:3")
        .unwrap();
    tool.update(Path::new("/db/pve-node-9.0/n"), "4:5:6")
        .unwrap();
    let got = h.join().unwrap();
    assert_eq!(
        got,
        vec![
            "UPDATE /db/pve-node-9.0/n 1:2:3\n",
            "UPDATE /db/pve-node-9.0/n 4:5:6\n"
        ]
    );

    // no daemon socket and a failing tool → typed error
    let mut tool = RrdTool::new(
        Some(dir.path().join("missing.sock")),
        PathBuf::from("/bin/false"),
    );
    assert!(matches!(
        tool.update(Path::new("/x"), "1:2"),
        Err(RrdError::Tool { .. })
    ));
    let mut tool = RrdTool::new(None, dir.path().join("no-such-binary"));
    assert!(matches!(
        tool.update(Path::new("/x"), "1:2"),
        Err(RrdError::Io { .. })
    ));
}

#[test]
fn real_rrdtool_if_installed() {
    let have = std::process::Command::new("rrdtool").output().is_ok();
    if !have {
        println!("rrdtool not installed, skipping real_rrdtool_if_installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let now = 1_795_350_139;
    let mut u = RrdUpdater::new(RrdTool::new(None, PathBuf::from("rrdtool")));
    let data = format!("3600:0:{now}:0.5:4:0.1:0.01:1000:500:200:100:5000:2500:123:456\0");
    let p = plan_update(dir.path(), "pve2-node/pve1", data.as_bytes()).unwrap();
    u.apply(&p, now).unwrap();
    let file = dir.path().join("pve-node-9.0/pve1");
    assert!(file.exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("pve-node-9.0"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o750);
    let info = std::process::Command::new("rrdtool")
        .arg("info")
        .arg(&file)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("step = 60"), "{info}");
    assert_eq!(info.matches(".type = \"").count(), 19);
    assert!(info.contains(&format!("last_update = {now}")), "{info}");
    assert!(info.contains("ds[pressurememoryfull].type = \"GAUGE\""));
    assert!(info.contains("ds[netin].type = \"DERIVE\""));
    assert!(info.contains("rra[7].cf = \"MAX\""));
    assert!(info.contains("rra[3].pdp_per_row = 10080"));
    // a second update for a later time on the existing file
    let data = format!(
        "3600:0:{}:0.5:4:0.1:0.01:1000:500:200:100:5000:2500:123:456\0",
        now + 60
    );
    let p = plan_update(dir.path(), "pve2-node/pve1", data.as_bytes()).unwrap();
    u.apply(&p, now + 60).unwrap();
    // an update in the past is an error from rrdtool
    assert!(matches!(u.apply(&p, now + 60), Err(RrdError::Tool { .. })));
}
