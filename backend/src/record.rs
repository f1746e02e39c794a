//! The crash record: every acknowledged change, appended as changed rows to a file on a
//! tmpfs (`/run/pve-cluster`), so a daemon crash loses nothing while the SSD sees nothing.
//!
//! Layout: files `pmxcfs-ng.record.<generation>`, each a header (magic, the store version it
//! starts from) followed by batches `[len u32][crc32 u32][payload]`. A batch is what one
//! acknowledgement took from the tree: the changed rows (row image or deletion) and the
//! `__version__` values. Replaying row images is idempotent, so a replay interrupted by
//! another crash is simply replayed again. A batch whose length or checksum does not
//! match is a torn tail: it and everything after it were never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::entry::{Entry, DT_DIR, DT_REG};

/// File name prefix of the record's generations.
pub const RECORD_PREFIX: &str = "pmxcfs-ng.record.";
const MAGIC: &[u8; 8] = b"PMXREC01";
const HEADER_LEN: u64 = 16;
/// Largest batch accepted on replay (a whole 1 MiB file per row, many rows): 512 MiB.
const MAX_BATCH: u32 = 512 << 20;

/// The `__version__` row's values at the end of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootStamp {
    pub version: u64,
    pub writer: u32,
    pub mtime: u32,
}

impl RootStamp {
    pub fn of(root: &Entry) -> RootStamp {
        RootStamp { version: root.version, writer: root.writer, mtime: root.mtime }
    }
}

/// One acknowledgement: rows by inode (None = deleted) and the root's values after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub rows: Vec<(u64, Option<Entry>)>,
    pub root: RootStamp,
}

/// What a record directory held at start-up.
#[derive(Debug, Default)]
pub struct Replay {
    /// Generation files found, oldest first.
    pub files: Vec<PathBuf>,
    /// Store version the oldest generation starts from.
    pub base_version: Option<u64>,
    /// Complete batches, in acknowledgement order.
    pub batches: Vec<Batch>,
    /// Bytes after the last complete batch (a write cut short by the crash).
    pub torn_bytes: u64,
}

impl Replay {
    /// True if the record belongs to a store at `store_version`: the store holds the state
    /// the record starts from, or the state after one of its batches (the flush of those
    /// batches reached the store, the crash came before the record was removed).
    pub fn matches(&self, store_version: u64) -> bool {
        self.base_version == Some(store_version) || self.batches.iter().any(|b| b.root.version == store_version)
    }

    /// Applies every batch to `entries` (inode → entry; root = inode 0) in order.
    pub fn apply_to(&self, entries: &mut std::collections::BTreeMap<u64, Entry>) {
        for b in &self.batches {
            for (inode, row) in &b.rows {
                match row {
                    Some(e) => {
                        entries.insert(*inode, e.clone());
                    }
                    None => {
                        entries.remove(inode);
                    }
                }
            }
            if let Some(root) = entries.get_mut(&0) {
                root.version = b.root.version;
                root.writer = b.root.writer;
                root.mtime = b.root.mtime;
            }
        }
    }
}

/// The open record: appends go to the newest generation.
#[derive(Debug)]
pub struct CrashRecord {
    dir: PathBuf,
    generation: u64,
    file: File,
    len: u64,
}

fn gen_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{RECORD_PREFIX}{generation:016x}"))
}

/// Generation files in `dir`, oldest first.
fn generations(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(g) = name.strip_prefix(RECORD_PREFIX).and_then(|h| u64::from_str_radix(h, 16).ok()) {
            found.push((g, e.path()));
        }
    }
    found.sort();
    Ok(found)
}

impl CrashRecord {
    /// Starts a new generation after every existing one; `base_version` is the store
    /// version its first batch applies to.
    pub fn create(dir: &Path, base_version: u64) -> std::io::Result<CrashRecord> {
        let next = generations(dir)?.last().map_or(1, |(g, _)| g + 1);
        Self::create_generation(dir, next, base_version)
    }

    fn create_generation(dir: &Path, generation: u64, base_version: u64) -> std::io::Result<CrashRecord> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = gen_path(dir, generation);
        let file = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path)?;
        let mut header = [0u8; HEADER_LEN as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..].copy_from_slice(&base_version.to_le_bytes());
        file.write_all_at(&header, 0)?;
        Ok(CrashRecord { dir: dir.to_path_buf(), generation, file, len: HEADER_LEN })
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes in the current generation.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == HEADER_LEN
    }

    /// Appends one batch with a single write. On failure the file is cut back to its last
    /// complete batch, so a later append never follows a torn one.
    pub fn append(&mut self, rows: &[(u64, Option<Entry>)], root: &Entry) -> std::io::Result<()> {
        let payload = encode_batch(rows, RootStamp::of(root));
        let mut buf = Vec::with_capacity(payload.len() + 8);
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32(&payload).to_le_bytes());
        buf.extend_from_slice(&payload);
        match self.file.write_all_at(&buf, self.len) {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    /// Starts the next generation (whose first batch applies to `base_version`) and returns
    /// the generation it replaces; that one may be removed once its batches are durable.
    pub fn rotate(&mut self, base_version: u64) -> std::io::Result<u64> {
        let next = Self::create_generation(&self.dir, self.generation + 1, base_version)?;
        let old = std::mem::replace(self, next);
        Ok(old.generation)
    }

    /// Removes every generation up to and including `generation`.
    pub fn remove_through(&self, generation: u64) -> std::io::Result<()> {
        for (g, p) in generations(&self.dir)? {
            if g <= generation {
                std::fs::remove_file(p)?;
            }
        }
        Ok(())
    }

    /// Removes every generation, the current one included (clean stop).
    pub fn remove_all(self) -> std::io::Result<()> {
        self.remove_through(u64::MAX)
    }
}

/// Reads every generation in `dir`. A bad header or checksum ends the replay there (torn tail).
pub fn read(dir: &Path) -> std::io::Result<Replay> {
    let mut replay = Replay::default();
    let gens = generations(dir)?;
    let count = gens.len();
    for (i, (_, path)) in gens.into_iter().enumerate() {
        let mut bytes = Vec::new();
        File::open(&path)?.read_to_end(&mut bytes)?;
        replay.files.push(path);
        if bytes.len() < HEADER_LEN as usize || &bytes[..8] != MAGIC {
            // a generation cut short while it was being created: nothing of it was acknowledged
            replay.torn_bytes += bytes.len() as u64;
            continue;
        }
        let base = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default());
        replay.base_version.get_or_insert(base);
        let mut at = HEADER_LEN as usize;
        while at < bytes.len() {
            match decode_framed(&bytes[at..]) {
                Some((batch, used)) => {
                    replay.batches.push(batch);
                    at += used;
                }
                None => break,
            }
        }
        replay.torn_bytes += (bytes.len() - at) as u64;
        // a torn tail can only be the end of the newest generation: older ones were complete
        // when the next was started, so stop here either way
        if at < bytes.len() && i + 1 < count {
            tracing::warn!(target: "database", "crash record '{}' is torn before its end", replay.files.last().map(|p| p.display().to_string()).unwrap_or_default());
        }
    }
    Ok(replay)
}

/// Moves the record's files aside (`*.stale`) so they are kept for inspection but never replayed.
pub fn set_aside(replay: &Replay) -> std::io::Result<()> {
    for p in &replay.files {
        let mut to = p.clone().into_os_string();
        to.push(".stale");
        std::fs::rename(p, to)?;
    }
    Ok(())
}

/// Removes the record's files after their batches reached the store.
pub fn remove(replay: &Replay) -> std::io::Result<()> {
    for p in &replay.files {
        match std::fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn decode_framed(b: &[u8]) -> Option<(Batch, usize)> {
    let len = u32::from_le_bytes(b.get(..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(b.get(4..8)?.try_into().ok()?);
    if len > MAX_BATCH {
        return None;
    }
    let payload = b.get(8..8 + len as usize)?;
    if crc32(payload) != crc {
        return None;
    }
    Some((decode_batch(payload)?, 8 + len as usize))
}

fn encode_batch(rows: &[(u64, Option<Entry>)], root: RootStamp) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + rows.iter().map(|(_, e)| e.as_ref().map_or(9, |e| 40 + e.name.len() + e.data().len())).sum::<usize>());
    out.extend_from_slice(&root.version.to_le_bytes());
    out.extend_from_slice(&root.writer.to_le_bytes());
    out.extend_from_slice(&root.mtime.to_le_bytes());
    let rows: Vec<_> = rows.iter().filter(|(i, _)| *i != 0).collect();
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    for (inode, row) in rows {
        out.extend_from_slice(&inode.to_le_bytes());
        match row {
            None => out.push(0),
            Some(e) => {
                out.push(e.kind());
                out.extend_from_slice(&e.parent.to_le_bytes());
                out.extend_from_slice(&e.version.to_le_bytes());
                out.extend_from_slice(&e.writer.to_le_bytes());
                out.extend_from_slice(&e.mtime.to_le_bytes());
                out.extend_from_slice(&(e.name.len() as u32).to_le_bytes());
                out.extend_from_slice(e.name.as_bytes());
                out.extend_from_slice(&(e.data().len() as u32).to_le_bytes());
                out.extend_from_slice(e.data());
            }
        }
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

fn decode_batch(payload: &[u8]) -> Option<Batch> {
    let mut r = Reader(payload);
    let root = RootStamp { version: r.u64()?, writer: r.u32()?, mtime: r.u32()? };
    let n = r.u32()?;
    let mut rows = Vec::with_capacity(n.min(1 << 16) as usize);
    for _ in 0..n {
        let inode = r.u64()?;
        let kind = r.u8()?;
        if kind == 0 {
            rows.push((inode, None));
            continue;
        }
        let (parent, version, writer, mtime) = (r.u64()?, r.u64()?, r.u32()?, r.u32()?);
        let name_len = r.u32()? as usize;
        let name = std::str::from_utf8(r.take(name_len)?).ok()?;
        let data_len = r.u32()? as usize;
        let data = r.take(data_len)?;
        let mut e = match kind {
            DT_DIR => Entry::new_dir(inode, parent, name),
            DT_REG => Entry::new_file(inode, parent, name, data),
            _ => return None,
        };
        e.version = version;
        e.writer = writer;
        e.mtime = mtime;
        rows.push((inode, Some(e)));
    }
    if !r.0.is_empty() {
        return None;
    }
    Some(Batch { rows, root })
}

/// CRC-32 (IEEE 802.3, reflected), enough to recognise a torn or overwritten batch.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for b in data {
        c = TABLE[((c ^ *b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(inode: u64, name: &str, data: &[u8], version: u64) -> Entry {
        let mut e = Entry::new_file(inode, 0, name, data.to_vec());
        e.version = version;
        e
    }

    fn root(version: u64) -> Entry {
        let mut r = Entry::new_dir(0, 0, "");
        r.version = version;
        r
    }

    #[test]
    fn crc32_of_the_check_string() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn batches_come_back_in_order_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = CrashRecord::create(dir.path(), 5).unwrap();
        rec.append(&[(7, Some(file(7, "a", b"one", 6)))], &root(6)).unwrap();
        rec.append(&[(7, None), (8, Some(file(8, "b", b"", 7)))], &root(7)).unwrap();
        let good = rec.len();
        rec.append(&[(9, Some(file(9, "c", &[1; 5000], 8)))], &root(8)).unwrap();
        // the crash cut the last write short
        let f = OpenOptions::new().write(true).open(gen_path(dir.path(), rec.generation())).unwrap();
        f.set_len(good + 100).unwrap();
        let r = read(dir.path()).unwrap();
        assert_eq!(r.base_version, Some(5));
        assert_eq!(r.batches.len(), 2);
        assert_eq!(r.batches[1].rows[0], (7, None));
        assert_eq!(r.batches[1].root.version, 7);
        assert_eq!(r.torn_bytes, 100);
        assert!(r.matches(5) && r.matches(7) && !r.matches(8) && !r.matches(4));
    }

    #[test]
    fn a_flipped_byte_ends_the_replay_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = CrashRecord::create(dir.path(), 1).unwrap();
        rec.append(&[(3, Some(file(3, "x", b"abc", 2)))], &root(2)).unwrap();
        let first = rec.len();
        rec.append(&[(4, Some(file(4, "y", b"def", 3)))], &root(3)).unwrap();
        let p = gen_path(dir.path(), rec.generation());
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&p, &bytes).unwrap();
        let r = read(dir.path()).unwrap();
        assert_eq!(r.batches.len(), 1);
        assert_eq!(r.torn_bytes, rec.len() - first);
    }

    #[test]
    fn rotation_keeps_generations_in_order_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = CrashRecord::create(dir.path(), 1).unwrap();
        rec.append(&[(3, Some(file(3, "x", b"1", 2)))], &root(2)).unwrap();
        let old = rec.rotate(2).unwrap();
        rec.append(&[(3, Some(file(3, "x", b"2", 3)))], &root(3)).unwrap();
        let r = read(dir.path()).unwrap();
        assert_eq!(r.files.len(), 2);
        assert_eq!(r.base_version, Some(1));
        assert_eq!(r.batches.iter().map(|b| b.root.version).collect::<Vec<_>>(), vec![2, 3]);
        rec.remove_through(old).unwrap();
        let r = read(dir.path()).unwrap();
        assert_eq!((r.files.len(), r.base_version, r.batches.len()), (1, Some(2), 1));
        rec.remove_all().unwrap();
        assert!(read(dir.path()).unwrap().files.is_empty());
    }

    #[test]
    fn replaying_twice_gives_what_replaying_once_gives() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = CrashRecord::create(dir.path(), 1).unwrap();
        rec.append(&[(3, Some(file(3, "x", b"1", 2)))], &root(2)).unwrap();
        rec.append(&[(3, None), (4, Some(file(4, "y", b"2", 3)))], &root(3)).unwrap();
        let r = read(dir.path()).unwrap();
        let mut base = std::collections::BTreeMap::new();
        base.insert(0, root(1));
        base.insert(5, file(5, "z", b"kept", 1));
        let mut once = base.clone();
        r.apply_to(&mut once);
        let mut twice = once.clone();
        r.apply_to(&mut twice);
        assert_eq!(once, twice);
        assert_eq!(once.keys().copied().collect::<Vec<_>>(), vec![0, 4, 5]);
        assert_eq!(once[&0].version, 3);
    }
}
