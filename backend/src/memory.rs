//! Hands freed heap memory back to the kernel after large, one-off allocations (loading the
//! tree, a resync, a big store transaction), so the daemon's RSS is what the tree needs.

/// Store transactions with at least this many rows are followed by a trim; smaller ones
/// (the idle cluster's few rows every sync interval) free too little to be worth the walk.
pub const TRIM_AFTER_ROWS: usize = 256;

/// Returns free heap pages to the kernel (glibc `malloc_trim`); a no-op elsewhere.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no pointers from us.
    unsafe {
        libc::malloc_trim(0);
    }
}
