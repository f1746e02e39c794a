//! The lock table: when this node first saw each `priv/lock/<name>` directory in its current
//! state. A lock expires 120 s (local clock) after that, whatever the directory's mtime says.

use std::collections::HashMap;

/// Lock timeout (`CFS_LOCK_TIMEOUT`).
pub const LOCK_TIMEOUT: u32 = 120;

#[derive(Debug, Clone, PartialEq, Eq)]
struct LockState {
    ltime: u32,
    csum: [u8; 32],
}

/// path → (first seen, checksum of the lock directory entry).
#[derive(Debug, Clone, Default)]
pub struct LockTable {
    locks: HashMap<String, LockState>,
}

impl LockTable {
    /// Records `path` as seen now in state `csum`.
    pub fn reset(&mut self, path: &str, now: u32, csum: [u8; 32]) {
        self.locks.insert(path.to_string(), LockState { ltime: now, csum });
    }

    pub fn remove(&mut self, path: &str) {
        self.locks.remove(path);
    }

    /// True when the lock has been unchanged (same `csum`) for more than [`LOCK_TIMEOUT`]
    /// seconds; an unknown lock or a changed checksum restarts the timeout.
    pub fn expired(&mut self, path: &str, csum: &[u8; 32], now: u32) -> bool {
        match self.locks.get_mut(path) {
            None => {
                self.reset(path, now, *csum);
                false
            }
            Some(st) if st.csum != *csum => {
                tracing::warn!(target: "database", "wrong lock csum - reset timeout");
                st.csum = *csum;
                st.ltime = now;
                false
            }
            Some(st) => now > st.ltime && now - st.ltime > LOCK_TIMEOUT,
        }
    }

    pub fn len(&self) -> usize {
        self.locks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.locks.is_empty()
    }
}
