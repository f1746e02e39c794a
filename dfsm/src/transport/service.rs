//! The thread the quorum and cmap trackers share: connect to one corosync service, retry every
//! second while it is away, dispatch when its fd is readable, stop and join on request.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cpg::CsError;
use super::{poll2, LogThrottle, Waker};

/// How long after a failed initialize or dispatch the next initialize comes.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How often a repeating initialize error is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// An open service handle (finalized when dropped) and the fd to poll it on.
pub(crate) struct Conn<H> {
    pub(crate) handle: H,
    pub(crate) fd: RawFd,
}

/// One client of a corosync service, as [`ServiceThread`] runs it; it logs its own errors
/// (each under its service's target) and keeps its own state.
pub(crate) trait ServiceClient: Send + 'static {
    /// The service's handle type.
    type Handle;
    /// Initialize, register the callbacks and take in the first state.
    fn connect(&mut self) -> Result<Conn<Self::Handle>, CsError>;
    /// `connect` failed; `report` says whether the (throttled) error may be logged now.
    fn connect_failed(&mut self, e: CsError, report: bool);
    /// Dispatch what the fd holds. TRY_AGAIN is ignored, any other error finalizes the handle.
    fn dispatch(&mut self, conn: &Conn<Self::Handle>) -> Result<(), CsError>;
    /// `dispatch` failed with `e` and the handle is finalized; the next initialize is in a second.
    fn dispatch_failed(&mut self, e: CsError);
    /// The thread ends; the handle is already finalized.
    fn stopped(&mut self) {}
}

struct Control {
    stop: AtomicBool,
    waker: Waker,
}

/// The background thread of one [`ServiceClient`].
pub(crate) struct ServiceThread {
    control: Arc<Control>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ServiceThread {
    /// Start the thread `name` running `client`. Succeeds without corosync (it retries).
    pub(crate) fn spawn<C: ServiceClient>(name: &str, client: C) -> io::Result<Self> {
        let control = Arc::new(Control {
            stop: AtomicBool::new(false),
            waker: Waker::new()?,
        });
        let c = Arc::clone(&control);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(&c, client))?;
        Ok(ServiceThread {
            control,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Finalize and join the thread. Idempotent.
    pub(crate) fn shutdown(&self) {
        self.control.stop.store(true, Ordering::Release);
        self.control.waker.wake();
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

fn run<C: ServiceClient>(control: &Control, mut client: C) {
    let mut conn: Option<Conn<C::Handle>> = None;
    let mut next_init = Instant::now();
    let mut log = LogThrottle::new(LOG_EVERY);
    while !control.stop.load(Ordering::Acquire) {
        if conn.is_none() && Instant::now() >= next_init {
            next_init = Instant::now() + RETRY_EVERY;
            match client.connect() {
                Ok(c) => {
                    log.reset();
                    conn = Some(c);
                }
                Err(e) => client.connect_failed(e, log.ready()),
            }
        }
        let deadline = if conn.is_some() {
            Instant::now() + RETRY_EVERY
        } else {
            next_init
        };
        let (wake, readable) = poll2(
            control.waker.raw_fd(),
            conn.as_ref().map(|c| c.fd),
            Some(deadline),
        );
        if wake {
            control.waker.drain();
        }
        if !readable {
            continue;
        }
        let Some(c) = conn.as_ref() else { continue };
        match client.dispatch(c) {
            Ok(()) | Err(CsError::TRY_AGAIN) => {}
            Err(e) => {
                conn = None; // finalizes
                client.dispatch_failed(e);
                next_init = Instant::now() + RETRY_EVERY;
            }
        }
    }
    drop(conn);
    client.stopped();
}
