//! FUSE over io_uring (Linux 6.14+, `fuse.enable_uring=1`): one request queue per CPU,
//! served by a thread pinned to that CPU, so a request is answered on the CPU of the
//! process that made it (no cross-CPU wake-up per request). INIT, FORGET and INTERRUPT
//! still come through the `/dev/fuse` session; every other request comes through the ring
//! once all queues are registered, and goes to the same [`Handlers`] as over `/dev/fuse`.

mod abi;
mod dispatch;
mod queue;
mod request;

use std::os::fd::OwnedFd;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{info, warn};

pub use abi::FUSE_OVER_IO_URING;
use queue::QueueRing;
pub(crate) use queue::RingSender;

use crate::filesystem::Handlers;

/// Entries per queue: requests of one CPU served at the same time (a change waiting for the
/// cluster, or an fsync, holds its entry until it is answered; the kernel does not move a
/// request to another CPU's queue). Their payload buffers are only touched as far as
/// requests and replies reach, so a deep queue costs address space, not memory.
const QUEUE_DEPTH: usize = 32;
/// Payload buffer of an entry: the largest request or reply (max_write and max_pages of
/// this filesystem are 1 MiB; the kernel refuses a smaller buffer).
const PAYLOAD_LEN: usize = 1024 * 1024 + 4096;
/// How long INIT waits for the rings to be made.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether and on which descriptor the queues may start; filled by the daemon after the
/// mount, used by the INIT handler.
pub struct RingSetup {
    wanted: bool,
    device: Mutex<Option<OwnedFd>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Rings made at INIT, their threads waiting for [`PreparedRings::start`].
pub(crate) struct PreparedRings<'a> {
    setup: &'a RingSetup,
    go: Vec<SyncSender<bool>>,
}

impl PreparedRings<'_> {
    /// Lets the queues serve (`serve`: INIT asked the kernel for io_uring) or end.
    pub fn start(self, serve: bool) {
        for go in &self.go {
            let _ = go.send(serve);
        }
        if serve {
            info!(target: "fuse", "serving over io_uring: {} queues of {QUEUE_DEPTH} entries", self.go.len());
        } else {
            self.setup.wait_stopped(SETUP_TIMEOUT);
        }
    }
}

impl RingSetup {
    pub fn new(wanted: bool) -> RingSetup {
        RingSetup { wanted, device: Mutex::new(None), threads: Mutex::new(Vec::new()) }
    }

    /// The session's `/dev/fuse` descriptor (a duplicate).
    pub fn set_device(&self, fd: OwnedFd) {
        *self.device.lock() = Some(fd);
    }

    /// At INIT: if wanted and offered by the kernel ([`kernel_offers_io_uring`]), makes one
    /// ring per possible CPU, each on its queue thread pinned to that CPU. Some when every
    /// ring was made: INIT may then ask for io_uring and start them. None: nothing runs and
    /// the `/dev/fuse` session serves everything.
    pub(crate) fn prepare(&self, handlers: Handlers) -> Option<PreparedRings<'_>> {
        if !self.wanted || !kernel_offers_io_uring() {
            return None;
        }
        let dev = self.device.lock().take()?;
        let cpus = possible_cpus();
        let (tx, rx) = sync_channel::<Result<(), String>>(cpus);
        let mut go = Vec::new();
        let mut threads = self.threads.lock();
        for qid in 0..cpus {
            let dev = match dev.try_clone() {
                Ok(d) => d,
                Err(e) => {
                    let _ = tx.send(Err(format!("queue {qid}: {e}")));
                    break;
                }
            };
            let (go_tx, go_rx) = sync_channel::<bool>(1);
            let (ready, handlers) = (tx.clone(), handlers.clone());
            let spawned = std::thread::Builder::new().name(format!("fuse-ring-{qid}")).spawn(move || {
                if let Err(e) = queue::pin_to_cpu(qid) {
                    tracing::debug!(target: "fuse", "ring queue {qid} not pinned: {e}");
                }
                match QueueRing::new(dev, qid as u16, QUEUE_DEPTH, PAYLOAD_LEN) {
                    Ok(ring) => {
                        let _ = ready.send(Ok(()));
                        if go_rx.recv() == Ok(true) {
                            ring.serve(handlers);
                        }
                    }
                    Err(e) => {
                        let _ = ready.send(Err(format!("queue {qid}: {e}")));
                    }
                }
            });
            match spawned {
                Ok(t) => {
                    threads.push(t);
                    go.push(go_tx);
                }
                Err(e) => {
                    let _ = tx.send(Err(format!("queue {qid}: {e}")));
                    break;
                }
            }
        }
        drop(threads);
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let mut made = 0;
        while made < cpus {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok(())) => made += 1,
                Ok(Err(e)) => {
                    warn!(target: "fuse", "io_uring not used: {e}");
                    break;
                }
                Err(_) => {
                    warn!(target: "fuse", "io_uring not used: {made} of {cpus} rings made in {SETUP_TIMEOUT:?}");
                    break;
                }
            }
        }
        let prepared = PreparedRings { setup: self, go };
        if made < cpus {
            prepared.start(false);
            return None;
        }
        Some(prepared)
    }

    /// Waits (at most `timeout`) for the queue threads to end: they do once the connection
    /// is gone (after the unmount), or at once when they were never started.
    pub fn wait_stopped(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let threads = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// The kernel offers io_uring at INIT when the fuse module's `enable_uring` parameter is on
/// (the parameter exists from Linux 6.14, built with CONFIG_FUSE_IO_URING).
pub fn kernel_offers_io_uring() -> bool {
    std::fs::read_to_string("/sys/module/fuse/parameters/enable_uring").is_ok_and(|v| v.trim() == "Y")
}

/// Number of queues the kernel makes: one per possible CPU (`/sys/devices/system/cpu/possible`,
/// a list of ranges such as `0-3,8-11`), queue i serving CPU i.
fn possible_cpus() -> usize {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    count_cpus(&text).unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

fn count_cpus(list: &str) -> Option<usize> {
    let mut n = 0;
    for range in list.trim().split(',').filter(|r| !r.is_empty()) {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
        n += b.checked_sub(a)? + 1;
    }
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_lists_count_their_cpus() {
        assert_eq!(super::count_cpus("0-1\n"), Some(2));
        assert_eq!(super::count_cpus("0"), Some(1));
        assert_eq!(super::count_cpus("0-3,8-11"), Some(8));
        assert_eq!(super::count_cpus(""), None);
        assert_eq!(super::count_cpus("x"), None);
    }
}
