//! Names are bytes, as in the original: a name that is not UTF-8 (from config.db, a CPG
//! message or FUSE) is kept exactly. Inside pmxcfs-ng names are `String`s; each byte that is
//! not part of valid UTF-8 is held as the private-use character U+F700 + byte (U+F780–U+F7FF),
//! and a valid character of that range is held byte by byte the same way, so bytes → string
//! → bytes always gives the same bytes. Every door (store, wire, index digests, FUSE, IPC)
//! converts with [`decode`] / [`encode`].

use std::borrow::Cow;

const BASE: u32 = 0xF700;

fn is_reserved(c: char) -> bool {
    (0xF780..=0xF7FF).contains(&(c as u32))
}

fn escaped(b: u8) -> char {
    char::from_u32(BASE + b as u32).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// Raw name bytes → internal string (borrowed when the bytes are plain UTF-8).
pub fn decode(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if !s.chars().any(is_reserved) {
            return Cow::Borrowed(s);
        }
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if is_reserved(c) {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push(escaped(b));
                }
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            out.push(escaped(b));
        }
    }
    Cow::Owned(out)
}

/// Internal string → the raw name bytes it stands for.
pub fn encode(s: &str) -> Cow<'_, [u8]> {
    if !s.chars().any(is_reserved) {
        return Cow::Borrowed(s.as_bytes());
    }
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        if is_reserved(c) {
            out.push((c as u32 - BASE) as u8);
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    Cow::Owned(out)
}

/// Length of the raw name in bytes.
pub fn raw_len(s: &str) -> usize {
    encode(s).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_utf8_is_borrowed_both_ways() {
        assert!(matches!(decode("qemu-server/100.conf".as_bytes()), Cow::Borrowed(_)));
        assert!(matches!(encode("äöü"), Cow::Borrowed(_)));
    }

    #[test]
    fn every_byte_string_round_trips() {
        let cases: Vec<Vec<u8>> = vec![
            b"caf\xe9.conf".to_vec(),
            vec![0xff, 0xfe, b'a'],
            "\u{f780}\u{f7ff}x".as_bytes().to_vec(),
            vec![0xef, 0x9e, 0x80, 0x80],
            (0u8..=255).collect(),
        ];
        for raw in cases {
            let s = decode(&raw).into_owned();
            assert_eq!(encode(&s).as_ref(), &raw[..], "{raw:?}");
        }
    }

    #[test]
    fn invalid_bytes_never_contain_a_slash() {
        let s = decode(b"a\xffb");
        assert!(!s.contains('/'));
        assert_eq!(raw_len(&s), 3);
    }
}
