//! [`GroupRunner`]: the thread that owns one CPG group's [`Dfsm`] and its CPG handle.
//!
//! [`GroupRunner`]: one thread per CPG group that owns the group's
//! [`Dfsm`] and its [`CpgHandle`], like the original's service loop
//! (spec §1.1–§1.3):
//!
//! * connects (`cpg_initialize`, `cpg_local_get`, join) and reconnects when
//!   corosync goes away (attempts every `reconnect_interval`, failures
//!   logged at most every 5 s; waiting callers are aborted);
//! * feeds confchg/deliver events and a 1-s tick (periodic verify) into the
//!   core and carries out its actions: multicast AGREED (a
//!   `CS_ERR_TRY_AGAIN` resends the same bytes 100 ms later, at most 100
//!   tries, while dispatching goes on), `send_failed` on failure, leave on
//!   the error modes and rejoin after `rejoin_delay` (> 5 s) if restartable;
//! * answers local callers once this node applied their message.
//!
//! All CPG calls happen on the runner thread. Callers talk to it through an
//! mpsc channel plus an eventfd that wakes its `poll`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::cpg::{CpgEvent, CpgHandle, CsError, GroupName, DCDB_GROUP, KVSTORE_GROUP};
use super::{poll2, unix_now, LogThrottle, Waker};
use crate::app::{Application, EffectHost};
use crate::machine::{Config, Dfsm};
use crate::types::{Action, MemberId, MessageStream, Mode, Outcome};

/// Why a send did not produce an application result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The message was (possibly) sent but never applied locally: send
    /// failure, leave/rejoin, lost connection or shutdown. The original
    /// returns its preset result here (dcdb: `-EBUSY`).
    #[error("message aborted")]
    Aborted,
    /// Not joined to the group (connecting, left, permanent error or shut
    /// down); nothing was sent.
    #[error("not connected to the process group")]
    NotConnected,
}

/// Static settings of one group.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Group name without the NUL (joined with the NUL counted).
    pub group: String,
    /// DFSM protocol version: dcdb 1, kvstore 0.
    pub protocol_version: u32,
    /// VERIFY_REQUEST period in seconds (dcdb: 3600); `None` disables.
    pub verify_interval: Option<u32>,
    /// Timer period of the core (`tick`): 1 s.
    pub tick: Duration,
    /// Wait after leaving the group before `restart` + rejoin (original:
    /// more than 5 s).
    pub rejoin_delay: Duration,
    /// Pause between connection attempts while corosync is unreachable.
    pub reconnect_interval: Duration,
    /// Attempts per multicast on `CS_ERR_TRY_AGAIN` (100 × 100 ms).
    pub send_tries: u32,
    /// Attempts for `cpg_join`/`cpg_leave` on `CS_ERR_TRY_AGAIN`.
    pub join_tries: u32,
}

impl GroupConfig {
    /// A group with the original's timings and no verify.
    pub fn new(group: &str, protocol_version: u32) -> Self {
        GroupConfig {
            group: group.to_string(),
            protocol_version,
            verify_interval: None,
            tick: Duration::from_secs(1),
            rejoin_delay: Duration::from_millis(5100),
            reconnect_interval: Duration::from_secs(1),
            send_tries: 100,
            join_tries: 100,
        }
    }
    /// `pve_dcdb_v1`, protocol 1, verify every 3600 s.
    pub fn dcdb() -> Self {
        GroupConfig {
            verify_interval: Some(3600),
            ..Self::new(DCDB_GROUP, 1)
        }
    }
    /// `pve_kvstore_v1`, protocol 0, no verify.
    pub fn kvstore() -> Self {
        Self::new(KVSTORE_GROUP, 0)
    }
}

type Reply = mpsc::SyncSender<Result<i32, SendError>>;
type AppCall<A> = Box<dyn FnOnce(&mut A) + Send>;
type DfsmCall<A> = Box<dyn FnOnce(Option<&Dfsm<A>>) + Send>;

enum Cmd<A> {
    Send {
        subtype: u16,
        payload: Vec<u8>,
        reply: Option<Reply>,
    },
    App(AppCall<A>),
    Dfsm(DfsmCall<A>),
    Shutdown,
}

struct Shared {
    mode: AtomicU8,
    joined: AtomicBool,
    /// `(nodeid << 32) | pid` of the current identity, 0 before connecting.
    local: AtomicU64,
    /// Bumped on every confchg the core processed.
    confchgs: AtomicU32,
    waker: Waker,
}

struct Inner<A> {
    tx: Mutex<Option<mpsc::Sender<Cmd<A>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
    group: String,
}

/// Handle to the runner thread of one CPG group. Cheap to clone; usable
/// from any thread. Do not call its blocking methods from inside a
/// [`GroupRunner::with_app`] closure (that runs on the runner thread).
pub struct GroupRunner<A> {
    inner: Arc<Inner<A>>,
}

impl<A> Clone for GroupRunner<A> {
    fn clone(&self) -> Self {
        GroupRunner {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<A> fmt::Debug for GroupRunner<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupRunner")
            .field("group", &self.inner.group)
            .field("mode", &self.mode())
            .field("joined", &self.is_joined())
            .finish()
    }
}

fn mode_from_u8(v: u8) -> Mode {
    match v {
        0 => Mode::Start,
        1 => Mode::StartSync,
        2 => Mode::Synced,
        3 => Mode::Update,
        253 => Mode::Leave,
        254 => Mode::VersionError,
        _ => Mode::Error,
    }
}

impl<A: Application + Send + 'static> GroupRunner<A> {
    /// Start the runner thread for `config.group` with `app`. It connects
    /// to corosync in the background (and keeps retrying), so this
    /// succeeds without corosync; only a bad group name or thread/eventfd
    /// creation fails.
    /// `host` performs the application's effects after every step, before the step's
    /// actions are carried out.
    pub fn spawn(config: GroupConfig, app: A, host: impl EffectHost<A::Effect> + 'static) -> io::Result<GroupRunner<A>> {
        let name = GroupName::new(&config.group)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(Mode::Start as u8),
            joined: AtomicBool::new(false),
            local: AtomicU64::new(0),
            confchgs: AtomicU32::new(0),
            waker: Waker::new()?,
        });
        let (tx, rx) = mpsc::channel();
        let now = Instant::now();
        let runner = Runner {
            name,
            app: Some(app),
            host: Box::new(host),
            dfsm: None,
            cpg: None,
            joined: false,
            permanent: false,
            rejoin_at: None,
            next_connect: now,
            next_tick: now + config.tick,
            outq: VecDeque::new(),
            retry_at: None,
            lost: None,
            waiters: HashMap::new(),
            rx,
            shared: Arc::clone(&shared),
            connect_log: LogThrottle::new(Duration::from_secs(5)),
            cfg: config.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("dfsm-{}", config.group))
            .spawn(move || runner.run())?;
        Ok(GroupRunner {
            inner: Arc::new(Inner {
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                shared,
                group: config.group,
            }),
        })
    }

    fn submit(&self, cmd: Cmd<A>) -> Result<(), SendError> {
        let guard = self.inner.tx.lock().unwrap_or_else(|e| e.into_inner());
        let tx = guard.as_ref().ok_or(SendError::NotConnected)?;
        tx.send(cmd).map_err(|_| SendError::NotConnected)?;
        self.inner.shared.waker.wake();
        Ok(())
    }

    /// Multicast an application message (NORMAL, `subtype`) and block until
    /// this node applied its own delivered copy; returns the application's
    /// result. [`SendError::Aborted`] if it will never be applied locally
    /// (the host maps it to `-EBUSY` like the original).
    pub fn send(&self, subtype: u16, payload: Vec<u8>) -> Result<i32, SendError> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.submit(Cmd::Send {
            subtype,
            payload,
            reply: Some(reply),
        })?;
        rx.recv().unwrap_or(Err(SendError::Aborted))
    }

    /// Multicast an application message without waiting for it (consumes
    /// a message count like the original's `dfsm_send_message`).
    pub fn send_nowait(&self, subtype: u16, payload: Vec<u8>) -> Result<(), SendError> {
        self.submit(Cmd::Send {
            subtype,
            payload,
            reply: None,
        })
    }

    /// Run `f` on the application inside the runner thread (between CPG
    /// events) and return its result.
    pub fn with_app<R, F>(&self, f: F) -> Result<R, SendError>
    where
        R: Send + 'static,
        F: FnOnce(&mut A) -> R + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(Cmd::App(Box::new(move |a: &mut A| {
            let _ = tx.send(f(a));
        })))?;
        rx.recv().map_err(|_| SendError::NotConnected)
    }

    /// Run `f` on the DFSM core (read-only: members, epoch, queues…) inside
    /// the runner thread. `None` before the first successful connect.
    pub fn with_dfsm<R, F>(&self, f: F) -> Result<R, SendError>
    where
        R: Send + 'static,
        F: FnOnce(Option<&Dfsm<A>>) -> R + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(Cmd::Dfsm(Box::new(move |d: Option<&Dfsm<A>>| {
            let _ = tx.send(f(d));
        })))?;
        rx.recv().map_err(|_| SendError::NotConnected)
    }

    /// Leave the group, finalize the CPG handle, abort waiting callers and
    /// join the thread. Idempotent; later calls on any clone return
    /// [`SendError::NotConnected`].
    pub fn shutdown(&self) {
        let tx = self
            .inner
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(tx) = tx {
            let _ = tx.send(Cmd::Shutdown);
            self.inner.shared.waker.wake();
        }
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = thread {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl<A> GroupRunner<A> {
    /// The core's current mode. It keeps its last value while corosync is
    /// unreachable: check [`GroupRunner::is_joined`] too.
    pub fn mode(&self) -> Mode {
        mode_from_u8(self.inner.shared.mode.load(Ordering::Acquire))
    }
    /// Whether the CPG group is currently joined.
    pub fn is_joined(&self) -> bool {
        self.inner.shared.joined.load(Ordering::Acquire)
    }
    /// This process's CPG identity, once connected.
    pub fn local(&self) -> Option<MemberId> {
        let v = self.inner.shared.local.load(Ordering::Acquire);
        (v != 0).then(|| MemberId::new((v >> 32) as u32, v as u32))
    }
    /// Number of confchgs processed so far (changes on every membership
    /// change, for hosts that poll).
    pub fn confchg_count(&self) -> u32 {
        self.inner.shared.confchgs.load(Ordering::Acquire)
    }
    /// The group name (without NUL).
    pub fn group(&self) -> &str {
        &self.inner.group
    }
}

impl<A> Drop for Inner<A> {
    fn drop(&mut self) {
        // Last handle gone: the runner sees the closed channel and stops.
        if let Some(tx) = self.tx.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(Cmd::Shutdown);
            self.shared.waker.wake();
        }
        if let Some(t) = self
            .thread
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

// ----- the runner thread ------------------------------------------------------

struct Outgoing {
    /// Empty while a stream's next message has not been made yet.
    bytes: Vec<u8>,
    count: Option<u64>,
    tries: u32,
    /// Set for a [`MessageStream`]: the entry stays queued until the stream is exhausted.
    stream: Option<MessageStream>,
}

struct Runner<A: Application> {
    cfg: GroupConfig,
    name: GroupName,
    /// The application before the first connect (the core needs the local
    /// nodeid); afterwards it lives in `dfsm`.
    app: Option<A>,
    /// Performs the application's effects after each step.
    host: Box<dyn EffectHost<A::Effect>>,
    dfsm: Option<Dfsm<A>>,
    cpg: Option<CpgHandle>,
    joined: bool,
    /// ERROR / VERSION_ERROR: never rejoin.
    permanent: bool,
    rejoin_at: Option<Instant>,
    next_connect: Instant,
    next_tick: Instant,
    outq: VecDeque<Outgoing>,
    retry_at: Option<Instant>,
    /// Set when a CPG call reported a lost connection; handled by `run`.
    lost: Option<CsError>,
    waiters: HashMap<u64, Reply>,
    rx: mpsc::Receiver<Cmd<A>>,
    shared: Arc<Shared>,
    connect_log: LogThrottle,
}

impl<A: Application> Runner<A> {
    fn run(mut self) {
        loop {
            // local requests
            loop {
                match self.rx.try_recv() {
                    Ok(Cmd::Shutdown) | Err(mpsc::TryRecvError::Disconnected) => {
                        self.shutdown();
                        return;
                    }
                    Ok(cmd) => self.command(cmd),
                    Err(mpsc::TryRecvError::Empty) => break,
                }
                self.check_lost();
            }

            let now = Instant::now();
            if self.cpg.is_none() && !self.permanent && now >= self.next_connect {
                self.connect();
                self.check_lost();
            }
            if self.rejoin_at.is_some_and(|t| now >= t) {
                self.rejoin();
                self.check_lost();
            }
            if now >= self.next_tick {
                self.next_tick = now + self.cfg.tick;
                if let Some(d) = self.dfsm.as_mut() {
                    let actions = d.tick(unix_now());
                    self.run_actions(actions);
                    self.check_lost();
                }
            }
            if self.retry_at.is_some_and(|t| now >= t) {
                self.retry_at = None;
                let actions = self.flush();
                self.run_actions(actions);
                self.check_lost();
            }

            let mut deadline = self.next_tick;
            for t in [self.retry_at, self.rejoin_at].into_iter().flatten() {
                deadline = deadline.min(t);
            }
            if self.cpg.is_none() && !self.permanent {
                deadline = deadline.min(self.next_connect);
            }
            let cpg_fd = self.cpg.as_ref().and_then(|c| c.fd().ok());
            let (wake, readable) = poll2(self.shared.waker.raw_fd(), cpg_fd, Some(deadline));
            if wake {
                self.shared.waker.drain();
            }
            if readable {
                self.dispatch();
                self.check_lost();
            }
        }
    }

    fn publish(&self) {
        let mode = self.dfsm.as_ref().map_or(Mode::Start, |d| d.mode());
        self.shared.mode.store(mode as u8, Ordering::Release);
        self.shared.joined.store(self.joined, Ordering::Release);
    }

    fn app_mut(&mut self) -> &mut A {
        match (&mut self.dfsm, &mut self.app) {
            (Some(d), _) => d.app_mut(),
            (None, Some(a)) => a,
            (None, None) => unreachable!("the application lives in app or dfsm"),
        }
    }

    fn command(&mut self, cmd: Cmd<A>) {
        match cmd {
            Cmd::Send {
                subtype,
                payload,
                reply,
            } => {
                let Some(d) = self.dfsm.as_mut().filter(|_| self.joined) else {
                    if let Some(r) = reply {
                        let _ = r.send(Err(SendError::NotConnected));
                    }
                    return;
                };
                let (count, actions) =
                    d.send_message(unix_now(), subtype, &payload, reply.is_some());
                if let Some(r) = reply {
                    self.waiters.insert(count, r);
                }
                self.run_actions(actions);
            }
            Cmd::App(f) => {
                f(self.app_mut());
                self.run_actions(Vec::new());
            }
            Cmd::Dfsm(f) => f(self.dfsm.as_ref()),
            Cmd::Shutdown => {}
        }
    }

    /// `cpg_initialize`, `cpg_local_get`, core (re)initialization, join.
    fn connect(&mut self) {
        self.next_connect = Instant::now() + self.cfg.reconnect_interval;
        let g = self.cfg.group.clone();
        let mut cpg = match CpgHandle::initialize() {
            Ok(c) => c,
            Err(e) => {
                if self.connect_log.ready() {
                    error!(target: "dfsm", group = %g, "cpg_initialize failed: {e}");
                }
                return;
            }
        };
        let nodeid = match cpg.local_nodeid().and_then(|n| cpg.fd().map(|_| n)) {
            Ok(n) => n,
            Err(e) => {
                if self.connect_log.ready() {
                    error!(target: "dfsm", group = %g, "cpg_local_get failed: {e}");
                }
                return;
            }
        };
        let local = MemberId::new(nodeid, std::process::id());

        // dfsm_initialize: a fresh core, or restart the existing one
        let mut actions = Vec::new();
        match self.dfsm.take() {
            Some(d) if d.config().local == local => {
                let mut d = d;
                match d.restart(unix_now()) {
                    Some(a) => actions = a,
                    None => {
                        error!(target: "dfsm", group = %g, "dfsm in error mode - not restarting");
                        self.permanent = true;
                        self.dfsm = Some(d);
                        self.publish();
                        return;
                    }
                }
                self.dfsm = Some(d);
            }
            Some(d) => {
                warn!(target: "dfsm", group = %g, "local identity changed from {} to {local}", d.config().local);
                let mut d = d;
                actions = d.finalize();
                self.app = Some(d.into_app());
            }
            None => {}
        }
        if self.dfsm.is_none() {
            let app = self.app.take().expect("application present before connect");
            let cfg = Config {
                local,
                protocol_version: self.cfg.protocol_version,
                verify_interval: self.cfg.verify_interval,
            };
            self.dfsm = Some(Dfsm::new(cfg, app));
        }
        self.shared.local.store(
            (u64::from(local.nodeid) << 32) | u64::from(local.pid),
            Ordering::Release,
        );
        self.run_actions(actions);

        if let Err(e) = cpg.join(&self.name, self.cfg.join_tries) {
            if self.connect_log.ready() {
                error!(target: "dfsm", group = %g, "cpg_join failed: {e}");
            }
            return; // cpg dropped = finalized; retried later
        }
        self.connect_log.reset();
        info!(target: "dfsm", group = %g, "joined process group as {local}");
        self.cpg = Some(cpg);
        self.joined = true;
        self.publish();
    }

    /// After a leave: `restart` and join again on the same handle.
    fn rejoin(&mut self) {
        self.rejoin_at = None;
        let g = self.cfg.group.clone();
        let Some(d) = self.dfsm.as_mut() else { return };
        let Some(actions) = d.restart(unix_now()) else {
            self.permanent = true;
            return;
        };
        self.run_actions(actions);
        let Some(cpg) = self.cpg.as_mut() else { return };
        match cpg.join(&self.name, self.cfg.join_tries) {
            Ok(()) => {
                info!(target: "dfsm", group = %g, "rejoined process group");
                self.joined = true;
            }
            Err(e) if e.is_connection_lost() => self.lost = Some(e),
            Err(e) => {
                // corosync 3.1 answers CS_ERR_EXIST to a join on the handle
                // that left (it keeps pid and group of the left process);
                // like the original, finalize and initialize a new handle.
                info!(target: "dfsm", group = %g, "cpg_join failed: {e} - re-initializing");
                self.cpg = None;
                self.next_connect = Instant::now();
            }
        }
        self.publish();
    }

    fn dispatch(&mut self) {
        let Some(cpg) = self.cpg.as_mut() else { return };
        let mut events = Vec::new();
        let res = cpg.dispatch(&mut events);
        for ev in events {
            let Some(d) = self.dfsm.as_mut() else { break };
            let now = unix_now();
            let actions = match ev {
                CpgEvent::Confchg {
                    members,
                    left,
                    joined,
                } => {
                    info!(target: "dfsm", group = %self.cfg.group, "members: {}", fmt_members(&members));
                    let a = d.confchg(now, &members, &left, &joined);
                    self.shared.confchgs.fetch_add(1, Ordering::AcqRel);
                    a
                }
                CpgEvent::Deliver { sender, bytes } => d.deliver(now, sender, &bytes),
            };
            self.run_actions(actions);
        }
        match res {
            Ok(()) => {}
            Err(CsError::TRY_AGAIN) => std::thread::sleep(super::cpg::TRY_AGAIN_DELAY),
            Err(e) => {
                error!(target: "dfsm", group = %self.cfg.group, "cpg_dispatch failed: {e}");
                self.lost = Some(e);
            }
        }
        self.publish();
    }

    /// Carry out the core's actions (and those they cause).
    fn run_actions(&mut self, actions: Vec<Action>) {
        let mut q: VecDeque<Action> = actions.into();
        // the step's effects (persist, write files) before its sends and answers
        if let Some(d) = self.dfsm.as_mut() {
            let effects = d.take_effects();
            if !effects.is_empty() {
                if let Err(e) = self.host.perform(effects) {
                    q.extend(d.host_failed(e));
                }
            }
        }
        while let Some(a) = q.pop_front() {
            match a {
                Action::Multicast { bytes, count } => {
                    self.outq.push_back(Outgoing {
                        bytes,
                        count,
                        tries: 0,
                        stream: None,
                    });
                    q.extend(self.flush());
                }
                Action::MulticastStream(stream) => {
                    self.outq.push_back(Outgoing {
                        bytes: Vec::new(),
                        count: None,
                        tries: 0,
                        stream: Some(stream),
                    });
                    q.extend(self.flush());
                }
                Action::Answer { count, outcome } => {
                    if let Some(r) = self.waiters.remove(&count) {
                        let _ = r.send(match outcome {
                            Outcome::Applied(res) => Ok(res),
                            Outcome::Aborted => Err(SendError::Aborted),
                        });
                    }
                }
                Action::Leave => q.extend(self.leave_group()),
                Action::ModeChanged(m) => {
                    self.shared.mode.store(m as u8, Ordering::Release);
                }
            }
        }
        self.publish();
    }

    /// Send queued messages in order; stops at a `CS_ERR_TRY_AGAIN` and
    /// sets `retry_at`. Returns the core's reaction to failed sends.
    fn flush(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        if self.retry_at.is_some() || self.lost.is_some() {
            return out;
        }
        while let Some(m) = self.outq.front_mut() {
            if m.bytes.is_empty() {
                // a stream: make its next message now; done when it has none
                match m.stream.as_ref().and_then(MessageStream::next_message) {
                    Some(bytes) => {
                        m.bytes = bytes;
                        m.tries = 0;
                    }
                    None => {
                        self.outq.pop_front();
                        continue;
                    }
                }
            }
            let res = match self.cpg.as_mut() {
                Some(c) if self.joined => c.try_mcast_agreed(&m.bytes),
                _ => Err(CsError::NOT_EXIST),
            };
            match res {
                Ok(()) if m.stream.is_some() => m.bytes = Vec::new(),
                Ok(()) => {
                    self.outq.pop_front();
                }
                Err(CsError::TRY_AGAIN) if m.tries + 1 < self.cfg.send_tries => {
                    m.tries += 1;
                    if m.tries.is_multiple_of(10) {
                        debug!(target: "dfsm", group = %self.cfg.group, "cpg_send_message retry {}", m.tries);
                    }
                    self.retry_at = Some(Instant::now() + super::cpg::TRY_AGAIN_DELAY);
                    break;
                }
                Err(e) if e.is_connection_lost() => {
                    error!(target: "dfsm", group = %self.cfg.group, "cpg_send_message failed: {e}");
                    self.lost = Some(e);
                    break;
                }
                Err(e) => {
                    if self.joined {
                        error!(target: "dfsm", group = %self.cfg.group, "cpg_send_message failed: {e}");
                    }
                    let m = self.outq.pop_front().expect("front exists");
                    if let Some(d) = self.dfsm.as_mut() {
                        out.extend(d.send_failed(m.count));
                    }
                }
            }
        }
        out
    }

    /// Mode entered the error class: drop unsent messages, `cpg_leave`,
    /// schedule the rejoin (or stop for good after ERROR/VERSION_ERROR).
    fn leave_group(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        self.retry_at = None;
        while let Some(m) = self.outq.pop_front() {
            if let (Some(d), Some(_)) = (self.dfsm.as_mut(), m.count) {
                out.extend(d.send_failed(m.count));
            }
        }
        if self.joined {
            self.joined = false;
            if let Some(c) = self.cpg.as_mut() {
                match c.leave(&self.name, self.cfg.join_tries) {
                    Ok(()) => {}
                    Err(e) if e.is_connection_lost() => self.lost = Some(e),
                    Err(e) => {
                        warn!(target: "dfsm", group = %self.cfg.group, "cpg_leave failed: {e}")
                    }
                }
            }
        }
        let restartable = self.dfsm.as_ref().is_none_or(|d| d.restartable());
        if restartable {
            info!(target: "dfsm", group = %self.cfg.group, "left process group - rejoin in {:?}", self.cfg.rejoin_delay);
            self.rejoin_at = Some(Instant::now() + self.cfg.rejoin_delay);
        } else {
            error!(target: "dfsm", group = %self.cfg.group, "dfsm in error mode - leaving for good");
            self.rejoin_at = None;
            self.permanent = true;
            self.cpg = None; // finalize
        }
        self.publish();
        out
    }

    fn check_lost(&mut self) {
        if let Some(e) = self.lost.take() {
            self.disconnect(e);
        }
    }

    /// Corosync went away: finalize, abort waiters, reconnect later.
    fn disconnect(&mut self, e: CsError) {
        warn!(target: "dfsm", group = %self.cfg.group, "lost connection to corosync ({e}) - reconnecting");
        self.cpg = None;
        self.joined = false;
        self.rejoin_at = None;
        self.retry_at = None;
        self.outq.clear();
        if let Some(d) = self.dfsm.as_mut() {
            let actions = d.finalize();
            self.permanent = !d.restartable();
            self.run_actions(actions);
        }
        self.abort_all_waiters();
        self.next_connect = Instant::now() + self.cfg.reconnect_interval;
        self.publish();
    }

    fn abort_all_waiters(&mut self) {
        for (_, r) in self.waiters.drain() {
            let _ = r.send(Err(SendError::Aborted));
        }
    }

    fn shutdown(&mut self) {
        if self.joined {
            if let Some(c) = self.cpg.as_mut() {
                let _ = c.leave(&self.name, 10);
            }
            self.joined = false;
        }
        self.cpg = None;
        self.outq.clear();
        self.rejoin_at = None;
        self.retry_at = None;
        if let Some(d) = self.dfsm.as_mut() {
            for a in d.finalize() {
                if let Action::Answer { count, .. } = a {
                    if let Some(r) = self.waiters.remove(&count) {
                        let _ = r.send(Err(SendError::Aborted));
                    }
                }
            }
        }
        self.abort_all_waiters();
        // requests that raced with the shutdown
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Cmd::Send { reply: Some(r), .. } => {
                    let _ = r.send(Err(SendError::NotConnected));
                }
                Cmd::App(f) => {
                f(self.app_mut());
                self.run_actions(Vec::new());
            }
                Cmd::Dfsm(f) => f(self.dfsm.as_ref()),
                _ => {}
            }
        }
        self.publish();
        info!(target: "dfsm", group = %self.cfg.group, "dfsm finalized");
    }
}

fn fmt_members(m: &[MemberId]) -> String {
    m.iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
