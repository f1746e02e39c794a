//! A fixed pool of threads for requests that may wait (a change through corosync, a commit,
//! an fsync), so the FUSE thread keeps serving reads meanwhile and no request pays for a
//! thread spawn.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use parking_lot::Mutex;
use tracing::warn;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The pool; dropping it lets the threads finish their queue and exit.
pub struct Workers {
    tx: Mutex<Sender<Job>>,
}

impl Workers {
    /// Starts `n` threads (at least one).
    pub fn new(n: usize) -> Workers {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n.max(1) {
            let rx = rx.clone();
            if let Err(e) = std::thread::Builder::new().name(format!("fuse-worker-{i}")).spawn(move || run(rx)) {
                warn!(target: "fuse", "unable to start worker thread: {e}");
            }
        }
        Workers { tx: Mutex::new(tx) }
    }

    /// Queues `job`; runs it on the caller's thread if the pool is gone.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) {
        if let Err(e) = self.tx.lock().send(Box::new(job)) {
            (e.0)();
        }
    }
}

fn run(rx: Arc<Mutex<Receiver<Job>>>) {
    loop {
        let job = rx.lock().recv();
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// Pool size for this machine: enough threads that changes waiting for corosync do not
/// starve each other, bounded so a burst cannot create thousands.
pub fn default_size() -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    (cores * 4).clamp(8, 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_the_pool() {
        let w = Workers::new(2);
        let (tx, rx) = channel();
        for i in 0..10 {
            let tx = tx.clone();
            w.run(move || tx.send(i).unwrap());
        }
        let mut got: Vec<i32> = (0..10).map(|_| rx.recv().unwrap()).collect();
        got.sort();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }
}
