//! Where the relay keeps workspaces, devices, invites and the envelope log.
//!
//! [`RelayStorage`] is the seam for backends: the embedded SQLite one here, PostgreSQL later. It
//! speaks in opaque bytes and ids only — the relay has nothing else to store.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

pub use daftar_domain::Role;

/// The part of a role the relay itself enforces (the devices enforce the whole matrix,
/// `daftar_domain::role`).
pub trait RelayRole {
    /// Owners and admins manage invites and devices.
    fn manages_devices(self) -> bool;
    /// Everyone but viewers may push changes.
    fn may_push(self) -> bool;
}

impl RelayRole for Role {
    fn manages_devices(self) -> bool {
        self >= Role::Admin
    }

    fn may_push(self) -> bool {
        self > Role::Viewer
    }
}

/// A device enrolled in a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceRecord {
    pub device_id: String,
    #[serde(with = "hex_bytes")]
    pub public_key: [u8; 32],
    pub role: Role,
    pub revoked: bool,
    /// False while a device that joined with an invite waits for an owner or admin to approve
    /// it; it receives nothing until then.
    pub approved: bool,
    /// Hex of the device's X25519 agreement key, as it enrolled with it (opaque here; the
    /// approver copies it into the signed membership document).
    pub agreement_key: Option<String>,
    /// The member (person) the device belongs to, as the approver named it (opaque: the id of
    /// the member's first device). A member's devices share one second factor.
    pub member: Option<String>,
    /// What the device sent after enrolling to prove its keys are its own ("EPOCH:HEX", opaque
    /// here: keyed with the workspace key, which a relay never has; the approver checks it).
    pub join_proof: Option<String>,
    pub enrolled_at: i64,
}

impl DeviceRecord {
    /// Whose second factor the device uses: its member's, or its own before it has one.
    pub fn factor_holder(&self) -> String {
        self.member.clone().unwrap_or_else(|| self.device_id.clone())
    }

    /// `pending`, `approved` or `revoked` (what `daftar devices list` shows).
    pub fn status(&self) -> &'static str {
        match (self.revoked, self.approved) {
            (true, _) => "revoked",
            (false, false) => "pending",
            (false, true) => "approved",
        }
    }
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}

/// One stored envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEnvelope {
    pub seq: i64,
    pub id: String,
    pub bytes: Vec<u8>,
}

/// Why the storage refused.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("workspace {0} already exists")]
    WorkspaceExists(String),
    #[error("the invite token is unknown, already used or expired")]
    InviteInvalid,
    #[error("device {0} is already enrolled")]
    DeviceExists(String),
    #[error("envelope {0} was already pushed with different content")]
    EnvelopeConflict(String),
    #[error("epoch {epoch} is not the next one (the newest is {newest}); sync, then rotate again")]
    EpochNotNext { epoch: u32, newest: u32 },
    #[error("epoch {0} does not exist yet")]
    NoSuchEpoch(u32),
    #[error("storage failure: {0}")]
    Backend(String),
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Backend(e.to_string())
    }
}

type Result<T> = std::result::Result<T, StorageError>;

/// What the relay keeps to let a holder of the recovery key rebuild the workspace.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// Public half of the key derived from the recovery key; recovery requests are signed with it.
    pub public_key: [u8; 32],
    /// The workspace key wrapped with a key derived from the recovery key (opaque here).
    pub wrapped_key: Vec<u8>,
}

/// What an invite carries until it is used.
#[derive(Debug, Clone)]
pub struct NewInvite {
    /// SHA-256 of the one-time token; the token itself never reaches the relay's disk.
    pub token_hash: [u8; 32],
    pub role: Role,
    pub expires_at: i64,
    /// The workspace key wrapped with a key derived from the invite's secret (opaque here).
    pub wrapped_key: Vec<u8>,
    pub created_by: String,
}

/// A device's second factor: its TOTP secret (the relay must hold it to check codes), whether
/// enrolment was confirmed with a first code, the last step accepted (each step works once),
/// the hashes of its unused recovery codes, and until when a verified code lets privileged
/// requests through without another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaRecord {
    pub secret: [u8; 20],
    pub confirmed: bool,
    pub last_step: Option<u64>,
    pub recovery: Vec<[u8; 32]>,
    pub elevated_until: i64,
}

/// A workspace key of one epoch, wrapped for one holder (a device id, or `recovery`) by an
/// owner's or admin's device, which signed it. Opaque here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EpochKey {
    pub epoch: u32,
    pub holder: String,
    #[serde(serialize_with = "base64_bytes")]
    pub wrapped: Vec<u8>,
    pub signer: String,
    /// Hex of the signer's Ed25519 signature over the wrapped key and what it is for.
    pub signature: String,
}

fn base64_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
    use base64::Engine;
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Which part of which snapshot an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPart {
    /// The log position the snapshot covers.
    pub seq: i64,
    pub part: u32,
    pub parts: u32,
}

/// What became of an uploaded snapshot part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartStored {
    /// Kept; more parts are to come.
    Stored,
    /// The last part: the snapshot is now the current one.
    Completed,
    /// Not kept: the current snapshot covers as much of the log or more.
    Stale,
}

/// The relay's storage. Every method is scoped to one workspace id.
pub trait RelayStorage: Send + Sync + 'static {
    fn create_workspace(
        &self,
        workspace: String,
        owner: DeviceRecord,
        recovery: Recovery,
    ) -> impl Future<Output = Result<()>> + Send;
    fn device(&self, workspace: String, device: String) -> impl Future<Output = Result<Option<DeviceRecord>>> + Send;
    fn devices(&self, workspace: String) -> impl Future<Output = Result<Vec<DeviceRecord>>> + Send;
    fn revoke(&self, workspace: String, device: String) -> impl Future<Output = Result<bool>> + Send;
    /// Starts epoch `epoch` with its wrapped keys; it must be the newest plus one (epoch 1 is
    /// the workspace's first key, handed over in invites).
    fn add_epoch(&self, workspace: String, keys: Vec<EpochKey>, now: i64) -> impl Future<Output = Result<()>> + Send;
    /// Adds or replaces the key of an existing epoch for one holder (a newly approved device).
    fn put_epoch_key(&self, workspace: String, key: EpochKey, now: i64) -> impl Future<Output = Result<()>> + Send;
    /// The keys wrapped for `holder` of epochs after `after`, oldest first.
    fn epoch_keys(
        &self,
        workspace: String,
        holder: String,
        after: u32,
    ) -> impl Future<Output = Result<Vec<EpochKey>>> + Send;
    /// Records which member a device belongs to; false if the workspace has no such device.
    fn set_member(
        &self,
        workspace: String,
        device: String,
        member: String,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// When the workspace was created on this relay (ms since the epoch).
    fn workspace_created(&self, workspace: String) -> impl Future<Output = Result<Option<i64>>> + Send;
    /// Gives a device another role; false if the workspace has no such device.
    fn set_role(&self, workspace: String, device: String, role: Role) -> impl Future<Output = Result<bool>> + Send;
    /// Approves a pending device (idempotent); false if the workspace has no such device.
    fn approve(&self, workspace: String, device: String) -> impl Future<Output = Result<bool>> + Send;
    /// Keeps a pending device's join proof, once; false if it is not pending or has one.
    fn set_join_proof(
        &self,
        workspace: String,
        device: String,
        proof: String,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn add_invite(&self, workspace: String, invite: NewInvite) -> impl Future<Output = Result<()>> + Send;
    /// Uses an invite: enrols the device with the invite's role and returns the wrapped key.
    fn enrol(
        &self,
        workspace: String,
        token_hash: [u8; 32],
        device: String,
        public_key: [u8; 32],
        agreement_key: Option<String>,
        now: i64,
    ) -> impl Future<Output = Result<(Role, Vec<u8>)>> + Send;
    /// Appends envelopes not seen before; returns each one's sequence number, in order.
    fn push(
        &self,
        workspace: String,
        envelopes: Vec<(String, Vec<u8>)>,
        now: i64,
    ) -> impl Future<Output = Result<Vec<i64>>> + Send;
    fn pull(
        &self,
        workspace: String,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<StoredEnvelope>>> + Send;
    /// The recovery public key and the recovery-wrapped workspace key.
    fn recovery(&self, workspace: String) -> impl Future<Output = Result<Option<([u8; 32], Vec<u8>)>>> + Send;
    /// Enrols a device directly (recovery), failing if its id is taken.
    fn add_device(&self, workspace: String, device: DeviceRecord) -> impl Future<Output = Result<()>> + Send;
    /// Stores one part of a snapshot. When its last part arrives, the snapshot becomes the
    /// workspace's current one if it covers a later point of the log, and older parts go.
    fn put_snapshot_part(
        &self,
        workspace: String,
        part: SnapshotPart,
        bytes: Vec<u8>,
        now: i64,
    ) -> impl Future<Output = Result<PartStored>> + Send;
    /// The current snapshot: the log position it covers and its number of parts.
    fn snapshot(&self, workspace: String) -> impl Future<Output = Result<Option<(i64, u32)>>> + Send;
    /// One part of the snapshot covering `seq`, while it is kept.
    fn snapshot_part(
        &self,
        workspace: String,
        seq: i64,
        part: u32,
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
    /// The highest sequence number of the workspace's log (0 when empty).
    fn head(&self, workspace: String) -> impl Future<Output = Result<i64>> + Send;
    /// A device's second factor, if it enrolled one.
    fn mfa(&self, workspace: String, device: String) -> impl Future<Output = Result<Option<MfaRecord>>> + Send;
    /// Stores (replaces) a device's second factor.
    fn put_mfa(&self, workspace: String, device: String, record: MfaRecord) -> impl Future<Output = Result<()>> + Send;
    /// Accepts TOTP step `step` for the device if it is later than the last one accepted
    /// (atomically, so two requests cannot both use one code), confirming the enrolment and
    /// opening the privileged window until `elevated_until`. False if the step was used.
    fn accept_mfa_step(
        &self,
        workspace: String,
        device: String,
        step: u64,
        elevated_until: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Uses a recovery code (by hash) once; opens the privileged window. False if unknown.
    fn use_recovery_code(
        &self,
        workspace: String,
        device: String,
        hash: [u8; 32],
        elevated_until: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Records a wrong code at `now` and returns how many the device had in the minute up to
    /// `now`, this one included.
    fn mfa_failure(&self, workspace: String, device: String, now: i64) -> impl Future<Output = Result<u32>> + Send;
    /// How many wrong codes the device had since `since`.
    fn mfa_failures(&self, workspace: String, device: String, since: i64) -> impl Future<Output = Result<u32>> + Send;
}

/// The embedded SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    conn: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS workspaces (
    id                  TEXT PRIMARY KEY,
    created_at          INTEGER NOT NULL,
    recovery_public_key BLOB NOT NULL,
    recovery_key        BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (
    workspace   TEXT NOT NULL REFERENCES workspaces(id),
    id          TEXT NOT NULL,
    public_key  BLOB NOT NULL,
    role        TEXT NOT NULL,
    revoked     INTEGER NOT NULL DEFAULT 0,
    enrolled_at INTEGER NOT NULL,
    approved    INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (workspace, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS invites (
    workspace   TEXT NOT NULL REFERENCES workspaces(id),
    token_hash  BLOB NOT NULL,
    role        TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    wrapped_key BLOB NOT NULL,
    created_by  TEXT NOT NULL,
    used_by     TEXT,
    PRIMARY KEY (workspace, token_hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshot_current (
    workspace TEXT PRIMARY KEY REFERENCES workspaces(id),
    seq       INTEGER NOT NULL,
    parts     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshot_parts (
    workspace TEXT NOT NULL REFERENCES workspaces(id),
    seq       INTEGER NOT NULL,
    part      INTEGER NOT NULL,
    parts     INTEGER NOT NULL,
    bytes     BLOB NOT NULL,
    received  INTEGER NOT NULL,
    PRIMARY KEY (workspace, seq, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mfa (
    workspace      TEXT NOT NULL REFERENCES workspaces(id),
    device         TEXT NOT NULL,
    secret         BLOB NOT NULL,
    confirmed      INTEGER NOT NULL DEFAULT 0,
    last_step      INTEGER,
    recovery       BLOB NOT NULL,
    elevated_until INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace, device)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mfa_failures (
    workspace TEXT NOT NULL,
    device    TEXT NOT NULL,
    at        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS mfa_failures_by_device ON mfa_failures (workspace, device, at);
CREATE TABLE IF NOT EXISTS epoch_keys (
    workspace  TEXT NOT NULL REFERENCES workspaces(id),
    epoch      INTEGER NOT NULL,
    holder     TEXT NOT NULL,
    wrapped    BLOB NOT NULL,
    signer     TEXT NOT NULL,
    signature  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (workspace, epoch, holder)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS envelopes (
    workspace TEXT NOT NULL REFERENCES workspaces(id),
    seq       INTEGER NOT NULL,
    id        TEXT NOT NULL,
    bytes     BLOB NOT NULL,
    received  INTEGER NOT NULL,
    PRIMARY KEY (workspace, seq),
    UNIQUE (workspace, id)
) WITHOUT ROWID;
"#;

impl SqliteStorage {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        conn.execute_batch(SCHEMA)?;
        // Columns added since the first release, on relays made before them (devices of a
        // relay from before approval existed count as approved).
        for (column, definition) in [
            ("approved", "INTEGER NOT NULL DEFAULT 1"),
            ("agreement_key", "TEXT"),
            ("member", "TEXT"),
            ("join_proof", "TEXT"),
        ] {
            let present: bool =
                conn.query_row("SELECT count(*) FROM pragma_table_info('devices') WHERE name = ?1", [column], |r| {
                    r.get::<_, i64>(0).map(|n| n > 0)
                })?;
            if !present {
                conn.execute_batch(&format!("ALTER TABLE devices ADD COLUMN {column} {definition}"))?;
            }
        }
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `f` on the connection off the async runtime.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| StorageError::Backend("storage lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StorageError::Backend(e.to_string()))?
    }
}

fn insert_device(conn: &Connection, workspace: &str, device: &DeviceRecord) -> Result<()> {
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO devices (workspace, id, public_key, role, enrolled_at, approved, revoked, agreement_key, member)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            workspace,
            device.device_id,
            device.public_key.as_slice(),
            device.role.as_str(),
            device.enrolled_at,
            device.approved,
            device.revoked,
            device.agreement_key,
            device.member
        ],
    )?;
    if inserted == 0 {
        return Err(StorageError::DeviceExists(device.device_id.clone()));
    }
    Ok(())
}

fn insert_epoch_key(conn: &Connection, workspace: &str, key: &EpochKey, now: i64) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO epoch_keys (workspace, epoch, holder, wrapped, signer, signature, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![workspace, key.epoch, key.holder, key.wrapped, key.signer, key.signature, now],
    )?;
    Ok(())
}

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let key: Vec<u8> = r.get(1)?;
    let role: String = r.get(2)?;
    Ok(DeviceRecord {
        device_id: r.get(0)?,
        public_key: key.try_into().unwrap_or([0; 32]),
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        revoked: r.get::<_, i64>(3)? != 0,
        enrolled_at: r.get(4)?,
        approved: r.get::<_, i64>(5)? != 0,
        agreement_key: r.get(6)?,
        member: r.get(7)?,
        join_proof: r.get(8)?,
    })
}

fn recovery_blob(hashes: &[[u8; 32]]) -> Vec<u8> {
    hashes.concat()
}

fn recovery_hashes(blob: &[u8]) -> Vec<[u8; 32]> {
    blob.chunks_exact(32).map(|c| c.try_into().expect("32-byte chunk")).collect()
}

impl RelayStorage for SqliteStorage {
    async fn mfa(&self, workspace: String, device: String) -> Result<Option<MfaRecord>> {
        self.with(move |conn| {
            let row = conn
                .query_row(
                    "SELECT secret, confirmed, last_step, recovery, elevated_until FROM mfa WHERE workspace = ?1 AND device = ?2",
                    params![workspace, device],
                    |r| {
                        let secret: Vec<u8> = r.get(0)?;
                        let recovery: Vec<u8> = r.get(3)?;
                        let (confirmed, last_step, elevated_until): (bool, Option<i64>, i64) =
                            (r.get(1)?, r.get(2)?, r.get(4)?);
                        Ok(secret.try_into().ok().map(|secret| MfaRecord {
                            secret,
                            confirmed,
                            last_step: last_step.map(|s| s as u64),
                            recovery: recovery_hashes(&recovery),
                            elevated_until,
                        }))
                    },
                )
                .optional()?;
            Ok(row.flatten())
        })
        .await
    }

    async fn put_mfa(&self, workspace: String, device: String, record: MfaRecord) -> Result<()> {
        self.with(move |conn| {
            conn.execute(
                "INSERT OR REPLACE INTO mfa (workspace, device, secret, confirmed, last_step, recovery, elevated_until)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    workspace,
                    device,
                    record.secret.as_slice(),
                    record.confirmed,
                    record.last_step.map(|s| s as i64),
                    recovery_blob(&record.recovery),
                    record.elevated_until
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn accept_mfa_step(&self, workspace: String, device: String, step: u64, elevated_until: i64) -> Result<bool> {
        self.with(move |conn| {
            Ok(conn.execute(
                "UPDATE mfa SET last_step = ?3, confirmed = 1, elevated_until = ?4
                 WHERE workspace = ?1 AND device = ?2 AND (last_step IS NULL OR last_step < ?3)",
                params![workspace, device, step as i64, elevated_until],
            )? == 1)
        })
        .await
    }

    async fn use_recovery_code(
        &self,
        workspace: String,
        device: String,
        hash: [u8; 32],
        elevated_until: i64,
    ) -> Result<bool> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let blob: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT recovery FROM mfa WHERE workspace = ?1 AND device = ?2 AND confirmed = 1",
                    params![workspace, device],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(blob) = blob else { return Ok(false) };
            let mut hashes = recovery_hashes(&blob);
            let Some(index) = hashes.iter().position(|h| *h == hash) else { return Ok(false) };
            hashes.remove(index);
            tx.execute(
                "UPDATE mfa SET recovery = ?3, elevated_until = ?4 WHERE workspace = ?1 AND device = ?2",
                params![workspace, device, recovery_blob(&hashes), elevated_until],
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn mfa_failure(&self, workspace: String, device: String, now: i64) -> Result<u32> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM mfa_failures WHERE workspace = ?1 AND device = ?2 AND at <= ?3",
                params![workspace, device, now - 3_600_000],
            )?;
            tx.execute(
                "INSERT INTO mfa_failures (workspace, device, at) VALUES (?1, ?2, ?3)",
                params![workspace, device, now],
            )?;
            let count: u32 = tx.query_row(
                "SELECT count(*) FROM mfa_failures WHERE workspace = ?1 AND device = ?2 AND at > ?3",
                params![workspace, device, now - 60_000],
                |r| r.get(0),
            )?;
            tx.commit()?;
            Ok(count)
        })
        .await
    }

    async fn mfa_failures(&self, workspace: String, device: String, since: i64) -> Result<u32> {
        self.with(move |conn| {
            Ok(conn.query_row(
                "SELECT count(*) FROM mfa_failures WHERE workspace = ?1 AND device = ?2 AND at > ?3",
                params![workspace, device, since],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn create_workspace(&self, workspace: String, owner: DeviceRecord, recovery: Recovery) -> Result<()> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO workspaces (id, created_at, recovery_public_key, recovery_key) VALUES (?1, ?2, ?3, ?4)",
                params![workspace, owner.enrolled_at, recovery.public_key.as_slice(), recovery.wrapped_key],
            )?;
            if inserted == 0 {
                return Err(StorageError::WorkspaceExists(workspace));
            }
            insert_device(&tx, &workspace, &owner)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn add_device(&self, workspace: String, device: DeviceRecord) -> Result<()> {
        self.with(move |conn| insert_device(conn, &workspace, &device)).await
    }

    async fn device(&self, workspace: String, device: String) -> Result<Option<DeviceRecord>> {
        self.with(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT id, public_key, role, revoked, enrolled_at, approved, agreement_key, member, join_proof FROM devices WHERE workspace = ?1 AND id = ?2",
                    params![workspace, device],
                    device_row,
                )
                .optional()?)
        })
        .await
    }

    async fn devices(&self, workspace: String) -> Result<Vec<DeviceRecord>> {
        self.with(move |conn| {
            let mut statement = conn.prepare(
                "SELECT id, public_key, role, revoked, enrolled_at, approved, agreement_key, member, join_proof FROM devices WHERE workspace = ?1 ORDER BY enrolled_at, id",
            )?;
            let rows = statement.query_map([workspace], device_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn revoke(&self, workspace: String, device: String) -> Result<bool> {
        self.with(move |conn| {
            Ok(conn.execute(
                "UPDATE devices SET revoked = 1 WHERE workspace = ?1 AND id = ?2",
                params![workspace, device],
            )? == 1)
        })
        .await
    }

    async fn add_epoch(&self, workspace: String, keys: Vec<EpochKey>, now: i64) -> Result<()> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let newest: u32 = tx.query_row(
                "SELECT coalesce(max(epoch), 1) FROM epoch_keys WHERE workspace = ?1",
                [&workspace],
                |r| r.get(0),
            )?;
            for key in &keys {
                if key.epoch != newest + 1 {
                    return Err(StorageError::EpochNotNext { epoch: key.epoch, newest });
                }
                insert_epoch_key(&tx, &workspace, key, now)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn put_epoch_key(&self, workspace: String, key: EpochKey, now: i64) -> Result<()> {
        self.with(move |conn| {
            let newest: u32 = conn.query_row(
                "SELECT coalesce(max(epoch), 1) FROM epoch_keys WHERE workspace = ?1",
                [&workspace],
                |r| r.get(0),
            )?;
            if key.epoch == 0 || key.epoch > newest {
                return Err(StorageError::NoSuchEpoch(key.epoch));
            }
            insert_epoch_key(conn, &workspace, &key, now)
        })
        .await
    }

    async fn epoch_keys(&self, workspace: String, holder: String, after: u32) -> Result<Vec<EpochKey>> {
        self.with(move |conn| {
            let mut statement = conn.prepare(
                "SELECT epoch, holder, wrapped, signer, signature FROM epoch_keys
                 WHERE workspace = ?1 AND holder = ?2 AND epoch > ?3 ORDER BY epoch",
            )?;
            let rows = statement.query_map(params![workspace, holder, after], |r| {
                Ok(EpochKey {
                    epoch: r.get(0)?,
                    holder: r.get(1)?,
                    wrapped: r.get(2)?,
                    signer: r.get(3)?,
                    signature: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn set_member(&self, workspace: String, device: String, member: String) -> Result<bool> {
        self.with(move |conn| {
            Ok(conn.execute(
                "UPDATE devices SET member = ?3 WHERE workspace = ?1 AND id = ?2",
                params![workspace, device, member],
            )? == 1)
        })
        .await
    }

    async fn workspace_created(&self, workspace: String) -> Result<Option<i64>> {
        self.with(move |conn| {
            Ok(conn
                .query_row("SELECT created_at FROM workspaces WHERE id = ?1", [workspace], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn set_role(&self, workspace: String, device: String, role: Role) -> Result<bool> {
        self.with(move |conn| {
            Ok(conn.execute(
                "UPDATE devices SET role = ?3 WHERE workspace = ?1 AND id = ?2",
                params![workspace, device, role.as_str()],
            )? == 1)
        })
        .await
    }

    async fn approve(&self, workspace: String, device: String) -> Result<bool> {
        self.with(move |conn| {
            Ok(conn.execute(
                "UPDATE devices SET approved = 1 WHERE workspace = ?1 AND id = ?2",
                params![workspace, device],
            )? == 1)
        })
        .await
    }

    async fn set_join_proof(&self, workspace: String, device: String, proof: String) -> Result<bool> {
        self.with(move |conn| {
            Ok(conn.execute(
                "UPDATE devices SET join_proof = ?3
                 WHERE workspace = ?1 AND id = ?2 AND approved = 0 AND revoked = 0 AND join_proof IS NULL",
                params![workspace, device, proof],
            )? == 1)
        })
        .await
    }

    async fn add_invite(&self, workspace: String, invite: NewInvite) -> Result<()> {
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO invites (workspace, token_hash, role, expires_at, wrapped_key, created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    workspace,
                    invite.token_hash.as_slice(),
                    invite.role.as_str(),
                    invite.expires_at,
                    invite.wrapped_key,
                    invite.created_by
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn enrol(
        &self,
        workspace: String,
        token_hash: [u8; 32],
        device: String,
        public_key: [u8; 32],
        agreement_key: Option<String>,
        now: i64,
    ) -> Result<(Role, Vec<u8>)> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let invite: Option<(String, Vec<u8>)> = tx
                .query_row(
                    "SELECT role, wrapped_key FROM invites
                     WHERE workspace = ?1 AND token_hash = ?2 AND used_by IS NULL AND expires_at > ?3",
                    params![workspace, token_hash.as_slice(), now],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let (role, wrapped_key) = invite.ok_or(StorageError::InviteInvalid)?;
            let role = Role::parse(&role).ok_or(StorageError::InviteInvalid)?;
            // An invited device waits for approval by an owner or admin.
            let record = DeviceRecord {
                device_id: device.clone(),
                public_key,
                role,
                revoked: false,
                approved: false,
                agreement_key,
                member: None,
                join_proof: None,
                enrolled_at: now,
            };
            insert_device(&tx, &workspace, &record)?;
            tx.execute(
                "UPDATE invites SET used_by = ?3 WHERE workspace = ?1 AND token_hash = ?2",
                params![workspace, token_hash.as_slice(), device],
            )?;
            tx.commit()?;
            Ok((role, wrapped_key))
        })
        .await
    }

    async fn push(&self, workspace: String, envelopes: Vec<(String, Vec<u8>)>, now: i64) -> Result<Vec<i64>> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let mut seqs = Vec::with_capacity(envelopes.len());
            {
                let mut existing =
                    tx.prepare_cached("SELECT seq, bytes FROM envelopes WHERE workspace = ?1 AND id = ?2")?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO envelopes (workspace, seq, id, bytes, received)
                     VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM envelopes WHERE workspace = ?1), ?2, ?3, ?4)
                     RETURNING seq",
                )?;
                for (id, bytes) in envelopes {
                    let seen: Option<(i64, Vec<u8>)> =
                        existing.query_row(params![workspace, id], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
                    match seen {
                        Some((seq, stored)) if stored == bytes => seqs.push(seq),
                        Some(_) => return Err(StorageError::EnvelopeConflict(id)),
                        None => seqs.push(insert.query_row(params![workspace, id, bytes, now], |r| r.get(0))?),
                    }
                }
            }
            tx.commit()?;
            Ok(seqs)
        })
        .await
    }

    async fn pull(&self, workspace: String, after: i64, limit: u32) -> Result<Vec<StoredEnvelope>> {
        self.with(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT seq, id, bytes FROM envelopes WHERE workspace = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = statement.query_map(params![workspace, after, limit], |r| {
                Ok(StoredEnvelope { seq: r.get(0)?, id: r.get(1)?, bytes: r.get(2)? })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn recovery(&self, workspace: String) -> Result<Option<([u8; 32], Vec<u8>)>> {
        self.with(move |conn| {
            let row: Option<(Vec<u8>, Vec<u8>)> = conn
                .query_row("SELECT recovery_public_key, recovery_key FROM workspaces WHERE id = ?1", [workspace], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            Ok(row.and_then(|(public, wrapped)| Some((<[u8; 32]>::try_from(public).ok()?, wrapped))))
        })
        .await
    }

    async fn put_snapshot_part(
        &self,
        workspace: String,
        part: SnapshotPart,
        bytes: Vec<u8>,
        now: i64,
    ) -> Result<PartStored> {
        self.with(move |conn| {
            let tx = conn.unchecked_transaction()?;
            let current: Option<i64> = tx
                .query_row("SELECT seq FROM snapshot_current WHERE workspace = ?1", [&workspace], |r| r.get(0))
                .optional()?;
            if current.is_some_and(|held| held >= part.seq) {
                return Ok(PartStored::Stale);
            }
            tx.execute(
                "INSERT OR REPLACE INTO snapshot_parts (workspace, seq, part, parts, bytes, received)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![workspace, part.seq, part.part, part.parts, bytes, now],
            )?;
            let have: u32 = tx.query_row(
                "SELECT count(*) FROM snapshot_parts WHERE workspace = ?1 AND seq = ?2 AND parts = ?3",
                params![workspace, part.seq, part.parts],
                |r| r.get(0),
            )?;
            let stored = if have == part.parts {
                tx.execute(
                    "INSERT OR REPLACE INTO snapshot_current (workspace, seq, parts) VALUES (?1, ?2, ?3)",
                    params![workspace, part.seq, part.parts],
                )?;
                // Superseded snapshots, and stray parts of this one from an upload with
                // another part count, are no longer needed.
                tx.execute(
                    "DELETE FROM snapshot_parts WHERE workspace = ?1 AND (seq < ?2 OR (seq = ?2 AND parts != ?3))",
                    params![workspace, part.seq, part.parts],
                )?;
                PartStored::Completed
            } else {
                PartStored::Stored
            };
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    async fn snapshot(&self, workspace: String) -> Result<Option<(i64, u32)>> {
        self.with(move |conn| {
            Ok(conn
                .query_row("SELECT seq, parts FROM snapshot_current WHERE workspace = ?1", [workspace], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?)
        })
        .await
    }

    async fn snapshot_part(&self, workspace: String, seq: i64, part: u32) -> Result<Option<Vec<u8>>> {
        self.with(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT p.bytes FROM snapshot_parts p JOIN snapshot_current c
                       ON c.workspace = p.workspace AND c.seq = p.seq AND c.parts = p.parts
                     WHERE p.workspace = ?1 AND p.seq = ?2 AND p.part = ?3",
                    params![workspace, seq, part],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    async fn head(&self, workspace: String) -> Result<i64> {
        self.with(move |conn| {
            Ok(conn.query_row(
                "SELECT coalesce(max(seq), 0) FROM envelopes WHERE workspace = ?1",
                [workspace],
                |r| r.get(0),
            )?)
        })
        .await
    }
}
