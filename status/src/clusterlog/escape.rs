//! The message escaping of the original (`cfs-utils.c:utf8_to_ascii`): what a cluster-log
//! entry stores instead of the text the client sent.

use pmxcfs_dfsm::wire::cstr_prefix;

/// Escape a message the way the original stores it (`cfs-utils.c:utf8_to_ascii`).
///
/// The input ends at its first NUL. `bufsize` is the size of the C destination buffer
/// (including its NUL): conversion stops once the output has reached `bufsize - 7` bytes, so
/// the result is at most `bufsize - 2` bytes long. A `bufsize` of 10 or less gives "".
///
/// * `"` becomes `\"` when `quotequote` is set;
/// * control characters (< 32, and 127 in valid UTF-8) become `#` + 3 decimal digits;
/// * other BMP characters above 127 become `\uXXXX` (lower-case hex), others are dropped;
/// * if the input is not valid UTF-8, bytes >= 127 become `?`.
pub fn utf8_to_ascii(input: &[u8], bufsize: usize, quotequote: bool) -> String {
    let input = cstr_prefix(input);
    let mut out = String::new();
    if bufsize <= 10 {
        return out;
    }
    let end = bufsize - 7;
    match std::str::from_utf8(input) {
        Ok(s) => {
            for ch in s.chars() {
                if out.len() >= end {
                    break;
                }
                let u = u32::from(ch);
                if u == 34 && quotequote {
                    out.push_str("\\\"");
                } else if u < 32 || u == 127 {
                    out.push_str(&format!("#{u:03}"));
                } else if u < 127 {
                    out.push(ch);
                } else if u < 65536 {
                    out.push_str(&format!("\\u{u:04x}"));
                }
                // characters beyond the BMP are dropped
            }
        }
        Err(_) => {
            for &b in input {
                if out.len() >= end {
                    break;
                }
                if b == 34 && quotequote {
                    out.push_str("\\\"");
                } else if b < 32 {
                    out.push_str(&format!("#0{b:02}"));
                } else if b < 127 {
                    out.push(char::from(b));
                } else {
                    out.push('?');
                }
            }
        }
    }
    out
}


#[cfg(test)]
mod tests {
    use super::utf8_to_ascii;

    #[test]
    fn escaping() {
        assert_eq!(utf8_to_ascii(b"plain", 100, true), "plain");
        assert_eq!(utf8_to_ascii(b"a\"b", 100, true), "a\\\"b");
        assert_eq!(utf8_to_ascii(b"a\"b", 100, false), "a\"b");
        assert_eq!(utf8_to_ascii(b"l1\nl2\x7f", 100, true), "l1#010l2#127");
        assert_eq!(utf8_to_ascii("é€".as_bytes(), 100, true), "\\u00e9\\u20ac");
        assert_eq!(utf8_to_ascii("a😀b".as_bytes(), 100, true), "ab");
        // invalid UTF-8: bytes >= 127 become '?', controls #0NN
        assert_eq!(utf8_to_ascii(b"x\xff\x7f\n\"", 100, true), "x??#010\\\"");
        assert_eq!(utf8_to_ascii(b"abc\0def", 100, true), "abc");
        // bounded: stops once 100 - 7 bytes are written
        let long = vec![b'x'; 500];
        assert_eq!(utf8_to_ascii(&long, 100, true).len(), 93);
        let long = "é".repeat(500);
        let s = utf8_to_ascii(long.as_bytes(), 100, true);
        assert!(s.len() <= 98 && s.len() >= 93, "{}", s.len());
        assert_eq!(utf8_to_ascii(b"abc", 10, true), "");
    }
}
