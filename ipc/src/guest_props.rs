//! Guest-config-property JSON for IPC ids 11 and 13 (spec §7.3,
//! `status.c:cfs_create_guest_conf_properties_msg`).
//!
//! Matching follows the original byte for byte:
//! * the config is treated as newline-terminated (a missing final `\n` is added);
//! * empty lines (and lines starting with a NUL byte) are skipped; the first line starting
//!   with `[` ends the search (snapshot / pending sections are never examined);
//! * a line matches `<prop>` when it starts with `<prop>:` and is longer than
//!   `len(prop) + 1`;
//! * leading whitespace of the value is skipped (but never past its last byte), trailing
//!   whitespace is trimmed, and the value is cut at an embedded NUL; a value that starts
//!   with NUL after the skipped whitespace is "not found". Quirk kept from C: an
//!   all-whitespace value yields its last whitespace byte;
//! * a later duplicate overrides an earlier one; quirk kept from C: the search stops early
//!   once the number of *re*-found (overriding) matches reaches the number of requested
//!   properties;
//! * output: `{\n`, entries joined with `,\n`, then `\n}\n`; an entry is
//!   `"<vmid>":{"<prop>": "<value>","<prop2>": "<value2>"}` in request order; only `\` and
//!   `"` are escaped in values, property names are written verbatim; guests with none of
//!   the properties are omitted.

use crate::error::IpcError;

/// C `isspace` in the C locale.
fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn cstr(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(n) => &b[..n],
        None => b,
    }
}

/// `_get_property_value_from_line`: `line` excludes its `\n`.
fn value_from_line<'a>(line: &'a [u8], prop: &[u8]) -> Option<&'a [u8]> {
    let plen = prop.len();
    if line.len() <= plen + 1 {
        return None;
    }
    if line[plen] != b':' || &line[..plen] != prop {
        return None;
    }
    let mut v_start = plen + 1;
    let mut v_end = line.len() - 1;
    while v_start < v_end && line[v_start] != 0 && c_isspace(line[v_start]) {
        v_start += 1;
    }
    if line[v_start] == 0 {
        return None;
    }
    while v_end > v_start && c_isspace(line[v_end]) {
        v_end -= 1;
    }
    Some(cstr(&line[v_start..=v_end]))
}

/// The values of `props` (index-aligned) found in one guest config.
pub fn find_property_values<'a>(config: &'a [u8], props: &[&[u8]]) -> Vec<Option<&'a [u8]>> {
    let mut found: Vec<Option<&'a [u8]>> = vec![None; props.len()];
    if config.is_empty() || props.is_empty() {
        return found;
    }
    // Lines terminated by '\n'; a final unterminated line counts (the caller of the C
    // function appends the missing '\n').
    let body = config.strip_suffix(b"\n").unwrap_or(config);
    let mut refound = 0usize;
    for line in body.split(|&c| c == b'\n') {
        match line.first() {
            None | Some(0) => continue,
            Some(b'[') => break,
            _ => {}
        }
        for (i, prop) in props.iter().enumerate() {
            if let Some(v) = value_from_line(line, prop) {
                if found[i].is_some() {
                    refound += 1;
                }
                found[i] = Some(v);
            }
        }
        if refound == props.len() {
            break;
        }
    }
    found
}

/// Incremental builder of the JSON document.
#[derive(Debug)]
pub struct GuestPropsJson {
    out: Vec<u8>,
    first: bool,
}

impl Default for GuestPropsJson {
    fn default() -> Self {
        Self::new()
    }
}

impl GuestPropsJson {
    pub fn new() -> Self {
        GuestPropsJson { out: b"{\n".to_vec(), first: true }
    }

    /// Append the entry for one guest (nothing if none of `props` is set in `config`).
    pub fn add_guest(&mut self, vmid: u32, config: &[u8], props: &[&[u8]]) {
        let values = find_property_values(config, props);
        let mut any = false;
        for (prop, value) in props.iter().zip(values) {
            let Some(value) = value else { continue };
            if any {
                self.out.push(b',');
            } else {
                if !self.first {
                    self.out.extend_from_slice(b",\n");
                }
                self.first = false;
                self.out.extend_from_slice(format!("\"{vmid}\":{{").as_bytes());
                any = true;
            }
            self.out.push(b'"');
            self.out.extend_from_slice(cstr(prop));
            self.out.extend_from_slice(b"\": \"");
            for &b in value {
                if b == b'\\' || b == b'"' {
                    self.out.push(b'\\');
                }
                self.out.push(b);
            }
            self.out.push(b'"');
        }
        if any {
            self.out.push(b'}');
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(b"\n}\n");
        self.out
    }
}

/// JSON for a single guest (`vmid >= 100`). `config` is `None` when it cannot be read; an
/// unreadable or empty config gives EIO, as in the original.
pub fn single_guest_json(vmid: u32, config: Option<&[u8]>, props: &[&[u8]]) -> Result<Vec<u8>, IpcError> {
    match config {
        Some(c) if !c.is_empty() => {
            let mut j = GuestPropsJson::new();
            j.add_guest(vmid, c, props);
            Ok(j.finish())
        }
        _ => Err(IpcError::Io),
    }
}

/// JSON for every guest (`vmid == 0`): unreadable (`None`) or empty configs are skipped.
/// Guests are emitted in iteration order (the original uses vmlist hash order).
pub fn all_guests_json<'a, I>(guests: I, props: &[&[u8]]) -> Vec<u8>
where
    I: IntoIterator<Item = (u32, Option<&'a [u8]>)>,
{
    let mut j = GuestPropsJson::new();
    for (vmid, config) in guests {
        if let Some(c) = config {
            if !c.is_empty() {
                j.add_guest(vmid, c, props);
            }
        }
    }
    j.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(config: &str, props: &[&str]) -> String {
        let props: Vec<&[u8]> = props.iter().map(|p| p.as_bytes()).collect();
        String::from_utf8(single_guest_json(100, Some(config.as_bytes()), &props).unwrap()).unwrap()
    }

    #[test]
    fn basic_lookup() {
        let conf = "boot: order=scsi0\ncores: 2\nlock: backup\nname: vm100\n";
        assert_eq!(one(conf, &["lock"]), "{\n\"100\":{\"lock\": \"backup\"}\n}\n");
        assert_eq!(
            one(conf, &["name", "lock", "missing", "cores"]),
            "{\n\"100\":{\"name\": \"vm100\",\"lock\": \"backup\",\"cores\": \"2\"}\n}\n"
        );
        assert_eq!(one(conf, &["missing"]), "{\n\n}\n");
    }

    #[test]
    fn sections_and_column_zero() {
        let conf = "name: a\n lock: indented\nlockx: no\n[snap1]\nlock: snapshot\n";
        assert_eq!(one(conf, &["lock"]), "{\n\n}\n");
        assert_eq!(one(conf, &["name"]), "{\n\"100\":{\"name\": \"a\"}\n}\n");
        assert_eq!(one("[PENDING]\nlock: x\n", &["lock"]), "{\n\n}\n");
    }

    #[test]
    fn trimming_and_missing_newline() {
        assert_eq!(one("tags:   a;b \t\r\n", &["tags"]), "{\n\"100\":{\"tags\": \"a;b\"}\n}\n");
        assert_eq!(one("tags: x", &["tags"]), "{\n\"100\":{\"tags\": \"x\"}\n}\n");
        // "tags:" with nothing after it is too short to match
        assert_eq!(one("tags:\n", &["tags"]), "{\n\n}\n");
        // C quirk: an all-whitespace value yields its last whitespace byte
        assert_eq!(one("tags:   \n", &["tags"]), "{\n\"100\":{\"tags\": \" \"}\n}\n");
        // value starting with NUL after whitespace = not found; embedded NUL cuts the value
        assert_eq!(one("tags: \0x\n", &["tags"]), "{\n\n}\n");
        assert_eq!(one("tags: a\0b\n", &["tags"]), "{\n\"100\":{\"tags\": \"a\"}\n}\n");
    }

    #[test]
    fn duplicates_override() {
        assert_eq!(one("lock: a\nlock: b\n", &["lock"]), "{\n\"100\":{\"lock\": \"b\"}\n}\n");
        // C quirk: with one property the search stops at the first override
        assert_eq!(one("lock: a\nlock: b\nlock: c\n", &["lock"]), "{\n\"100\":{\"lock\": \"b\"}\n}\n");
        assert_eq!(
            one("lock: a\nlock: b\nlock: c\nname: n\n", &["lock", "name"]),
            "{\n\"100\":{\"lock\": \"c\"}\n}\n"
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(
            one("description: a \"q\" \\ b\n", &["description"]),
            "{\n\"100\":{\"description\": \"a \\\"q\\\" \\\\ b\"}\n}\n"
        );
    }

    #[test]
    fn empty_property_matches_colon_lines() {
        assert_eq!(one(":abc\n", &[""]), "{\n\"100\":{\"\": \"abc\"}\n}\n");
    }

    #[test]
    fn single_errors() {
        assert_eq!(single_guest_json(100, None, &[b"lock"]), Err(IpcError::Io));
        assert_eq!(single_guest_json(100, Some(b""), &[b"lock"]), Err(IpcError::Io));
    }

    #[test]
    fn all_guests() {
        let a: &[u8] = b"lock: backup\n";
        let b: &[u8] = b"name: x\n";
        let c: &[u8] = b"lock: migrate\ntags: t\n";
        let out = all_guests_json(
            vec![(100, Some(a)), (101, Some(b)), (102, None), (103, Some(&b""[..])), (104, Some(c))],
            &[b"lock", b"tags"],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\n\"100\":{\"lock\": \"backup\"},\n\"104\":{\"lock\": \"migrate\",\"tags\": \"t\"}\n}\n"
        );
        assert_eq!(all_guests_json(Vec::new(), &[b"lock"]), b"{\n\n}\n".to_vec());
    }
}
