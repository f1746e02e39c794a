//! Ring-buffer directories a killed server of our service left in `/dev/shm`. libqb puts
//! each connection's rings in `/dev/shm/qb-SERVERPID-CLIENTPID-FD-XXXXXX` and removes the
//! directory only when the server disconnects the client; after a SIGKILL or a crash they
//! stay, a few MiB of RAM per client that was connected. Removed at the next start.

use std::fs;
use std::path::Path;

/// Where libqb keeps the rings on Linux.
pub const SHM_DIR: &str = "/dev/shm";

/// Removes the ring directories in `shm` whose server process is gone and whose rings
/// belong to `service`; returns how many went. Directories of live servers, of other
/// services (corosync's own, say) and anything unexpected are left alone.
pub fn remove_stale_rings(shm: &Path, service: &str) -> usize {
    let Ok(entries) = fs::read_dir(shm) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(server_pid) = name.to_str().and_then(server_pid_of) else {
            continue;
        };
        if server_pid == std::process::id() || Path::new(&format!("/proc/{server_pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        if holds_rings_of(&dir, service) && fs::remove_dir_all(&dir).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The server pid of a `qb-SERVERPID-CLIENTPID-FD-XXXXXX` name.
fn server_pid_of(name: &str) -> Option<u32> {
    let mut fields = name.strip_prefix("qb-")?.split('-');
    let server = fields.next()?.parse().ok()?;
    let _client: u32 = fields.next()?.parse().ok()?;
    let _fd: u32 = fields.next()?.parse().ok()?;
    fields.next()?;
    Some(server)
}

/// Whether every file in `dir` is a ring file (`qb-{request,response,event}-SERVICE-{header,data}`)
/// of `service`, and there is at least one.
fn holds_rings_of(dir: &Path, service: &str) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    let mut any = false;
    for entry in entries.flatten() {
        if !entry.file_name().to_str().is_some_and(|n| is_ring_file_of(n, service)) {
            return false;
        }
        any = true;
    }
    any
}

/// `qb-{request,response,event}-SERVICE-{header,data}`.
fn is_ring_file_of(name: &str, service: &str) -> bool {
    let Some(rest) = name.strip_prefix("qb-") else { return false };
    let Some(rest) = rest.strip_suffix("-header").or_else(|| rest.strip_suffix("-data")) else { return false };
    rest.split_once('-').is_some_and(|(kind, s)| matches!(kind, "request" | "response" | "event") && s == service)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_dir(shm: &Path, name: &str, service: &str) -> std::path::PathBuf {
        let d = shm.join(name);
        fs::create_dir(&d).unwrap();
        for f in ["request-header", "request-data", "event-header"] {
            let (kind, part) = f.split_once('-').unwrap();
            fs::write(d.join(format!("qb-{kind}-{service}-{part}")), b"x").unwrap();
        }
        d
    }

    #[test]
    fn only_dead_servers_rings_of_this_service_go() {
        let shm = tempfile::tempdir().unwrap();
        let dead = 4_194_305; // above PID_MAX_LIMIT: never a live process
        let live = std::process::id();
        let parent = std::os::unix::process::parent_id();
        let gone = ring_dir(shm.path(), &format!("qb-{dead}-{live}-17-AbCdEf"), "pve2");
        let alive = ring_dir(shm.path(), &format!("qb-{parent}-{live}-17-AbCdEf"), "pve2");
        let other_service = ring_dir(shm.path(), &format!("qb-{dead}-{live}-18-AbCdEf"), "cpg");
        let longer_name = ring_dir(shm.path(), &format!("qb-{dead}-{live}-19-AbCdEf"), "pve2-x");
        let odd = shm.path().join(format!("qb-{dead}-{live}-20-AbCdEf"));
        fs::create_dir(&odd).unwrap();
        fs::write(odd.join("notes"), b"x").unwrap();
        let not_qb = shm.path().join(format!("sem.qb-{dead}-1-2-x"));
        fs::create_dir(&not_qb).unwrap();
        assert_eq!(remove_stale_rings(shm.path(), "pve2"), 1);
        assert!(!gone.exists());
        for kept in [&alive, &other_service, &longer_name, &odd, &not_qb] {
            assert!(kept.exists(), "{kept:?} removed");
        }
    }

    #[test]
    fn names_that_are_not_ring_directories() {
        assert_eq!(server_pid_of("qb-12-34-17-AbCdEf"), Some(12));
        for n in ["qb-12-34-17", "qb-x-34-17-a", "qb-12", "pve2", "qb--34-17-a"] {
            assert_eq!(server_pid_of(n), None, "{n}");
        }
    }
}
