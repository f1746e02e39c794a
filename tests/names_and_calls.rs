//! On a real mount: names as long as the original takes them (through FUSE and from a
//! database), ordinary calls the filesystem does not implement (ioctl, copy_file_range)
//! answered like the original without a log line, and `--root` directories reachable.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;
use pmxcfs_backend::store::SCHEMA;

fn name_of(len: usize) -> String {
    "n".repeat(len)
}

#[test]
fn names_up_to_the_fuse_limit_are_created_listed_and_read_longer_ones_are_too_long() {
    let mut d = Daemon::start(&[]);
    for len in [255, 256, 300, 1000, 1024] {
        let p = d.p(&name_of(len));
        fs::write(&p, format!("{len}\n")).unwrap_or_else(|e| panic!("create {len}-byte name: {e}"));
        assert_eq!(fs::read(&p).unwrap(), format!("{len}\n").as_bytes());
        fs::create_dir(d.p(&format!("d{}", name_of(len - 1)))).unwrap_or_else(|e| panic!("mkdir {len}-byte name: {e}"));
    }
    let listed: Vec<usize> = fs::read_dir(d.mnt())
        .unwrap()
        .map(|e| e.unwrap().file_name().len())
        .filter(|l| *l >= 255)
        .collect();
    assert_eq!(listed.len(), 10, "{listed:?}");
    // over the limit: ENAMETOOLONG for create, lookup, rename and unlink alike (whatever the
    // kernel's own limit is: newer kernels pass longer names through)
    let long = d.p(&name_of(1025));
    assert_eq!(errno(&fs::write(&long, b"x").unwrap_err()), libc::ENAMETOOLONG);
    assert_eq!(errno(&fs::metadata(&long).unwrap_err()), libc::ENAMETOOLONG);
    assert_eq!(errno(&fs::rename(d.p(&name_of(300)), &long).unwrap_err()), libc::ENAMETOOLONG);
    assert_eq!(errno(&fs::remove_file(&long).unwrap_err()), libc::ENAMETOOLONG);
    assert_eq!(errno(&fs::create_dir(d.p(&name_of(2000))).unwrap_err()), libc::ENAMETOOLONG);
    // a name not there but within the limit is simply absent
    assert_eq!(errno(&fs::metadata(d.p(&name_of(700))).unwrap_err()), libc::ENOENT);
    // the database holds them after a restart
    assert_eq!(d.stop(), 0);
    d.spawn().unwrap();
    assert_eq!(fs::read(d.p(&name_of(1000))).unwrap(), b"1000\n");
}

#[test]
fn a_database_with_a_300_byte_name_loads_lists_and_checks_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("config.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(SCHEMA).unwrap();
    let long = name_of(300);
    c.execute("INSERT INTO tree VALUES (1, 0, 1, 0, 1700000000, 8, ?1, ?2)", rusqlite::params![long, b"long\n".as_slice()]).unwrap();
    c.execute("INSERT INTO tree VALUES (2, 0, 2, 0, 1700000000, 4, ?1, NULL)", [name_of(1024)]).unwrap();
    c.execute("INSERT INTO tree VALUES (0, 0, 2, 0, 1700000000, 8, '__version__', NULL)", []).unwrap();
    drop(c);
    let out = Command::new(BIN).args(["check", "--db"]).arg(&db).output().unwrap();
    assert!(out.status.success(), "check:\n{}", String::from_utf8_lossy(&out.stdout));
    let d = Daemon::start_with_db(&db, &[]);
    assert_eq!(fs::read(d.p(&long)).unwrap(), b"long\n");
    assert!(d.p(&name_of(1024)).is_dir());
    let names: Vec<String> = fs::read_dir(d.mnt()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.contains(&long) && names.contains(&name_of(1024)), "{}", names.len());
}

#[test]
fn tcgets_gets_enotty_cp_falls_back_and_poll_is_ready_without_a_word() {
    let d = Daemon::start(&[]);
    fs::write(d.p("storage.cfg"), vec![b'x'; 200_000]).unwrap();
    // what every Perl/openssl open does: isatty → TCGETS
    let py = "import fcntl, sys, termios, errno\n\
              f = open(sys.argv[1], 'rb')\n\
              try:\n    fcntl.ioctl(f.fileno(), termios.TCGETS, bytes(64))\n    print('ok')\n\
              except OSError as e:\n    print(errno.errorcode[e.errno])\n";
    for _ in 0..3 {
        let out = Command::new("python3").args(["-c", py]).arg(d.p("storage.cfg")).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ENOTTY", "{}", String::from_utf8_lossy(&out.stderr));
    }
    // cp within the mount (copy_file_range, SEEK_DATA) and into it
    let out = Command::new("cp").arg(d.p("storage.cfg")).arg(d.p("copy.cfg")).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "cp: {}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("cp").arg("--reflink=auto").arg(d.p("copy.cfg")).arg(d.p("copy2.cfg")).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "cp: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read(d.p("copy2.cfg")).unwrap(), vec![b'x'; 200_000]);
    // select/poll on a descriptor (event loops that watch a config file): always ready
    let py = "import select, sys\nf = open(sys.argv[1], 'rb')\np = select.poll()\np.register(f, select.POLLIN)\nprint(p.poll(1000))\n";
    let out = Command::new("python3").args(["-c", py]).arg(d.p("storage.cfg")).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(", 1)]") || String::from_utf8_lossy(&out.stdout).contains(", 5)]"), "poll: {} {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let log = d.log_text();
    assert!(!log.contains("Not Implemented") && !log.contains("warning"), "daemon log:\n{log}");
}

#[test]
fn root_directories_above_the_mount_are_0755() {
    let d = Daemon::start(&[]);
    for dir in ["etc", "var", "var/lib", "run"] {
        let mode = fs::metadata(d.root.path().join(dir)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755, "{dir}");
    }
    let mode = fs::metadata(d.mnt()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755, "the mount root as the filesystem shows it");
    // www-data (not root) can reach the mount and read a file there (the temp root is 0700)
    fs::set_permissions(d.root.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(d.p("storage.cfg"), b"dir: local\n").unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=www-data", "--regid=www-data", "--clear-groups", "cat"])
        .arg(d.p("storage.cfg"))
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"dir: local\n", "{}", String::from_utf8_lossy(&out.stderr));
}
