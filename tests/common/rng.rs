//! The one deterministic test RNG (xorshift64) of the workspace's tests; status/tests and the
//! ipc unit tests include this file by `#[path]` (no crate is shared by all of them).
#![allow(dead_code)]

/// A tiny deterministic xorshift64 generator for randomized tests. The seed must not be 0.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}
