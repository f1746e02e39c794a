//! Helpers shared by the status integration tests: golden vector loading and the
//! workspace's test RNG (tests/common/rng.rs).
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

#[path = "../../../tests/common/rng.rs"]
mod rng;
#[allow(unused_imports)]
pub use rng::Rng;
