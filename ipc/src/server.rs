//! The libqb IPC service (`qb_ipcs_create(name, 1, QB_IPC_SHM, …)`) on its own qb loop
//! thread, plus the permission-checking dispatch layer.

use std::cell::Cell;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use libc::{c_void, gid_t, size_t, uid_t, EACCES, EIO};
use tracing::{debug, error, info, warn};

use crate::error::IpcError;
use crate::ffi::{self, qb_ipcs_connection_t, qb_ipcs_service_t, qb_loop_t};
use crate::protocol::{self, ParseError, Request, REQUEST_HEADER_SIZE, RESPONSE_HEADER_SIZE};

/// The libqb service id pmxcfs uses.
pub const SERVICE_ID: i32 = 1;
/// The service name `PVE::IPCC` connects to.
pub const DEFAULT_SERVICE_NAME: &str = "pve2";

/// The authenticated peer of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// Client pid from libqb's connection stats (SO_PEERCRED at connect time).
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    /// `gid == www-data` (even for uid 0).
    pub read_only: bool,
}

impl Client {
    /// Accept rule of `server.c:s1_connection_accept_fn`: `Some(client)` if
    /// `(uid == 0 && gid == 0) || gid == www_data_gid`.
    pub fn authenticate(pid: u32, uid: u32, gid: u32, www_data_gid: u32) -> Option<Client> {
        if (uid == 0 && gid == 0) || gid == www_data_gid {
            Some(Client { pid, uid, gid, read_only: gid == www_data_gid })
        } else {
            None
        }
    }
}

/// What the daemon implements. Every method returns the reply body or an [`IpcError`].
/// Permission checks (read-only → EPERM, private paths → EPERM) and all request
/// validation are done before these are called; strings are C strings without the NUL.
///
/// Methods run on the IPC loop thread, one request at a time; they must not block for long
/// (every other client waits meanwhile, as in the original).
pub trait IpcHandler: Send + Sync {
    /// id 1: `.version` JSON (§5.2).
    fn get_fs_version(&self, client: &Client) -> Result<Vec<u8>, IpcError>;
    /// id 2: `.members` JSON (§5.3).
    fn get_cluster_info(&self, client: &Client) -> Result<Vec<u8>, IpcError>;
    /// id 3: `.vmlist` JSON (§5.4).
    fn get_guest_list(&self, client: &Client) -> Result<Vec<u8>, IpcError>;
    /// id 4: `cfs_status_set` (§6.4): EFBIG / ENOMEM / Ok. No body.
    fn set_status(&self, client: &Client, name: &[u8], data: &[u8]) -> Result<(), IpcError>;
    /// id 5: the stored bytes verbatim; missing → ENOENT. Empty `nodename` = local node.
    fn get_status(&self, client: &Client, name: &[u8], nodename: &[u8]) -> Result<Vec<u8>, IpcError>;
    /// id 6: file contents; missing or a directory → ENOENT.
    fn get_config(&self, client: &Client, path: &[u8]) -> Result<Vec<u8>, IpcError>;
    /// id 7: log an entry with node = local node, pid = `client.pid`, time = now;
    /// priority ≥ 8 must be dropped silently (still Ok). No body.
    fn log_cluster_msg(
        &self,
        client: &Client,
        priority: u8,
        ident: &[u8],
        tag: &[u8],
        msg: &[u8],
    ) -> Result<(), IpcError>;
    /// id 8: cluster log JSON (§5.7); `max_entries` already defaulted (0 → 50); an empty
    /// `user` means no ident filter.
    fn get_cluster_log(&self, client: &Client, max_entries: u32, user: &[u8]) -> Result<Vec<u8>, IpcError>;
    /// id 10: `.rrd` dump (§5.5), including the trailing NUL of a fresh dump.
    fn get_rrd_dump(&self, client: &Client) -> Result<Vec<u8>, IpcError>;
    /// vmlist lookup used by ids 11 and 13 between their vmid and property checks.
    fn guest_exists(&self, vmid: u32) -> bool;
    /// id 11: see [`crate::guest_props`]; `vmid` is 0 (all guests) or an existing guest.
    fn get_guest_config_property(&self, client: &Client, vmid: u32, property: &[u8]) -> Result<Vec<u8>, IpcError>;
    /// id 12: Ok if a line of `priv/token.cfg` equals `token` (see
    /// [`protocol::token_cfg_contains`]), else ENOENT. No body.
    fn verify_token(&self, client: &Client, token: &[u8]) -> Result<(), IpcError>;
    /// id 13: see [`crate::guest_props`].
    fn get_guest_config_properties(
        &self,
        client: &Client,
        vmid: u32,
        properties: &[&[u8]],
    ) -> Result<Vec<u8>, IpcError>;
}

/// Result of dispatching one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send a response with this id; `Ok(body)` or `Err(positive errno)`.
    Reply { id: i32, result: Result<Vec<u8>, IpcError> },
    /// Not even a header: close the connection.
    Disconnect,
}

/// Validate, permission-check and execute one request (no libqb involved).
pub fn dispatch(handler: &dyn IpcHandler, client: &Client, buf: &[u8]) -> Outcome {
    let Some(hdr) = protocol::parse_header(buf) else {
        return Outcome::Disconnect;
    };
    let id = hdr.id;
    if client.read_only && protocol::needs_write_access(id) {
        return Outcome::Reply { id, result: Err(IpcError::PermissionDenied) };
    }
    let req = match protocol::parse_request(buf, &|vmid| handler.guest_exists(vmid)) {
        Ok(r) => r,
        Err(ParseError::ShortHeader) => return Outcome::Disconnect,
        Err(ParseError::Refused(e)) => return Outcome::Reply { id, result: Err(e) },
    };
    let none = |r: Result<(), IpcError>| r.map(|()| Vec::new());
    let result = match req {
        Request::GetFsVersion => handler.get_fs_version(client),
        Request::GetClusterInfo => handler.get_cluster_info(client),
        Request::GetGuestList => handler.get_guest_list(client),
        Request::SetStatus { name, data } => none(handler.set_status(client, name, data)),
        Request::GetStatus { name, nodename } => handler.get_status(client, name, nodename),
        Request::GetConfig { path } => {
            if client.read_only && protocol::path_is_private(path) {
                Err(IpcError::PermissionDenied)
            } else {
                handler.get_config(client, path)
            }
        }
        Request::LogClusterMsg { priority, ident, tag, msg } => {
            none(handler.log_cluster_msg(client, priority, ident, tag, msg))
        }
        Request::GetClusterLog { max_entries, user } => handler.get_cluster_log(client, max_entries, user),
        Request::GetRrdDump => handler.get_rrd_dump(client),
        Request::GetGuestConfigProperty { vmid, property } => {
            handler.get_guest_config_property(client, vmid, property)
        }
        Request::VerifyToken { token } => none(handler.verify_token(client, token)),
        Request::GetGuestConfigProperties { vmid, properties } => {
            handler.get_guest_config_properties(client, vmid, &properties)
        }
    };
    Outcome::Reply { id, result }
}

// ---------------------------------------------------------------------------------------
// libqb glue

/// Shared by all callbacks of one service (the qb service context).
struct Shared {
    handler: Arc<dyn IpcHandler>,
    www_data_gid: u32,
    name: String,
}

/// Per-connection context (the qb connection context).
struct ConnCtx {
    client: Client,
    warned: bool,
    /// A disconnect is scheduled ([`disconnect_later`]): further requests get no reply.
    closing: bool,
    /// libqb ran `connection_closed`: the connection must not be disconnected again.
    closed: bool,
}

/// Context of the stop eventfd handler.
struct StopCtx {
    service: *mut qb_ipcs_service_t,
    lp: *mut qb_loop_t,
    fd: i32,
}

thread_local! {
    /// The qb loop of the service running on this thread (libqb's poll handlers carry no
    /// user data, and every libqb call for a service happens on its loop thread).
    static LOOP: Cell<*mut qb_loop_t> = const { Cell::new(ptr::null_mut()) };
}

fn this_loop() -> *mut qb_loop_t {
    LOOP.with(|l| l.get())
}

/// `f` with this thread's loop; -EIO when no service runs on this thread.
fn on_this_loop(f: impl FnOnce(*mut qb_loop_t) -> i32) -> i32 {
    let lp = this_loop();
    if lp.is_null() {
        return -EIO;
    }
    f(lp)
}

unsafe extern "C" fn job_add(p: i32, data: *mut c_void, f: ffi::qb_loop_job_dispatch_fn) -> i32 {
    on_this_loop(|lp| ffi::qb_loop_job_add(lp, p, data, f))
}

unsafe extern "C" fn dispatch_add(
    p: i32,
    fd: i32,
    events: i32,
    data: *mut c_void,
    f: ffi::qb_ipcs_dispatch_fn_t,
) -> i32 {
    on_this_loop(|lp| ffi::qb_loop_poll_add(lp, p, fd, events, data, f))
}

unsafe extern "C" fn dispatch_mod(
    p: i32,
    fd: i32,
    events: i32,
    data: *mut c_void,
    f: ffi::qb_ipcs_dispatch_fn_t,
) -> i32 {
    on_this_loop(|lp| ffi::qb_loop_poll_mod(lp, p, fd, events, data, f))
}

unsafe extern "C" fn dispatch_del(fd: i32) -> i32 {
    on_this_loop(|lp| ffi::qb_loop_poll_del(lp, fd))
}

unsafe fn shared_of<'a>(c: *mut qb_ipcs_connection_t) -> Option<&'a Shared> {
    (ffi::qb_ipcs_connection_service_context_get(c) as *const Shared).as_ref()
}

unsafe extern "C" fn connection_accept(c: *mut qb_ipcs_connection_t, uid: uid_t, gid: gid_t) -> i32 {
    let r = catch_unwind(AssertUnwindSafe(|| {
        let Some(shared) = shared_of(c) else {
            return -EIO;
        };
        let mut stats = ffi::qb_ipcs_connection_stats::default();
        ffi::qb_ipcs_connection_stats_get(c, &mut stats, 0);
        let pid = u32::try_from(stats.client_pid).unwrap_or(0);
        match Client::authenticate(pid, uid, gid, shared.www_data_gid) {
            Some(client) => {
                debug!(target: "ipcs", "authenticated connection {uid}/{gid} (pid {pid})");
                let ctx = Box::new(ConnCtx { client, warned: false, closing: false, closed: false });
                ffi::qb_ipcs_context_set(c, Box::into_raw(ctx) as *mut c_void);
                0
            }
            None => {
                error!(target: "ipcs", "connection from bad user {uid}! - rejected");
                -EACCES
            }
        }
    }));
    r.unwrap_or(-EIO)
}

unsafe extern "C" fn connection_created(_c: *mut qb_ipcs_connection_t) {
    debug!(target: "ipcs", "connection created");
}

unsafe extern "C" fn connection_closed(c: *mut qb_ipcs_connection_t) -> i32 {
    let ctx = ffi::qb_ipcs_context_get(c) as *mut ConnCtx;
    if let Some(ctx) = ctx.as_mut() {
        ctx.closed = true;
        debug!(target: "ipcs", "connection to pid:{} closed", ctx.client.pid);
    }
    0
}

/// Close a connection from inside `msg_process`. libqb holds no reference of its own while
/// it dispatches a request, so `qb_ipcs_disconnect` there frees the connection under the
/// dispatcher, which then reads it again (and, with more requests queued, unrefs it twice:
/// an abort). Instead: take a reference, let a loop job disconnect after the dispatch has
/// returned, and answer nothing more on this connection meanwhile. Returns the value
/// `msg_process` must return (negative: stop the current batch).
unsafe fn disconnect_later(c: *mut qb_ipcs_connection_t) -> i32 {
    let ctx = ffi::qb_ipcs_context_get(c) as *mut ConnCtx;
    if let Some(ctx) = ctx.as_mut() {
        if ctx.closing {
            return -1;
        }
        ctx.closing = true;
    }
    ffi::qb_ipcs_connection_ref(c);
    let rc = on_this_loop(|lp| ffi::qb_loop_job_add(lp, ffi::QB_LOOP_HIGH, c as *mut c_void, Some(disconnect_job)));
    if rc != 0 {
        // cannot happen on the service's own loop; the client's hang-up still closes it
        error!(target: "ipcs", "cannot schedule a disconnect ({rc})");
        ffi::qb_ipcs_connection_unref(c);
    }
    -1
}

/// The loop job of [`disconnect_later`]: disconnect unless libqb already closed the
/// connection (client hang-up, service stop), then drop the job's reference.
unsafe extern "C" fn disconnect_job(data: *mut c_void) {
    let c = data as *mut qb_ipcs_connection_t;
    let ctx = ffi::qb_ipcs_context_get(c) as *const ConnCtx;
    if ctx.as_ref().is_some_and(|ctx| !ctx.closed) {
        ffi::qb_ipcs_disconnect(c);
    }
    ffi::qb_ipcs_connection_unref(c);
}

unsafe extern "C" fn connection_destroyed(c: *mut qb_ipcs_connection_t) {
    let ctx = ffi::qb_ipcs_context_get(c) as *mut ConnCtx;
    if !ctx.is_null() {
        ffi::qb_ipcs_context_set(c, ptr::null_mut());
        drop(Box::from_raw(ctx));
    }
}

/// libqb's shm ring chunk header (`[size u32][magic u32]` right before the data; the
/// format both ends of a ring share, so stable across libqb versions).
const QB_RB_CHUNK_MAGIC: u32 = 0xA1A1_A1A1;
const QB_RB_CHUNK_HEADER_SIZE: usize = 8;

/// How many bytes the client really sent: libqb hands `msg_process` the size the request
/// header claims, but the shm ring chunk holding the request records its true length.
/// None when the header cannot be read safely (it lies on the previous page, which is only
/// mapped when the chunk does not start the ring) or is not a live chunk header.
///
/// # Safety
/// `data` points into a mapped request (libqb's `msg_process` argument).
unsafe fn received_len(data: *mut c_void) -> Option<usize> {
    let page = usize::try_from(libc::sysconf(libc::_SC_PAGESIZE)).ok().filter(|p| *p >= 4096)?;
    let addr = data as usize;
    if addr % page < QB_RB_CHUNK_HEADER_SIZE || !addr.is_multiple_of(4) {
        return None;
    }
    // SAFETY: both words lie on the same (mapped) page as `data` and are 4-byte aligned.
    let size = ptr::read((addr - 8) as *const u32);
    let magic = ptr::read((addr - 4) as *const u32);
    (magic == QB_RB_CHUNK_MAGIC).then_some(size as usize)
}

unsafe extern "C" fn msg_process(c: *mut qb_ipcs_connection_t, data: *mut c_void, _size: size_t) -> i32 {
    match catch_unwind(AssertUnwindSafe(|| msg_process_inner(c, data))) {
        Ok(rc) => rc,
        Err(_) => {
            error!(target: "ipcs", "panic while processing a request - disconnecting client");
            disconnect_later(c)
        }
    }
}

/// One request: 0 when answered, else what [`disconnect_later`] returned.
unsafe fn msg_process_inner(c: *mut qb_ipcs_connection_t, data: *mut c_void) -> i32 {
    let ctx = ffi::qb_ipcs_context_get(c) as *mut ConnCtx;
    let (Some(ctx), Some(shared)) = (ctx.as_mut(), shared_of(c)) else {
        error!(target: "ipcs", "qb_ipcs_context_get failed");
        return disconnect_later(c);
    };
    if ctx.closing {
        return -1;
    }
    if data.is_null() {
        return disconnect_later(c);
    }
    // libqb passes the *claimed* header size, not the received length. The request lives
    // in the connection's receive buffer (socket transport) or in the double-mapped shm
    // ring, so at least `buffer_size` bytes from `data` are always mapped; the header
    // (16 bytes) always is. Never trust more than that.
    let cap = usize::try_from(ffi::qb_ipcs_connection_get_buffer_size(c))
        .unwrap_or(0)
        .max(REQUEST_HEADER_SIZE);
    let head = std::slice::from_raw_parts(data as *const u8, REQUEST_HEADER_SIZE);
    let (id, claimed) = match protocol::parse_header(head) {
        Some(h) => (h.id, h.size),
        None => (0, 0),
    };
    let len = match usize::try_from(claimed) {
        Ok(n) if (REQUEST_HEADER_SIZE..=cap).contains(&n) => n,
        _ => {
            if !ctx.warned {
                ctx.warned = true;
                warn!(
                    target: "ipcs",
                    "bad request size {claimed} (id {id}, buffer {cap}) from pid {}", ctx.client.pid
                );
            }
            REQUEST_HEADER_SIZE
        }
    };
    debug!(target: "ipcs", "process msg:{id}, size:{claimed}");
    let received = received_len(data);
    let client = ctx.client;
    let outcome = if received.is_some_and(|r| r < len) {
        // the header claims bytes the client never sent: what follows in the ring is stale
        if !ctx.warned {
            ctx.warned = true;
            warn!(target: "ipcs", "request {id} claims {claimed} bytes but {} were received from pid {}", received.unwrap_or(0), client.pid);
        }
        Outcome::Reply { id, result: Err(IpcError::Invalid) }
    } else {
        let buf = std::slice::from_raw_parts(data as *const u8, len);
        match catch_unwind(AssertUnwindSafe(|| dispatch(&*shared.handler, &client, buf))) {
            Ok(o) => o,
            Err(_) => {
                error!(target: "ipcs", "IPC handler panicked on request {id}");
                Outcome::Reply { id, result: Err(IpcError::Io) }
            }
        }
    };
    let (id, result) = match outcome {
        Outcome::Reply { id, result } => (id, result),
        Outcome::Disconnect => return disconnect_later(c),
    };
    let error = match &result {
        Ok(_) => 0,
        Err(e) => e.wire_code(),
    };
    debug!(target: "ipcs", "process result {error}");
    let body: &[u8] = match &result {
        Ok(b) => b,
        Err(_) => &[],
    };
    if body.len() > cap.saturating_sub(RESPONSE_HEADER_SIZE) || body.len() > i32::MAX as usize / 2 {
        // Cannot fit the client's ring; libqb would fail the send and the original then
        // disconnects.
        error!(
            target: "ipcs",
            "qb_ipcs_response_send: response of {} bytes exceeds the {cap} byte buffer",
            body.len()
        );
        return disconnect_later(c);
    }
    let hdr = protocol::response_header(id, body.len(), error);
    let iov = [
        libc::iovec { iov_base: hdr.as_ptr() as *mut c_void, iov_len: hdr.len() },
        libc::iovec { iov_base: body.as_ptr() as *mut c_void, iov_len: body.len() },
    ];
    let res = ffi::qb_ipcs_response_sendv(c, iov.as_ptr(), if body.is_empty() { 1 } else { 2 });
    if res < 0 {
        let err = io::Error::from_raw_os_error(i32::try_from(-res).unwrap_or(EIO));
        error!(target: "ipcs", "qb_ipcs_response_send: {err}");
        return disconnect_later(c);
    }
    0
}

unsafe extern "C" fn stop_loop_job(data: *mut c_void) {
    ffi::qb_loop_stop(data as *mut qb_loop_t);
}

unsafe extern "C" fn stop_dispatch(_fd: i32, _revents: i32, data: *mut c_void) -> i32 {
    let Some(stop) = (data as *mut StopCtx).as_mut() else {
        return -1;
    };
    let mut v: u64 = 0;
    let _ = libc::read(stop.fd, &mut v as *mut u64 as *mut c_void, 8);
    if !stop.service.is_null() {
        debug!(target: "ipcs", "got terminate request");
        ffi::qb_ipcs_destroy(stop.service);
        stop.service = ptr::null_mut();
    }
    // Let jobs queued by the disconnects run first, then stop.
    if ffi::qb_loop_job_add(stop.lp, ffi::QB_LOOP_LOW, stop.lp as *mut c_void, Some(stop_loop_job)) != 0 {
        ffi::qb_loop_stop(stop.lp);
    }
    -1
}

/// A running IPC service. Dropping it stops the service.
pub struct IpcServer {
    name: String,
    stop_fd: Option<Arc<OwnedFd>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for IpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcServer").field("name", &self.name).finish()
    }
}

impl IpcServer {
    /// Create the libqb service `service_name` (the daemon uses [`DEFAULT_SERVICE_NAME`])
    /// and run it on a new thread ("ipcs"). Returns once the service is listening; fails if
    /// the name is taken (another pmxcfs running) or libqb cannot set up the service.
    pub fn start(
        service_name: &str,
        handler: Arc<dyn IpcHandler>,
        www_data_gid: u32,
    ) -> io::Result<IpcServer> {
        let cname = CString::new(service_name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "service name contains NUL"))?;
        let stale = crate::stale_rings::remove_stale_rings(std::path::Path::new(crate::stale_rings::SHM_DIR), service_name);
        if stale > 0 {
            info!(target: "ipcs", "removed {stale} IPC ring directories left by a killed server");
        }
        // SAFETY: plain syscall.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: freshly created fd that we own.
        let stop_fd = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
        let shared = Arc::new(Shared { handler, www_data_gid, name: service_name.to_string() });
        let (tx, rx) = mpsc::channel();
        let thread_fd = stop_fd.clone();
        let thread = std::thread::Builder::new()
            .name("ipcs".into())
            .spawn(move || run_service(cname, shared, thread_fd, tx))?;
        match rx.recv() {
            Ok(Ok(())) => Ok(IpcServer {
                name: service_name.to_string(),
                stop_fd: Some(stop_fd),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other("IPC server thread died during start-up"))
            }
        }
    }

    /// The service name this server listens on.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Disconnect all clients, withdraw the service and join the loop thread. Idempotent.
    pub fn stop(&mut self) {
        if let Some(fd) = self.stop_fd.take() {
            let one: u64 = 1;
            // SAFETY: writing 8 bytes to our eventfd.
            unsafe {
                libc::write(fd.as_raw_fd(), &one as *const u64 as *const c_void, 8);
            }
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                error!(target: "ipcs", "IPC server thread panicked");
            }
        }
    }
}

impl Drop for IpcServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_service(
    name: CString,
    shared: Arc<Shared>,
    stop_fd: Arc<OwnedFd>,
    ready: mpsc::Sender<io::Result<()>>,
) {
    // SAFETY: all libqb objects are created, used and destroyed on this thread only.
    unsafe {
        let lp = ffi::qb_loop_create();
        if lp.is_null() {
            let _ = ready.send(Err(io::Error::other("qb_loop_create failed")));
            return;
        }
        LOOP.with(|l| l.set(lp));
        let mut handlers = ffi::qb_ipcs_service_handlers {
            connection_accept: Some(connection_accept),
            connection_created: Some(connection_created),
            msg_process: Some(msg_process),
            connection_closed: Some(connection_closed),
            connection_destroyed: Some(connection_destroyed),
        };
        let s = ffi::qb_ipcs_create(name.as_ptr(), SERVICE_ID, ffi::QB_IPC_SHM, &mut handlers);
        if s.is_null() {
            let e = io::Error::last_os_error();
            error!(target: "ipcs", "qb_ipcs_create failed: {e}");
            ffi::qb_loop_destroy(lp);
            LOOP.with(|l| l.set(ptr::null_mut()));
            let _ = ready.send(Err(e));
            return;
        }
        // qb copies the function pointers.
        let mut poll = ffi::qb_ipcs_poll_handlers {
            job_add: Some(job_add),
            dispatch_add: Some(dispatch_add),
            dispatch_mod: Some(dispatch_mod),
            dispatch_del: Some(dispatch_del),
        };
        ffi::qb_ipcs_poll_handlers_set(s, &mut poll);
        // The Arc stays alive (held by this frame) until after the loop is destroyed.
        ffi::qb_ipcs_service_context_set(s, Arc::as_ptr(&shared) as *mut c_void);
        let rc = ffi::qb_ipcs_run(s);
        if rc < 0 {
            let e = io::Error::from_raw_os_error(-rc);
            error!(target: "ipcs", "qb_ipcs_run failed: {e}");
            // qb_ipcs_run already dropped the service's initial reference on failure.
            ffi::qb_loop_destroy(lp);
            LOOP.with(|l| l.set(ptr::null_mut()));
            let _ = ready.send(Err(e));
            return;
        }
        let mut stop = Box::new(StopCtx { service: s, lp, fd: stop_fd.as_raw_fd() });
        let rc = ffi::qb_loop_poll_add(
            lp,
            ffi::QB_LOOP_HIGH,
            stop.fd,
            libc::POLLIN as i32,
            &mut *stop as *mut StopCtx as *mut c_void,
            Some(stop_dispatch),
        );
        if rc != 0 {
            let e = io::Error::from_raw_os_error(rc.checked_neg().unwrap_or(EIO));
            ffi::qb_ipcs_destroy(s);
            ffi::qb_loop_destroy(lp);
            LOOP.with(|l| l.set(ptr::null_mut()));
            let _ = ready.send(Err(e));
            return;
        }
        debug!(target: "ipcs", "start event loop for service {}", shared.name);
        let _ = ready.send(Ok(()));
        ffi::qb_loop_run(lp);
        if !stop.service.is_null() {
            ffi::qb_ipcs_destroy(stop.service);
            stop.service = ptr::null_mut();
        }
        ffi::qb_loop_destroy(lp);
        LOOP.with(|l| l.set(ptr::null_mut()));
        debug!(target: "ipcs", "event loop finished - exit worker thread");
        drop(stop);
        drop(shared);
    }
}
