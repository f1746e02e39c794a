//! A minimal libqb IPC client (what PVE::IPCC does): qb_ipcc_connect + qb_ipcc_sendv_recv.

use std::ffi::{c_char, c_void, CString};

use pmxcfs_ipc::protocol::decode_response;

#[link(name = "qb")]
extern "C" {
    fn qb_ipcc_connect(name: *const c_char, max_msg_size: usize) -> *mut c_void;
    fn qb_ipcc_sendv_recv(c: *mut c_void, iov: *const libc::iovec, iov_len: u32, res: *mut c_void, res_len: usize, timeout_ms: i32) -> isize;
    fn qb_ipcc_disconnect(c: *mut c_void);
}

pub struct QbClient(*mut c_void);

impl QbClient {
    pub fn connect(name: &str) -> QbClient {
        let n = CString::new(name).unwrap();
        // SAFETY: valid C string; libqb returns NULL on failure.
        let c = unsafe { qb_ipcc_connect(n.as_ptr(), 1024 * 1024) };
        assert!(!c.is_null(), "qb_ipcc_connect({name}) failed: {}", std::io::Error::last_os_error());
        QbClient(c)
    }

    /// Sends one request; returns (error, body).
    pub fn call(&self, req: &[u8]) -> (i32, Vec<u8>) {
        let iov = libc::iovec { iov_base: req.as_ptr() as *mut c_void, iov_len: req.len() };
        let mut buf = vec![0u8; 1024 * 1024];
        // SAFETY: one iovec over `req`, a response buffer we own.
        let n = unsafe { qb_ipcc_sendv_recv(self.0, &iov, 1, buf.as_mut_ptr() as *mut c_void, buf.len(), 10_000) };
        assert!(n > 0, "qb_ipcc_sendv_recv: {n}");
        let r = decode_response(&buf[..n as usize]).expect("response header");
        (r.error, r.body)
    }
}

impl Drop for QbClient {
    fn drop(&mut self) {
        // SAFETY: connection from qb_ipcc_connect, disconnected once.
        unsafe { qb_ipcc_disconnect(self.0) };
    }
}

/// Runs `f` in a thread that entered network namespace `ns` (abstract sockets are per namespace).
pub fn in_netns<R: Send + 'static>(ns: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("netns");
        use std::os::fd::AsRawFd;
        // SAFETY: setns on this thread only, with an fd we own.
        assert_eq!(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns {path}");
        f()
    })
    .join()
    .expect("netns thread")
}
