//! The durable copy of the tree: the original's `config.db` (SQLite, table `tree`).
//!
//! Same schema, same `__version__` row, same value conventions (empty files and directories
//! as NULL), so databases move freely between pmxcfs-ng and the original. The store never
//! decides *when* to write: [`crate::database::Database`] hands it one batch of changed rows
//! per transaction.

use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OpenFlags};
use thiserror::Error;

use crate::entry::{Content, Entry, DT_DIR, DT_REG};
use crate::error::FsError;

/// The original's table definition, byte for byte.
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS tree (
  inode INTEGER PRIMARY KEY NOT NULL,
  parent INTEGER NOT NULL CHECK(typeof(parent)=='integer'),
  version INTEGER NOT NULL CHECK(typeof(version)=='integer'),
  writer INTEGER NOT NULL CHECK(typeof(writer)=='integer'),
  mtime INTEGER NOT NULL CHECK(typeof(mtime)=='integer'),
  type INTEGER NOT NULL CHECK(typeof(type)=='integer'),
  name TEXT NOT NULL,
  data BLOB);";

/// Writes one row. An existing row is updated in place (same on-disk result as the
/// original's `REPLACE`, but SQLite can overwrite a same-sized cell instead of deleting and
/// re-inserting it, which dirties fewer pages).
const REPLACE_SQL: &str = "INSERT INTO tree (inode, parent, version, writer, mtime, type, name, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
     ON CONFLICT(inode) DO UPDATE SET parent = excluded.parent, version = excluded.version, writer = excluded.writer, \
     mtime = excluded.mtime, type = excluded.type, name = excluded.name, data = excluded.data;";

const DELETE_SQL: &str = "DELETE FROM tree WHERE inode = ?1;";
const SELECT_SQL: &str = "SELECT inode, parent, version, writer, mtime, type, name, data FROM tree;";

/// Frames the WAL is sized for at open: SQLite's automatic checkpoint comes at 1000 pages.
const WAL_PREALLOC_FRAMES: u64 = 1000;

/// Name of the row that carries the global version.
pub const VERSION_ROW_NAME: &str = "__version__";

/// Why the database could not be opened, loaded or written.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("unable to open database '{path}': {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("database '{path}' is not a pmxcfs database: {why}")]
    Foreign { path: String, why: String },
    #[error("database '{path}': {source}")]
    Sql { path: String, source: rusqlite::Error },
    #[error("DB load failed: database '{path}' row inode {inode}: {why}")]
    BadRow { path: String, inode: i64, why: String },
    #[error("DB load failed: database '{path}': {why}")]
    BadTree { path: String, why: String },
    #[error("io error on '{path}': {source}")]
    Io { path: String, source: std::io::Error },
}

impl StoreError {
    /// What a writer sees when the store fails: ENOSPC for a full disk, EFBIG for a size
    /// limit, EIO for anything else (mapped to errno by [`FsError::errno`]).
    pub fn to_fs_error(&self) -> FsError {
        use rusqlite::ErrorCode;
        match self {
            StoreError::Sql { source, .. } | StoreError::Open { source, .. } => match source.sqlite_error_code() {
                Some(ErrorCode::DiskFull) => FsError::DiskFull(self.to_string()),
                Some(ErrorCode::TooBig) => FsError::FileTooBig,
                _ => FsError::Io(self.to_string()),
            },
            StoreError::Io { path, source } => FsError::from_io(path, source),
            _ => FsError::Io(self.to_string()),
        }
    }
}

/// One loaded row, after the original's masking and checks.
#[derive(Debug, Clone)]
pub struct LoadedRows {
    /// Every entry, root first (root carries the `__version__` values; version 0 if absent).
    pub entries: Vec<Entry>,
    /// True if a `__version__` row exists.
    pub has_version_row: bool,
}

/// How the store's connection locks `config.db`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locking {
    /// SQLite's normal locking: the WAL index lives in `config.db-shm` beside the database,
    /// every process can open the database at the same time (the original's way). Each
    /// store transaction dirties 2-3 of its pages, which the kernel writes to the disk.
    Shared,
    /// `locking_mode=EXCLUSIVE` set before the first WAL access: the WAL index lives in the
    /// daemon's heap, no `-shm` file exists, and other processes get "database is locked"
    /// until the store switches to [`Locking::Shared`] (`crate::db_sharing` decides when).
    Exclusive,
}

/// An open `config.db`.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    transactions: u64,
    locking: Locking,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).field("transactions", &self.transactions).finish()
    }
}

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sql { path: path.display().to_string(), source }
}

impl Store {
    /// Opens (creating if missing) the database with the original's settings: mode 0600,
    /// WAL journal, synchronous=NORMAL, 10 s busy timeout, `tree` table, shared locking.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, Locking::Shared)
    }

    /// [`Store::open`] with the given locking. An exclusive open that finds the database
    /// in use (another process holds a lock past the busy timeout) falls back to shared.
    pub fn open_with(path: &Path, locking: Locking) -> Result<Store, StoreError> {
        match Store::open_locked(path, locking) {
            Err(StoreError::Sql { source, .. }) if locking == Locking::Exclusive && source.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                tracing::info!(target: "database", "database '{}' is in use by another process - opening it shared", path.display());
                Store::open_locked(path, Locking::Shared)
            }
            other => other,
        }
    }

    fn open_locked(path: &Path, locking: Locking) -> Result<Store, StoreError> {
        let p = path.display().to_string();
        let existed = path.metadata().map(|m| m.len() > 0).unwrap_or(false);
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)
            .map_err(|source| StoreError::Open { path: p.clone(), source })?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|source| StoreError::Io { path: p.clone(), source })?;
        }
        if locking == Locking::Exclusive {
            // before the first access of a WAL database, so that no -shm is ever mapped
            // (the pragma itself reads nothing)
            conn.pragma_update(None, "locking_mode", "EXCLUSIVE").map_err(sql_err(path))?;
        }
        // Reading the schema is the first access: a non-SQLite file fails here.
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type='table'")
            .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
            .map_err(|e| StoreError::Foreign { path: p.clone(), why: format!("not a readable SQLite database ({e})") })?;
        if existed && !tables.iter().any(|t| t == "tree") {
            return Err(StoreError::Foreign {
                path: p,
                why: format!("no 'tree' table (tables: {})", if tables.is_empty() { "none".into() } else { tables.join(", ") }),
            });
        }
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(sql_err(path))?;
        // The page size is the administrator's: an existing database keeps its own (the
        // original's 4 KiB, or 1 KiB from pmxcfs-ng 0.1), a new one gets SQLite's default
        // (4 KiB, as the original). It is never rewritten (no VACUUM) as a side effect of
        // starting. With one store transaction per sync interval the page size no longer
        // matters for wear (docs/benchmark.md).
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql_err(path))?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql_err(path))?;
        conn.execute_batch(SCHEMA).map_err(sql_err(path))?;
        let cols: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('tree')")
            .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
            .map_err(sql_err(path))?;
        let want = ["inode", "parent", "version", "writer", "mtime", "type", "name", "data"];
        if cols.iter().map(String::as_str).ne(want.iter().copied()) {
            return Err(StoreError::Foreign { path: p, why: format!("table 'tree' has columns ({}), expected ({})", cols.join(", "), want.join(", ")) });
        }
        let store = Store { conn, path: path.to_path_buf(), transactions: 0, locking };
        if locking == Locking::Exclusive {
            // the exclusive lock is taken by the first read: take it now, not in a transaction
            store.conn.query_row("SELECT count(*) FROM tree WHERE inode = 0", [], |r| r.get::<_, i64>(0)).map_err(sql_err(path))?;
            store.remove_stale_shm();
        }
        store.presize_wal();
        Ok(store)
    }

    /// The locking the connection uses.
    pub fn locking(&self) -> Locking {
        self.locking
    }

    /// Closes the connection without a checkpoint (the WAL keeps every frame, the next
    /// connection's index is rebuilt from it) and opens the database again with `locking`.
    /// On failure the store keeps an open connection in SQLite's default (shared) locking
    /// and reports the error.
    pub fn reopen(&mut self, locking: Locking) -> Result<(), StoreError> {
        let path = self.path.clone();
        // no file access yet: the old connection's close still finds itself alone
        let placeholder = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(sql_err(&path))?;
        let old = std::mem::replace(&mut self.conn, placeholder);
        self.locking = Locking::Shared;
        // the WAL stays as it is: no checkpoint now (the next connection would copy the same
        // frames again, its index not knowing they were), no 4 MiB WAL to grow again
        old.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true).map_err(sql_err(&path))?;
        old.close().map_err(|(_, source)| StoreError::Sql { path: path.display().to_string(), source })?;
        let fresh = Store::open_with(&path, locking)?;
        let transactions = self.transactions;
        *self = fresh;
        self.transactions = transactions;
        Ok(())
    }

    /// A `-shm` file left beside the database (a shared phase that ended in a crash, or the
    /// previous release) means nothing to an exclusive connection: removed, so that a clean
    /// stop leaves `config.db` alone. Nobody else can be using it: we hold the lock.
    fn remove_stale_shm(&self) {
        let mut shm = self.path.clone().into_os_string();
        shm.push("-shm");
        // never one this connection maps (SQLite would then share its index through it)
        let mapped = std::fs::read("/proc/self/maps").map_or(true, |m| {
            let needle = shm.as_encoded_bytes();
            m.windows(needle.len()).any(|w| w == needle)
        });
        if !mapped {
            let _ = std::fs::remove_file(&shm);
        }
    }

    /// Grows the WAL once, with zeros after its last frame, to the size SQLite's automatic
    /// checkpoint lets it reach anyway, and syncs that. Every later store transaction then
    /// overwrites allocated blocks: its fdatasync writes the frames and a cache flush, but no
    /// filesystem journal commit for a growing file (measured: docs/benchmark.md). SQLite
    /// finds the end of the WAL by the frames' salts and checksums, never by the file size,
    /// so zeros read as "no more frames" — as the stale frames a reused WAL holds anyway.
    /// Failure is harmless (the WAL just grows as usual).
    fn presize_wal(&self) {
        let Ok(page) = self.page_size() else { return };
        let want = 32 + WAL_PREALLOC_FRAMES * (24 + page as u64);
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let Ok(f) = std::fs::OpenOptions::new().write(true).open(&wal) else { return };
        let len = f.metadata().map(|m| m.len()).unwrap_or(want);
        if len >= want {
            return;
        }
        use std::os::unix::fs::FileExt;
        // page-sized writes: large page-cache folios would make every later frame write
        // dirty (and charge) a whole folio
        let zeros = vec![0u8; 4096];
        let mut at = len;
        while at < want {
            let n = zeros.len().min((want - at) as usize);
            if f.write_all_at(&zeros[..n], at).is_err() {
                return;
            }
            at += n as u64;
        }
        let _ = f.sync_data();
    }

    /// Opens an existing database read-only, changing nothing (offline tools).
    pub fn open_readonly(path: &Path) -> Result<Store, StoreError> {
        let p = path.display().to_string();
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source| StoreError::Open { path: p.clone(), source })?;
        let has_tree: bool = conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='tree'", [], |r| r.get::<_, i64>(0))
            .map(|n| n > 0)
            .map_err(|e| StoreError::Foreign { path: p.clone(), why: format!("not a readable SQLite database ({e})") })?;
        if !has_tree {
            return Err(StoreError::Foreign { path: p, why: "no 'tree' table".into() });
        }
        Ok(Store { conn, path: path.to_path_buf(), transactions: 0, locking: Locking::Shared })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Store transactions written since open.
    pub fn transactions(&self) -> u64 {
        self.transactions
    }

    /// The database's page size in bytes.
    pub fn page_size(&self) -> Result<i64, StoreError> {
        self.conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(sql_err(&self.path))
    }

    /// Reads every row with the original's checks (no name, unknown type, data on a
    /// directory, stray inode 0).
    pub fn load_rows(&self) -> Result<LoadedRows, StoreError> {
        let p = self.path.display().to_string();
        let mut stmt = self.conn.prepare(SELECT_SQL).map_err(sql_err(&self.path))?;
        let mut rows = stmt.query([]).map_err(sql_err(&self.path))?;
        let mut root = Entry::new_dir(0, 0, "");
        let mut has_version_row = false;
        let mut entries = Vec::new();
        while let Some(row) = rows.next().map_err(sql_err(&self.path))? {
            let inode: i64 = row.get(0).map_err(sql_err(&self.path))?;
            let bad = |why: String| StoreError::BadRow { path: p.clone(), inode, why };
            let int = |i: usize| -> Result<i64, StoreError> {
                match row.get_ref(i) {
                    Ok(ValueRef::Integer(v)) => Ok(v),
                    Ok(other) => Err(bad(format!("column {i} is {:?}, not an integer", other.data_type()))),
                    Err(e) => Err(bad(e.to_string())),
                }
            };
            let parent = int(1)? as u64;
            let version = int(2)? as u64;
            let writer = (int(3)? & 0xffff_ffff) as u32;
            let mtime = (int(4)? & 0xffff_ffff) as u32;
            let kind = (int(5)? & 0xff) as u8;
            let name = match row.get_ref(6) {
                Ok(ValueRef::Text(t)) | Ok(ValueRef::Blob(t)) => crate::name_bytes::decode(t),
                _ => std::borrow::Cow::Borrowed(""),
            };
            if name.is_empty() {
                return Err(bad("inode has no name".into()));
            }
            // borrowed from the row: the entry copies it into its one allocation
            let data: &[u8] = match row.get_ref(7) {
                Ok(ValueRef::Blob(b)) | Ok(ValueRef::Text(b)) => b,
                Ok(ValueRef::Null) => &[],
                _ => return Err(bad("data is neither a blob nor NULL".into())),
            };
            if inode == 0 {
                if name != VERSION_ROW_NAME {
                    return Err(bad(format!("root inode has unexpected name '{name}'")));
                }
                root.version = version;
                root.writer = writer;
                root.mtime = mtime;
                has_version_row = true;
                continue;
            }
            if inode < 0 {
                return Err(bad("negative inode".into()));
            }
            let mut e = match kind {
                DT_REG => Entry::new_file(inode as u64, parent, &name, data),
                DT_DIR if data.is_empty() => Entry::new_dir(inode as u64, parent, &name),
                DT_DIR => return Err(bad(format!("directory '{name}' has data"))),
                other => return Err(bad(format!("inode has unknown type {other}"))),
            };
            e.version = version;
            e.writer = writer;
            e.mtime = mtime;
            entries.push(e);
        }
        entries.insert(0, root);
        // The pages just read are all in the tree now: hand SQLite's page cache back
        // (about 2 MiB on a large database) instead of keeping a second copy of the rows.
        drop(rows);
        drop(stmt);
        let _ = self.conn.release_memory();
        Ok(LoadedRows { entries, has_version_row })
    }

    /// Writes one batch as ONE store transaction: replaced rows, deleted rows, then the
    /// `__version__` row from `root`. Durable against a power cut only after [`Store::sync_wal`].
    pub fn write_transaction(&mut self, changes: &[(u64, Option<Entry>)], root: &Entry) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(sql_err(&path))?;
        {
            let mut replace = tx.prepare_cached(REPLACE_SQL).map_err(sql_err(&path))?;
            let mut delete = tx.prepare_cached(DELETE_SQL).map_err(sql_err(&path))?;
            for (inode, entry) in changes {
                if *inode == 0 {
                    continue;
                }
                match entry {
                    Some(e) => {
                        let data: Option<&[u8]> = match &e.content {
                            Content::File(d) if !d.is_empty() => Some(&d[..]),
                            _ => None,
                        };
                        replace
                            .execute(params![e.inode as i64, e.parent as i64, e.version as i64, e.writer as i64, e.mtime as i64, e.kind() as i64, rusqlite::types::ToSqlOutput::Borrowed(ValueRef::Text(&crate::name_bytes::encode(&e.name))), data])
                            .map_err(sql_err(&path))?;
                    }
                    None => {
                        delete.execute(params![*inode as i64]).map_err(sql_err(&path))?;
                    }
                }
            }
            replace
                .execute(params![0i64, 0i64, root.version as i64, root.writer as i64, root.mtime as i64, DT_REG as i64, VERSION_ROW_NAME, Option::<&[u8]>::None])
                .map_err(sql_err(&path))?;
        }
        tx.commit().map_err(sql_err(&path))?;
        self.transactions += 1;
        Ok(())
    }

    /// Makes every written transaction durable (fdatasync of the WAL file).
    pub fn sync_wal(&self) -> Result<(), StoreError> {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        match std::fs::File::open(&wal) {
            Ok(f) => f.sync_data().map_err(|source| StoreError::Io { path: self.path.display().to_string(), source }),
            Err(_) => Ok(()),
        }
    }

    /// `PRAGMA integrity_check`, "ok" when healthy.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
            .map_err(sql_err(&self.path))
    }

    /// Checkpoints the WAL into the main file.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(sql_err(&self.path))?;
        if busy != 0 {
            return Err(StoreError::Foreign { path: self.path.display().to_string(), why: "checkpoint blocked by another connection".into() });
        }
        Ok(())
    }

    /// Clean stop: checkpoints everything into the main file, syncs it and closes the
    /// connection, so SQLite removes `-wal` and `-shm` and `config.db` alone holds the tree.
    pub fn close(self) -> Result<(), StoreError> {
        self.checkpoint()?;
        let path = self.path.clone();
        self.conn.close().map_err(|(_, source)| StoreError::Sql { path: path.display().to_string(), source })?;
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|source| StoreError::Io { path: path.display().to_string(), source })
    }
}

/// One column value exactly as stored (offline check/repair look at rows the loader refuses).
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

/// One `tree` row without any check or masking (`inode` is the rowid, always an integer).
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    pub inode: i64,
    pub parent: RawValue,
    pub version: RawValue,
    pub writer: RawValue,
    pub mtime: RawValue,
    pub kind: RawValue,
    pub name: RawValue,
    pub data: RawValue,
}

impl Store {
    /// Every row of `tree` as stored, in inode order (offline `check` and `repair`).
    pub fn raw_rows(&self) -> Result<Vec<RawRow>, StoreError> {
        fn raw(v: ValueRef<'_>) -> RawValue {
            match v {
                ValueRef::Null => RawValue::Null,
                ValueRef::Integer(i) => RawValue::Integer(i),
                ValueRef::Real(f) => RawValue::Real(f),
                ValueRef::Text(t) => RawValue::Text(t.to_vec()),
                ValueRef::Blob(b) => RawValue::Blob(b.to_vec()),
            }
        }
        let mut stmt = self
            .conn
            .prepare("SELECT inode, parent, version, writer, mtime, type, name, data FROM tree ORDER BY inode;")
            .map_err(sql_err(&self.path))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(RawRow {
                    inode: r.get(0)?,
                    parent: raw(r.get_ref(1)?),
                    version: raw(r.get_ref(2)?),
                    writer: raw(r.get_ref(3)?),
                    mtime: raw(r.get_ref(4)?),
                    kind: raw(r.get_ref(5)?),
                    name: raw(r.get_ref(6)?),
                    data: raw(r.get_ref(7)?),
                })
            })
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(sql_err(&self.path))?;
        Ok(rows)
    }
}
