//! Helpers shared by the integration tests: golden vector loading and a tiny PRNG.
#![allow(dead_code)]

use std::path::Path;

/// Load a golden `.hex` file (`{N}` = N zero bytes) and return the decoded bytes.
pub fn load_hex(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = text.trim();
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'{' {
            let end = i + text[i..].find('}').expect("unterminated {N}");
            let n: usize = text[i + 1..end].parse().expect("bad {N}");
            out.resize(out.len() + n, 0);
            i = end + 1;
        } else {
            let byte = u8::from_str_radix(&text[i..i + 2], 16).expect("bad hex");
            out.push(byte);
            i += 2;
        }
    }
    out
}

/// xorshift64* PRNG, deterministic and dependency-free.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}
