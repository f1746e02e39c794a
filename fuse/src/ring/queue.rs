//! One io_uring queue of the FUSE connection: a thread pinned to one CPU whose ring entries
//! receive the requests that processes on that CPU make, and carry the replies back.
//!
//! An entry's two buffers (headers, payload) belong to the kernel from REGISTER or
//! COMMIT_AND_FETCH until its completion; then to this thread, which reads the request,
//! dispatches it, and writes the reply (kept aside by [`RingSender`] until then) into them
//! before committing. A reply given later by a worker thread is committed when that worker
//! wakes this thread through an eventfd.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use pmxcfs_backend::FsError;
use parking_lot::Mutex;
use tracing::{debug, warn};

use super::abi::{self, InHeader};
use super::dispatch::dispatch;
use super::request;
use crate::filesystem::Handlers;

/// States of an entry (see the module doc).
const KERNEL: u8 = 0;
const DISPATCHING: u8 = 1;
const REPLIED: u8 = 2;
const DEFERRED: u8 = 3;

/// user_data of the eventfd read; entries use their index.
const WAKE: u64 = u64::MAX;

struct Entry {
    header: *mut u8,
    payload: *mut u8,
    payload_len: usize,
    /// `[header, payload]` as the REGISTER command hands them to the kernel.
    iov: Box<[libc::iovec; 2]>,
    state: AtomicU8,
    /// The request's `unique` (the kernel's commit id of the entry).
    commit_id: AtomicU64,
    /// The answer until it is committed: an errno (0 = success) and the payload.
    reply: Mutex<(i32, Vec<u8>)>,
}

impl Entry {
    fn new(payload_len: usize) -> Entry {
        let header = Box::into_raw(vec![0u8; abi::HEADER_SIZE].into_boxed_slice()) as *mut u8;
        let payload = Box::into_raw(vec![0u8; payload_len].into_boxed_slice()) as *mut u8;
        let iov = Box::new([
            libc::iovec { iov_base: header.cast(), iov_len: abi::HEADER_SIZE },
            libc::iovec { iov_base: payload.cast(), iov_len: payload_len },
        ]);
        Entry { header, payload, payload_len, iov, state: AtomicU8::new(KERNEL), commit_id: AtomicU64::new(0), reply: Mutex::new((0, Vec::new())) }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        // SAFETY: both were made by Box::into_raw of boxed slices of these lengths, and the
        // kernel no longer uses them (the queue is dropped after its ring is closed).
        unsafe {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.header, abi::HEADER_SIZE)));
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.payload, self.payload_len)));
        }
    }
}

/// The entries and the hand-over of late replies; shared by the queue thread and the
/// senders of the replies it has not committed yet.
pub struct Queue {
    qid: u16,
    entries: Vec<Entry>,
    late: Mutex<Vec<usize>>,
    wake: OwnedFd,
}

// SAFETY: the raw buffers are only accessed by the queue thread while the entry is not the
// kernel's (see the module doc); everything else is atomics and mutexes.
unsafe impl Send for Queue {}
unsafe impl Sync for Queue {}

/// Where the answer to one ring entry's request goes (see [`crate::reply`]): answers once,
/// and EIO if dropped unanswered (a panicking handler, a malformed request).
pub struct RingSender {
    queue: Arc<Queue>,
    idx: usize,
    answered: bool,
}

impl RingSender {
    /// Answers the entry's request: `errno` 0 with `body` (the reply's structs and data,
    /// in order), or an error without a body. From any thread.
    pub fn send(mut self, errno: i32, body: &[&[u8]]) {
        self.answer(errno, body);
    }

    fn answer(&mut self, errno: i32, body: &[&[u8]]) {
        self.answered = true;
        let entry = &self.queue.entries[self.idx];
        {
            let mut reply = entry.reply.lock();
            reply.0 = errno;
            reply.1.clear();
            for part in body {
                reply.1.extend_from_slice(part);
            }
        }
        if entry.state.swap(REPLIED, Ordering::AcqRel) == DEFERRED {
            self.queue.late.lock().push(self.idx);
            let one = 1u64.to_ne_bytes();
            // SAFETY: an eventfd write of 8 bytes from a live buffer.
            unsafe { libc::write(self.queue.wake.as_raw_fd(), one.as_ptr().cast(), 8) };
        }
    }
}

impl Drop for RingSender {
    fn drop(&mut self) {
        if !self.answered {
            self.answer(FsError::Io("request not answered".into()).errno(), &[]);
        }
    }
}

/// The ring of one queue, made on its own thread before INIT is answered.
pub struct QueueRing {
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    queue: Arc<Queue>,
    dev: OwnedFd,
    /// Where the eventfd read lands; dropped after the ring (field order).
    wake_buf: Box<[u8; 8]>,
    /// Per entry: its last command was a REGISTER (not a COMMIT_AND_FETCH).
    registering: Vec<bool>,
}

impl QueueRing {
    /// A ring with `depth` entries whose payload buffers hold `payload_len` bytes.
    pub fn new(dev: OwnedFd, qid: u16, depth: usize, payload_len: usize) -> io::Result<QueueRing> {
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder().setup_single_issuer().setup_defer_taskrun().build((depth as u32 + 2).next_power_of_two())?;
        // SAFETY: eventfd returns a new descriptor or -1.
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if wake < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `wake` is a fresh descriptor we own.
        let wake = unsafe { OwnedFd::from_raw_fd(wake) };
        let entries = (0..depth).map(|_| Entry::new(payload_len)).collect();
        let queue = Arc::new(Queue { qid, entries, late: Mutex::new(Vec::new()), wake });
        Ok(QueueRing { ring, queue, dev, wake_buf: Box::new([0u8; 8]), registering: vec![false; depth] })
    }

    fn push(&mut self, sqe: squeue::Entry128) -> io::Result<()> {
        // SAFETY: every buffer an SQE names (entry buffers in `self.queue`, `self.wake_buf`)
        // lives as long as the ring.
        while unsafe { self.ring.submission().push(&sqe) }.is_err() {
            self.ring.submit()?;
        }
        Ok(())
    }

    fn register(&mut self, idx: usize) -> io::Result<()> {
        self.registering[idx] = true;
        let e = &self.queue.entries[idx];
        e.state.store(KERNEL, Ordering::Release);
        let sqe = opcode::UringCmd80::new(types::Fd(self.dev.as_raw_fd()), abi::CMD_REGISTER)
            .cmd(abi::cmd_req(0, self.queue.qid))
            .addr(Some(e.iov.as_ptr() as u64))
            .build()
            .user_data(idx as u64);
        self.push(with_len(sqe, 2))
    }

    /// Writes the entry's reply (`fuse_out_header` into the headers, the body into the
    /// payload) into its buffers and gives it back to the kernel.
    fn commit(&mut self, idx: usize) -> io::Result<()> {
        let e = &self.queue.entries[idx];
        let unique = e.commit_id.load(Ordering::Relaxed);
        {
            let mut reply = e.reply.lock();
            if reply.1.len() > e.payload_len {
                warn!(target: "fuse", "reply of {} bytes does not fit a ring entry", reply.1.len());
                *reply = (FsError::Io("reply too large".into()).errno(), Vec::new());
            }
            let (errno, body) = (reply.0, &reply.1);
            let head = abi::out_header(unique, errno, body.len());
            // SAFETY: the entry is this thread's (replied, not yet committed); the header is
            // 16 bytes into a 288-byte buffer, the body fits the payload buffer (checked).
            unsafe {
                std::ptr::copy_nonoverlapping(head.as_ptr(), e.header, head.len());
                std::ptr::copy_nonoverlapping(body.as_ptr(), e.payload, body.len());
                std::ptr::copy_nonoverlapping((body.len() as u32).to_ne_bytes().as_ptr(), e.header.add(abi::ENT_PAYLOAD_SZ), 4);
            }
        }
        e.state.store(KERNEL, Ordering::Release);
        self.registering[idx] = false;
        let sqe = opcode::UringCmd80::new(types::Fd(self.dev.as_raw_fd()), abi::CMD_COMMIT_AND_FETCH)
            .cmd(abi::cmd_req(unique, self.queue.qid))
            .build()
            .user_data(idx as u64);
        self.push(sqe)
    }

    /// Reads and dispatches the request the kernel put into entry `idx`; commits at once
    /// if the handler answered before returning.
    fn handle(&mut self, idx: usize, handlers: &Handlers) -> io::Result<()> {
        let e = &self.queue.entries[idx];
        e.state.store(DISPATCHING, Ordering::Release);
        // SAFETY: the kernel completed the fetch: the buffers are this thread's until the
        // commit below (or the late one), and nothing writes them meanwhile.
        let header = unsafe { std::slice::from_raw_parts(e.header, abi::HEADER_SIZE) };
        let commit_id = abi::u64_at(header, abi::ENT_COMMIT_ID).unwrap_or(0);
        let payload_sz = (abi::u32_at(header, abi::ENT_PAYLOAD_SZ).unwrap_or(0) as usize).min(e.payload_len);
        // SAFETY: as above.
        let payload = unsafe { std::slice::from_raw_parts(e.payload, payload_sz) };
        e.commit_id.store(commit_id, Ordering::Relaxed);
        let sender = RingSender { queue: self.queue.clone(), idx, answered: false };
        let qid = self.queue.qid;
        // A panic while parsing or in the handler drops the reply, which answers EIO; the
        // queue thread must live on, or every later request of its CPU would hang.
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match InHeader::parse(header) {
            Some(h) => {
                let op_len = (h.len as usize).saturating_sub(abi::IN_HEADER_SIZE + payload_sz).min(abi::OP_IN_SIZE);
                let op = &header[abi::OP_IN..abi::OP_IN + op_len];
                match request::parse(h.opcode, op, payload) {
                    Ok(call) => dispatch(handlers, h.nodeid, h.pid, call, sender),
                    Err(_) => {
                        warn!(target: "fuse", "malformed request (opcode {}, {} bytes) on ring queue {qid}", h.opcode, h.len);
                        sender.send(FsError::Io("malformed request".into()).errno(), &[]);
                    }
                }
            }
            None => sender.send(FsError::Io("malformed request".into()).errno(), &[]),
        }));
        if served.is_err() {
            tracing::error!(target: "fuse", "request {commit_id} on ring queue {qid} panicked; answered EIO");
        }
        if e.state.compare_exchange(DISPATCHING, DEFERRED, Ordering::AcqRel, Ordering::Acquire).is_err() {
            self.commit(idx)?;
        }
        Ok(())
    }

    fn arm_wake(&mut self) -> io::Result<()> {
        let sqe = opcode::Read::new(types::Fd(self.queue.wake.as_raw_fd()), self.wake_buf.as_mut_ptr(), 8).build().user_data(WAKE);
        self.push(sqe.into())
    }

    /// What a completion means: a request to serve, late replies to commit, or an entry
    /// that ended.
    fn complete(&mut self, user_data: u64, res: i32, handlers: &Handlers, live: &mut usize) -> io::Result<()> {
        if user_data == WAKE {
            if res < 0 {
                warn!(target: "fuse", "ring queue {}: eventfd read failed: {}", self.queue.qid, io::Error::from_raw_os_error(-res));
                std::thread::sleep(Duration::from_millis(10));
            }
            let late = std::mem::take(&mut *self.queue.late.lock());
            late.into_iter().try_for_each(|idx| self.commit(idx))?;
            return self.arm_wake();
        }
        let idx = user_data as usize;
        if res >= 0 {
            return self.handle(idx, handlers);
        }
        match -res {
            // the kernel has not processed the INIT reply yet
            libc::EAGAIN if self.registering[idx] => {
                std::thread::sleep(Duration::from_millis(1));
                self.register(idx)
            }
            // the connection ends (unmount, abort)
            libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED | libc::ENODEV => {
                *live -= 1;
                Ok(())
            }
            errno => {
                let err = io::Error::from_raw_os_error(errno);
                if self.registering[idx] {
                    // refused: the kernel falls back to /dev/fuse for the whole connection
                    warn!(target: "fuse", "ring queue {}: registration refused: {err}; serving through /dev/fuse", self.queue.qid);
                    *live -= 1;
                    Ok(())
                } else {
                    // a refused commit leaves the entry with us: hand it to the kernel again
                    warn!(target: "fuse", "ring queue {}: commit of entry {idx} refused: {err}", self.queue.qid);
                    self.register(idx)
                }
            }
        }
    }

    /// Registers every entry and serves until the connection ends. A queue that cannot go
    /// on ends the daemon: its CPU's requests would otherwise wait forever (the kernel keeps
    /// queueing them here), while a restart loses nothing (crash record, crash copies).
    pub fn serve(mut self, handlers: Handlers) {
        let mut live = self.queue.entries.len();
        let mut result = self.arm_wake();
        for idx in 0..self.queue.entries.len() {
            result = result.and_then(|_| self.register(idx));
        }
        while result.is_ok() && live > 0 {
            if let Err(e) = self.ring.submit_and_wait(1) {
                // EBUSY: completions to reap first
                if !matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)) {
                    result = Err(e);
                    break;
                }
            }
            let done: Vec<(u64, i32)> = self.ring.completion().map(|c| (c.user_data(), c.result())).collect();
            for (user_data, res) in done {
                result = self.complete(user_data, res, &handlers, &mut live);
                if result.is_err() {
                    break;
                }
            }
        }
        match result {
            Ok(()) => debug!(target: "fuse", "ring queue {} stopped", self.queue.qid),
            Err(e) => {
                tracing::error!(target: "fuse", "ring queue {} failed: {e} - exiting, as its CPU's requests could not be answered", self.queue.qid);
                std::process::abort();
            }
        }
    }
}

/// Sets `sqe->len` (the iovec count of a REGISTER), which `UringCmd80` does not expose.
fn with_len(sqe: squeue::Entry128, len: u32) -> squeue::Entry128 {
    const _: () = assert!(std::mem::size_of::<squeue::Entry128>() == 128);
    // SAFETY: Entry128 is a repr(C) pair of plain bytes (the 64-byte io_uring_sqe and 64
    // bytes of command area); `len` is the u32 at offset 24 of io_uring_sqe.
    let mut bytes: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    bytes[24..28].copy_from_slice(&len.to_ne_bytes());
    unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(bytes) }
}

/// Pins the calling thread to `cpu` (its queue's requests come from there).
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays within it for cpu < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
