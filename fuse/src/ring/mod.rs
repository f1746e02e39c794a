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
use std::sync::mpsc::sync_channel;
use std::time::Duration;

use parking_lot::Mutex;
use tracing::{info, warn};

pub use abi::FUSE_OVER_IO_URING;
use queue::QueueRing;
pub(crate) use queue::RingSender;

use crate::filesystem::Handlers;

/// Entries per queue: requests of one CPU served at the same time (a change waiting for the
/// cluster holds its entry until it is answered).
const QUEUE_DEPTH: usize = 8;
/// Payload buffer of an entry: the largest request or reply (max_write and max_pages of
/// this filesystem are 1 MiB; the kernel refuses a smaller buffer).
const PAYLOAD_LEN: usize = 1024 * 1024 + 4096;

/// Whether and on which descriptor the queues may start; filled by the daemon after the
/// mount, used by the INIT handler.
pub struct RingSetup {
    wanted: bool,
    device: Mutex<Option<OwnedFd>>,
}

impl RingSetup {
    pub fn new(wanted: bool) -> RingSetup {
        RingSetup { wanted, device: Mutex::new(None) }
    }

    /// The session's `/dev/fuse` descriptor (a duplicate).
    pub fn set_device(&self, fd: OwnedFd) {
        *self.device.lock() = Some(fd);
    }

    /// At INIT: if wanted and offered by the kernel ([`kernel_offers_io_uring`]), makes one ring per
    /// possible CPU, each on its pinned queue thread, and starts serving. True when every
    /// ring was made: INIT may then ask for io_uring. Otherwise nothing is started and the
    /// `/dev/fuse` session serves everything.
    pub(crate) fn prepare(&self, handlers: Handlers) -> bool {
        if !self.wanted || !kernel_offers_io_uring() {
            return false;
        }
        let Some(dev) = self.device.lock().take() else { return false };
        let cpus = possible_cpus();
        let (tx, rx) = sync_channel::<Result<(), String>>(cpus);
        let (go_tx, go_rx) = (0..cpus).map(|_| sync_channel::<bool>(1)).unzip::<_, _, Vec<_>, Vec<_>>();
        for (qid, go) in go_rx.into_iter().enumerate() {
            let dev = match dev.try_clone() {
                Ok(d) => d,
                Err(e) => {
                    warn!(target: "fuse", "io_uring not used: {e}");
                    return false;
                }
            };
            let (ready, handlers) = (tx.clone(), handlers.clone());
            let spawned = std::thread::Builder::new().name(format!("fuse-ring-{qid}")).spawn(move || {
                if let Err(e) = queue::pin_to_cpu(qid) {
                    tracing::debug!(target: "fuse", "ring queue {qid} not pinned: {e}");
                }
                match QueueRing::new(dev, qid as u16, QUEUE_DEPTH, PAYLOAD_LEN) {
                    Ok(ring) => {
                        let _ = ready.send(Ok(()));
                        if go.recv() == Ok(true) {
                            ring.serve(handlers);
                        }
                    }
                    Err(e) => {
                        let _ = ready.send(Err(format!("queue {qid}: {e}")));
                    }
                }
            });
            if let Err(e) = spawned {
                let _ = tx.send(Err(format!("queue {qid}: {e}")));
            }
        }
        let mut all_made = true;
        for _ in 0..cpus {
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    warn!(target: "fuse", "io_uring not used: {e}");
                    all_made = false;
                }
                Err(_) => all_made = false,
            }
        }
        for go in go_tx {
            let _ = go.send(all_made);
        }
        if all_made {
            info!(target: "fuse", "serving over io_uring: {cpus} queues of {QUEUE_DEPTH} entries");
        }
        all_made
    }
}

/// The kernel offers io_uring at INIT when the fuse module's `enable_uring` parameter is on
/// (the parameter exists from Linux 6.14, built with CONFIG_FUSE_IO_URING).
pub fn kernel_offers_io_uring() -> bool {
    std::fs::read_to_string("/sys/module/fuse/parameters/enable_uring").is_ok_and(|v| v.trim() == "Y")
}

/// Number of queues the kernel makes: one per possible CPU (`/sys/devices/system/cpu/possible`).
fn possible_cpus() -> usize {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    let highest = text.trim().split(',').filter_map(|r| r.rsplit('-').next()?.parse::<usize>().ok()).max();
    match highest {
        Some(h) => h + 1,
        None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    }
}
