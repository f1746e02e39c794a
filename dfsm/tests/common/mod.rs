//! Loader for the golden CPG traces in `shared/golden/wire/node*.tsv`.
#![allow(dead_code)]

use std::path::PathBuf;

/// One line of a node*.tsv file.
#[derive(Debug, Clone)]
pub struct Record {
    pub file: String,
    pub line: usize,
    pub ts: f64,
    pub dir: String,
    pub group: String,
    pub nodeid: u32,
    pub pid: u32,
    pub len: usize,
    pub text: String,
    /// Expanded message bytes for send/deliver records.
    pub bytes: Option<Vec<u8>>,
}

pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/golden/wire")
}

/// Lowercase hex with `{N}` runs of N zero bytes.
pub fn unzhex(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() / 2);
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'{' {
            let end = i + s[i..].find('}').expect("unterminated {N}");
            let n: usize = s[i + 1..end].parse().expect("bad {N}");
            out.resize(out.len() + n, 0);
            i = end + 1;
        } else {
            let v = u8::from_str_radix(&s[i..i + 2], 16).expect("bad hex");
            out.push(v);
            i += 2;
        }
    }
    out
}

pub fn load(name: &str) -> Vec<Record> {
    let path = golden_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, ln)| {
            let f: Vec<&str> = ln.split('\t').collect();
            assert_eq!(f.len(), 6, "{name}:{}", i + 1);
            let (nodeid, pid) = f[3].split_once('/').expect("who");
            let len: usize = f[4].parse().expect("len");
            let bytes = matches!(f[1], "send" | "deliver").then(|| {
                let b = unzhex(f[5].split(' ').next().unwrap_or(""));
                assert_eq!(b.len(), len, "{name}:{} length", i + 1);
                b
            });
            Record {
                file: name.to_string(),
                line: i + 1,
                ts: f[0].parse().expect("ts"),
                dir: f[1].to_string(),
                group: f[2].to_string(),
                nodeid: nodeid.parse().expect("nodeid"),
                pid: pid.parse().expect("pid"),
                len,
                text: f[5].to_string(),
                bytes,
            }
        })
        .collect()
}

pub fn load_all() -> Vec<Record> {
    ["node1.tsv", "node2.tsv", "node3.tsv"]
        .iter()
        .flat_map(|n| load(n))
        .collect()
}

/// Parse a confchg record's `members=a/b,c/d left=... joined=...` text.
pub fn confchg_lists(text: &str) -> [Vec<(u32, u32)>; 3] {
    let mut out: [Vec<(u32, u32)>; 3] = Default::default();
    for (i, part) in text.split(' ').enumerate().take(3) {
        let list = part.split_once('=').map(|x| x.1).unwrap_or("");
        for item in list.split(',').filter(|s| !s.is_empty()) {
            let item = item.split(':').next().unwrap();
            let (n, p) = item.split_once('/').unwrap();
            out[i].push((n.parse().unwrap(), p.parse().unwrap()));
        }
    }
    out
}
