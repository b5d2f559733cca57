//! The data directory: an encrypted SQLite database and the small plaintext file that says how
//! to unlock it.
//!
//! ```text
//! DIR/daftar.json   plaintext: format version, where the key lives, a key check value
//! DIR/daftar.db     SQLCipher: every page (and the WAL) encrypted with the database key
//! DIR/key.json      only for the opt-in passphrase key file
//! ```
//! `daftar.json` holds no business data: no names, amounts or VAT numbers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use daftar_keys::DatabaseKey;
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::schema;

pub(crate) const PROFILE_FILE: &str = "daftar.json";
pub(crate) const DATABASE_FILE: &str = "daftar.db";
pub const KEY_FILE: &str = "key.json";

/// How long a writer waits for another process's write transaction before giving up.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// Where a data directory's database key lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum KeyLocation {
    /// In the OS keyring under this namespace.
    Keyring { namespace: String },
    /// In `key.json`, wrapped with a passphrase.
    KeyFile,
}

/// The plaintext description of a data directory (`daftar.json`), versioned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Profile {
    pub format: String,
    pub version: u32,
    pub key: KeyLocation,
    /// [`daftar_keys::key_check`] of the database key.
    pub key_check: String,
}

impl Profile {
    pub const FORMAT: &'static str = "daftar-data-dir";

    pub fn read(dir: &Path) -> Result<Profile> {
        let path = dir.join(PROFILE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotInitialised { dir: dir.to_owned() });
            }
            Err(source) => {
                return Err(StoreError::Io { action: "read", path, source });
            }
        };
        let profile: Profile = serde_json::from_str(&text)
            .map_err(|e| StoreError::BadProfile { path: path.clone(), detail: e.to_string() })?;
        if profile.format != Self::FORMAT || profile.version != 1 {
            return Err(StoreError::BadProfile {
                path,
                detail: format!("unknown format {} version {}", profile.format, profile.version),
            });
        }
        Ok(profile)
    }

    /// Writes atomically: temporary file, fsync, rename, fsync of the directory.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(PROFILE_FILE);
        let text = serde_json::to_string_pretty(self).expect("profile serialises");
        write_atomically(&path, text.as_bytes())
    }
}

pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |action, source| StoreError::Io { action, path: path.to_owned(), source };
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
    file.write_all(bytes).map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("sync", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("rename", e))?;
    if let Some(parent) = path.parent() {
        // Make the rename itself durable.
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// Opens (or creates) the encrypted database. A new one gets the current schema; an existing
/// one is left at its schema version for the caller to migrate (after a backup).
pub(crate) fn open_connection(dir: &Path, key: &DatabaseKey, create: bool) -> Result<Connection> {
    let path = dir.join(DATABASE_FILE);
    if !create && !path.exists() {
        return Err(StoreError::Corrupt { path, detail: "the database file is missing".into() });
    }
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(&path, flags)?;
    // The key must be the first statement. A raw key (x'…') skips SQLCipher's own KDF, since
    // ours is already 256 random bits.
    let hex_key = zeroize::Zeroizing::new(hex::encode(key.expose_secret_bytes()));
    // SQLCipher logs decryption failures to stderr itself; we report them as errors instead.
    conn.execute_batch(&format!(
        "PRAGMA cipher_log_level = NONE; PRAGMA key = \"x'{}'\"; PRAGMA cipher_hmac_algorithm = HMAC_SHA256;",
        hex_key.as_str()
    ))?;
    let corrupt = |detail: String| StoreError::Corrupt { path: path.clone(), detail };
    // First read: fails with SQLITE_NOTADB when the key is wrong or the file is damaged. The
    // caller has already checked the key against `daftar.json`, so here it means damage.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))
        .map_err(|e| corrupt(e.to_string()))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    crate::audit::hash_function(&conn)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16384;
         PRAGMA secure_delete = ON;",
    )
    .map_err(|e| corrupt(e.to_string()))?;
    if create {
        schema::migrate(&conn, dir)?;
    }
    Ok(conn)
}

/// Canonical form of a data directory path, used for messages and keyring namespaces.
pub(crate) fn canonical_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(dir).map_err(|source| StoreError::Io { action: "open", path: dir.to_owned(), source })
}
