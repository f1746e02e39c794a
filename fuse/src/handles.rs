//! Who is calling: the thread group (process) of a kernel thread id.

/// The thread group (process) id of kernel thread id `tid`, from /proc.
pub fn tgid_of(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok())
}
