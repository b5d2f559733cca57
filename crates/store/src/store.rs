//! [`Store`]: opening a data directory and the operations every kind of record shares.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use automerge::{Automerge, Change, ChangeHash, transaction::CommitOptions};
use chrono::{DateTime, Utc};
use daftar_domain::{Action, DeviceId, DocumentId, Role, SellerProfile, Series, Tombstone, WorkspaceId};
use daftar_keys::{DatabaseKey, Secret, key_check, key_file, keyring_store};
use daftar_sync::RecoveryKey;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use uuid::Uuid;

use crate::Clock;
use crate::database::{self, DATABASE_FILE, KEY_FILE, KeyLocation, PROFILE_FILE, Profile};
use crate::document::{self, actor_for};
use crate::error::{Result, StoreError};
use crate::records::{DeviceEntry, DocKind, Record, SearchWrite, WorkspaceSettings};

/// Where a new data directory keeps its database key.
#[derive(Debug)]
pub enum KeyChoice {
    /// The OS keyring (the default).
    Keyring,
    /// A passphrase-protected key file (`key.json`), for machines without a keyring.
    Passphrase(String),
}

/// What is needed to open a data directory beyond the OS keyring.
#[derive(Debug, Default)]
pub struct Unlock {
    /// The passphrase, for data directories set up with a key file.
    pub passphrase: Option<String>,
}

/// What runs on a store about to be migrated (see [`Store::open_with`]): makes a backup and
/// returns its record, or says why it could not.
pub type BeforeMigration<'a> = &'a dyn Fn(&Store) -> std::result::Result<Option<crate::BackupRecord>, String>;

/// Options for [`Store::init`].
#[derive(Debug)]
pub struct InitOptions {
    pub seller: SellerProfile,
    /// This device's invoice-number prefix; `A` when not given.
    pub series: Option<Series>,
    pub key: KeyChoice,
    pub device_name: String,
    /// For a new workspace: the person creating it, its first member and owner, as the
    /// membership document and the audit log name them ("owner" when not given).
    pub member: Option<String>,
    /// Set up this data directory as a new device of an existing workspace (recovery, joining)
    /// instead of creating a workspace. Its settings then arrive by sync.
    pub existing: Option<ExistingWorkspace>,
}

/// A joined device waiting for approval (see [`Store::pending_join`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingJoin {
    /// Hex of the invite's one-time token.
    pub token: String,
    pub name: String,
}

/// What a new device of an existing workspace brings to its set-up.
#[derive(Debug)]
pub struct ExistingWorkspace {
    pub workspace_id: WorkspaceId,
    /// The id the device enrolled on the relay with.
    pub device_id: DeviceId,
    /// A workspace key (the invite's or the recovery key's), unwrapped, and its epoch; a joined
    /// device receives the others once approved.
    pub workspace_key: Secret<32>,
    pub epoch: u32,
    /// The seed of the device's X25519 agreement key, whose public half it enrolled with.
    pub agreement_seed: Secret<32>,
    /// The signing seed the device already enrolled on the relay with.
    pub signing_seed: Secret<32>,
    pub recovery: RecoveryKey,
    /// The role the device joins with (the invite's; recovery makes an owner).
    pub role: Role,
}

/// Identity of an open data directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkspaceInfo {
    pub workspace_id: WorkspaceId,
    pub device_id: DeviceId,
    pub series: Series,
    pub data_dir: PathBuf,
    pub key_location: KeyLocation,
    /// This device's role: what the core lets it do (see `daftar_domain::role`).
    pub role: Role,
}

/// How many writes may queue search text before it is moved into FTS5 in one batch.
const SEARCH_BATCH: u32 = 256;

/// The device's secrets made at set-up, besides the database key.
struct DeviceSecrets {
    signing_seed: Secret<32>,
    agreement_seed: Secret<32>,
    workspace_key: Secret<32>,
    epoch: u32,
    recovery: RecoveryKey,
}

/// Secret names, in the keyring (`<name>:<namespace>`) or the `secrets` table.
pub(crate) const SIGNING_SEED: &str = "device-signing-key";
/// The seed of the device's X25519 key that receives new epochs' workspace keys.
pub(crate) const AGREEMENT_SEED: &str = "device-agreement-key";

fn workspace_key_name(epoch: u32) -> String {
    format!("workspace-key-{epoch}")
}

/// Removes every secret a failed set-up may have stored.
fn forget_keyring_secrets(namespace: &str, epoch: u32) {
    let names = [keyring_store::DATABASE_KEY.to_owned(), SIGNING_SEED.to_owned(), AGREEMENT_SEED.to_owned()];
    for name in names.into_iter().chain([workspace_key_name(epoch)]) {
        let _ = keyring_store::delete(&name, namespace);
    }
}

/// What creating or editing a record of `kind` is, in the permission matrix.
pub(crate) fn editing(kind: DocKind) -> Action {
    match kind {
        DocKind::Invoice => Action::EditDrafts,
        DocKind::Customer => Action::EditCustomers,
        DocKind::Item => Action::EditItems,
        DocKind::Settings => Action::EditSettings,
        DocKind::Membership => Action::ManageDevices,
        // Every device records its own events.
        DocKind::Events => Action::Read,
    }
}

/// Per-write facts shared by the helpers below.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub device: DeviceId,
    pub now: DateTime<Utc>,
}

/// An open data directory. Not `Sync`: one connection, used by one thread at a time.
pub struct Store {
    pub(crate) conn: Connection,
    pub(crate) info: WorkspaceInfo,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) cache: DocCache,
    /// Writes since the search queue was last flushed (see `search_queue` in the schema).
    pub(crate) unflushed: std::cell::Cell<u32>,
    /// The ZATCA signing key, derived once per open store: with the OS keyring, reading the
    /// seed is a D-Bus round trip that issuing should not repeat.
    pub(crate) egs: std::cell::OnceCell<k256::ecdsa::SigningKey>,
    /// The device key that signs the audit log, loaded on the first write.
    pub(crate) signer: std::cell::OnceCell<daftar_sync::DeviceSigningKey>,
}

impl Drop for Store {
    fn drop(&mut self) {
        // Best effort: whatever stays queued is flushed by the next search or open.
        let _ = crate::search::flush_queue(&self.conn);
    }
}

/// Recently used documents, kept loaded between operations. An entry is used only while its
/// heads equal the heads recorded in `documents`, so a write by another process, a rolled-back
/// transaction or a purge simply makes it miss.
#[derive(Default)]
pub(crate) struct DocCache(std::cell::RefCell<std::collections::HashMap<DocumentId, Automerge>>);

impl DocCache {
    const CAPACITY: usize = 1024;

    /// Takes the document out of the cache if it is current, or loads it.
    pub(crate) fn take(&self, conn: &Connection, id: DocumentId) -> Result<Option<Loaded>> {
        let row: Option<(String, Vec<u8>)> = conn
            .prepare_cached("SELECT kind, heads FROM documents WHERE id = ?1")?
            .query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let cached = self.0.borrow_mut().remove(&id);
        let Some((kind, heads)) = row else {
            return Ok(None);
        };
        if let (Some(doc), Some(kind)) = (cached, DocKind::parse(&kind))
            && document::encode_heads(&doc.get_heads()) == heads
        {
            return Ok(Some(Loaded { doc, kind }));
        }
        load_doc(conn, id)
    }

    /// Keeps a document for next time.
    pub(crate) fn put(&self, id: DocumentId, doc: Automerge) {
        let mut docs = self.0.borrow_mut();
        if docs.len() >= Self::CAPACITY {
            docs.clear();
        }
        docs.insert(id, doc);
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("info", &self.info).finish_non_exhaustive()
    }
}

/// One version of a document: one Automerge change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Version {
    /// 1-based position in the document's history, oldest first.
    pub version: usize,
    pub hash: String,
    pub time: DateTime<Utc>,
    pub device: Option<DeviceId>,
    /// What the change did (`create`, `edit`, `issue A-000001`, `delete`, …).
    pub message: String,
}

pub(crate) struct Loaded {
    pub doc: Automerge,
    pub kind: DocKind,
}

fn meta(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?.query_row([key], |r| r.get(0)).optional()?)
}

fn corrupt_meta(dir: &Path, what: &str) -> StoreError {
    StoreError::Corrupt { path: dir.join(DATABASE_FILE), detail: format!("the workspace record has no valid {what}") }
}

/// Loads a document: its snapshot (if compacted) plus its change rows in arrival order.
pub(crate) fn load_doc(conn: &Connection, id: DocumentId) -> Result<Option<Loaded>> {
    let key = id.to_string();
    let Some(kind) = conn
        .prepare_cached("SELECT kind FROM documents WHERE id = ?1")?
        .query_row([&key], |r| r.get::<_, String>(0))
        .optional()?
    else {
        return Ok(None);
    };
    let kind = DocKind::parse(&kind)
        .ok_or_else(|| StoreError::Document { id, detail: format!("unknown document kind {kind:?}") })?;
    let broken = |detail: String| StoreError::Document { id, detail };
    let snapshot: Option<Vec<u8>> = conn
        .prepare_cached("SELECT bytes FROM snapshots WHERE doc_id = ?1")?
        .query_row([&key], |r| r.get(0))
        .optional()?;
    let mut doc = match snapshot {
        Some(bytes) => Automerge::load(&bytes).map_err(|e| broken(format!("snapshot does not load: {e}")))?,
        None => Automerge::new(),
    };
    let mut statement = conn.prepare_cached("SELECT hash, bytes FROM changes WHERE doc_id = ?1 ORDER BY seq")?;
    let mut changes = Vec::new();
    let mut rows = statement.query([&key])?;
    while let Some(row) = rows.next()? {
        let hash: Vec<u8> = row.get(0)?;
        let bytes: Vec<u8> = row.get(1)?;
        let change = Change::from_bytes(bytes).map_err(|e| broken(format!("a stored change does not decode: {e}")))?;
        if change.hash().0.as_slice() != hash.as_slice() {
            return Err(broken(format!("change {} is stored under another hash", change.hash())));
        }
        changes.push(change);
    }
    doc.apply_changes(changes).map_err(|e| broken(format!("changes do not apply: {e}")))?;
    Ok(Some(Loaded { doc, kind }))
}

/// Reconciles `json` into `doc` as one change and stores it. Returns whether anything changed.
pub(crate) fn commit_json(
    conn: &Connection,
    id: DocumentId,
    doc: &mut Automerge,
    json: &serde_json::Value,
    message: &str,
    ctx: Ctx,
) -> Result<bool> {
    let before = doc.get_heads();
    doc.set_actor(actor_for(ctx.device));
    let options = CommitOptions::default().with_message(message.to_owned()).with_time(ctx.now.timestamp_millis());
    let outcome = doc
        .transact_with(|_| options, |tx| document::reconcile_root(tx, json))
        .map_err(|failure| StoreError::Document { id, detail: failure.error.to_string() })?;
    if outcome.hash.is_none() {
        return Ok(false);
    }
    store_changes(conn, id, doc, &before, ctx)?;
    Ok(true)
}

/// The bytes a change is stored as: its compressed chunk (DEFLATE above Automerge's size
/// threshold), which `Change::from_bytes` reads back with the same hash.
pub(crate) fn stored_bytes(change: &Change) -> Vec<u8> {
    change.clone().bytes().into_owned()
}

/// Stores every change of `doc` after `before` as rows, and the new heads.
pub(crate) fn store_changes(
    conn: &Connection,
    id: DocumentId,
    doc: &Automerge,
    before: &[ChangeHash],
    ctx: Ctx,
) -> Result<()> {
    insert_changes(conn, id, doc, before, ctx)?;
    conn.prepare_cached("UPDATE documents SET heads = ?2 WHERE id = ?1")?
        .execute(params![id.to_string(), document::encode_heads(&doc.get_heads())])?;
    Ok(())
}

fn insert_changes(conn: &Connection, id: DocumentId, doc: &Automerge, before: &[ChangeHash], ctx: Ctx) -> Result<()> {
    let key = id.to_string();
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO changes (doc_id, hash, bytes, device, time, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for change in doc.get_changes(before) {
        insert.execute(params![
            key,
            change.hash().0.as_slice(),
            stored_bytes(change),
            ctx.device.to_string(),
            change.timestamp(),
            change.message()
        ])?;
    }
    Ok(())
}

/// Stores a new document: its row, with its heads, and its change rows.
pub(crate) fn insert_document(
    conn: &Connection,
    id: DocumentId,
    kind: DocKind,
    doc: &Automerge,
    ctx: Ctx,
) -> Result<()> {
    insert_document_row(conn, id, kind, &doc.get_heads(), ctx)?;
    insert_changes(conn, id, doc, &[], ctx)
}

/// The `documents` row of a new document.
pub(crate) fn insert_document_row(
    conn: &Connection,
    id: DocumentId,
    kind: DocKind,
    heads: &[ChangeHash],
    ctx: Ctx,
) -> Result<()> {
    conn.prepare_cached("INSERT INTO documents (id, kind, created_at, heads) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![id.to_string(), kind.as_str(), ctx.now.timestamp_millis(), document::encode_heads(heads)])?;
    Ok(())
}

/// The heads of the document as of version `version` (1-based; history is topologically
/// ordered, so every prefix is causally complete).
pub(crate) fn heads_at<C: std::borrow::Borrow<Change>>(changes: &[C], version: usize) -> Vec<ChangeHash> {
    let prefix = &changes[..version];
    let depended: std::collections::HashSet<ChangeHash> =
        prefix.iter().flat_map(|c| c.borrow().deps().iter().copied()).collect();
    prefix.iter().map(|c| c.borrow().hash()).filter(|h| !depended.contains(h)).collect()
}

impl Store {
    /// Sets up a new data directory with a new workspace. Nothing is left behind if it fails.
    /// Returns the store and the workspace's recovery key, which exists nowhere else: show it
    /// to the person once.
    pub fn init(dir: &Path, mut options: InitOptions, clock: Arc<dyn Clock>) -> Result<(Store, RecoveryKey)> {
        if options.existing.is_none() {
            options.seller.validate().into_result()?;
        }
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            action: "create",
            path: dir.to_owned(),
            source,
        })?;
        #[cfg(unix)]
        {
            // Only this user may list or open the data directory.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|source| StoreError::Io {
                action: "protect",
                path: dir.to_owned(),
                source,
            })?;
        }
        if dir.join(PROFILE_FILE).exists() || dir.join(DATABASE_FILE).exists() {
            return Err(StoreError::AlreadyInitialised { dir: dir.to_owned() });
        }
        let dir = database::canonical_dir(dir)?;
        let key = daftar_keys::generate_database_key()?;
        let (secrets, workspace_id) = match options.existing.take() {
            Some(existing) => (
                DeviceSecrets {
                    signing_seed: existing.signing_seed,
                    agreement_seed: existing.agreement_seed,
                    workspace_key: existing.workspace_key,
                    epoch: existing.epoch,
                    recovery: existing.recovery,
                },
                Some((existing.workspace_id, existing.device_id, existing.role)),
            ),
            None => (
                DeviceSecrets {
                    signing_seed: daftar_keys::generate_secret()?,
                    agreement_seed: daftar_keys::generate_secret()?,
                    workspace_key: daftar_keys::generate_secret()?,
                    epoch: 1,
                    recovery: RecoveryKey::generate().map_err(|_| daftar_keys::KeyError::Random)?,
                },
                None,
            ),
        };
        let location = match &options.key {
            KeyChoice::Keyring => {
                let namespace = Uuid::new_v4().to_string();
                let stored = keyring_store::store(keyring_store::DATABASE_KEY, &namespace, &key)
                    .and_then(|()| keyring_store::store(SIGNING_SEED, &namespace, &secrets.signing_seed))
                    .and_then(|()| keyring_store::store(AGREEMENT_SEED, &namespace, &secrets.agreement_seed))
                    .and_then(|()| {
                        keyring_store::store(&workspace_key_name(secrets.epoch), &namespace, &secrets.workspace_key)
                    });
                if let Err(e) = stored {
                    forget_keyring_secrets(&namespace, secrets.epoch);
                    return Err(e.into());
                }
                KeyLocation::Keyring { namespace }
            }
            KeyChoice::Passphrase(passphrase) => {
                key_file::create(&dir.join(KEY_FILE), passphrase, &key, Default::default())?;
                KeyLocation::KeyFile
            }
        };
        let result = Self::create_database(&dir, &key, location.clone(), options, &secrets, workspace_id, clock);
        if result.is_err() {
            // Leave the directory as it was: no key that encrypts nothing, no half database.
            if let KeyLocation::Keyring { namespace } = &location {
                forget_keyring_secrets(namespace, secrets.epoch);
            }
            for file in [KEY_FILE, DATABASE_FILE, "daftar.db-wal", "daftar.db-shm"] {
                let _ = std::fs::remove_file(dir.join(file));
            }
        }
        result.map(|store| (store, secrets.recovery))
    }

    fn create_database(
        dir: &Path,
        key: &DatabaseKey,
        location: KeyLocation,
        options: InitOptions,
        secrets: &DeviceSecrets,
        existing: Option<(WorkspaceId, DeviceId, Role)>,
        clock: Arc<dyn Clock>,
    ) -> Result<Store> {
        let conn = database::open_connection(dir, key, true)?;
        let now = clock.now();
        let (workspace_id, device_id, role) = existing.unwrap_or_else(|| {
            (WorkspaceId::from_uuid(Uuid::now_v7()), DeviceId::from_uuid(Uuid::now_v7()), Role::Owner)
        });
        let series = options.series.unwrap_or_else(|| "A".parse().expect("valid series"));
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let device_key = daftar_sync::DeviceSigningKey::from_seed(&secrets.signing_seed);
        let wrapped = secrets
            .recovery
            .wrap_workspace_key(workspace_id, &secrets.workspace_key)
            .map_err(|_| daftar_keys::KeyError::Random)?;
        for (k, v) in [
            ("workspace_id", workspace_id.to_string()),
            ("device_id", device_id.to_string()),
            ("series", series.to_string()),
            ("device_public_key", hex::encode(device_key.public_key())),
            ("workspace_key_epoch", secrets.epoch.to_string()),
            ("role", role.as_str().to_owned()),
            // What the relay will keep for recovery: the public half of the recovery signing key
            // and the workspace key wrapped by the recovery key. Neither reveals either key.
            ("recovery_public_key", hex::encode(secrets.recovery.relay_signing_key().public_key())),
            ("recovery_wrapped_workspace_key", hex::encode(wrapped)),
        ] {
            conn.execute("INSERT INTO meta (key, value) VALUES (?1, ?2)", [k, &v])?;
        }
        if location == KeyLocation::KeyFile {
            for (name, secret) in [
                (SIGNING_SEED.to_owned(), &secrets.signing_seed),
                (AGREEMENT_SEED.to_owned(), &secrets.agreement_seed),
                (workspace_key_name(secrets.epoch), &secrets.workspace_key),
            ] {
                conn.execute(
                    "INSERT INTO secrets (name, value) VALUES (?1, ?2)",
                    params![name, secret.expose_secret_bytes().as_slice()],
                )?;
            }
        }
        conn.execute("INSERT INTO series_counters (series, last) VALUES (?1, 0)", [series.as_str()])?;
        conn.execute_batch("COMMIT")?;
        let info = WorkspaceInfo {
            workspace_id,
            device_id,
            series: series.clone(),
            data_dir: dir.to_owned(),
            key_location: location.clone(),
            role,
        };
        let mut store = Store::assemble(conn, info, clock);
        let settings = WorkspaceSettings {
            id: workspace_id,
            seller: options.seller,
            devices: vec![DeviceEntry { id: device_id, series, name: options.device_name, added_at: now }],
            created_at: now,
            relays: Vec::new(),
        };
        if existing.is_none() {
            store.create(&settings, "create workspace")?;
            // The workspace's first member: this device, its owner. Everything else in the
            // membership document must trace back to it.
            let agreement = daftar_sync::AgreementKey::from_seed(&secrets.agreement_seed).public_key();
            let recovery_agreement = secrets.recovery.agreement_key().public_key();
            let member = options.member.as_deref().map(str::trim).filter(|m| !m.is_empty()).unwrap_or("owner");
            store.create_membership(member, &device_key.public_key(), &agreement, &recovery_agreement)?;
        }
        // The profile is written last: until it exists, the directory is not a workspace.
        Profile { format: Profile::FORMAT.into(), version: 1, key: location, key_check: key_check(key) }.write(dir)?;
        Ok(store)
    }

    /// A store over an open connection, with empty caches.
    fn assemble(conn: Connection, info: WorkspaceInfo, clock: Arc<dyn Clock>) -> Store {
        Store {
            conn,
            info,
            clock,
            cache: DocCache::default(),
            unflushed: Default::default(),
            egs: Default::default(),
            signer: Default::default(),
        }
    }

    /// Opens an existing data directory, taking its key from wherever `daftar.json` says.
    pub fn open(dir: &Path, unlock: &Unlock, clock: Arc<dyn Clock>) -> Result<Store> {
        Self::open_with(dir, unlock, clock, None)
    }

    /// [`Store::open`], running `before_migration` on the store as it is when its schema is
    /// about to be migrated (the app and the CLI make a backup there). If it fails, nothing is
    /// migrated and the store does not open. What it returns is recorded once migrated.
    pub fn open_with(
        dir: &Path,
        unlock: &Unlock,
        clock: Arc<dyn Clock>,
        before_migration: Option<BeforeMigration<'_>>,
    ) -> Result<Store> {
        let profile = Profile::read(dir)?;
        let dir = database::canonical_dir(dir)?;
        let key = match &profile.key {
            KeyLocation::Keyring { namespace } => keyring_store::load(keyring_store::DATABASE_KEY, namespace)?,
            KeyLocation::KeyFile => {
                let passphrase =
                    unlock.passphrase.as_deref().ok_or_else(|| StoreError::PassphraseNeeded { dir: dir.clone() })?;
                key_file::open(&dir.join(KEY_FILE), passphrase)?
            }
        };
        Self::open_with_key_and(&dir, &key, clock, before_migration)
    }

    /// Opens a data directory with a key the caller already holds (tests, benchmarks, restore).
    pub fn open_with_key(dir: &Path, key: &DatabaseKey, clock: Arc<dyn Clock>) -> Result<Store> {
        Self::open_with_key_and(dir, key, clock, None)
    }

    fn open_with_key_and(
        dir: &Path,
        key: &DatabaseKey,
        clock: Arc<dyn Clock>,
        before_migration: Option<BeforeMigration<'_>>,
    ) -> Result<Store> {
        let profile = Profile::read(dir)?;
        let dir = database::canonical_dir(dir)?;
        if key_check(key) != profile.key_check {
            return Err(StoreError::WrongKey { dir });
        }
        let conn = database::open_connection(&dir, key, false)?;
        let read = |k: &str| -> Result<String> { meta(&conn, k)?.ok_or_else(|| corrupt_meta(&dir, k)) };
        let workspace_id = read("workspace_id")?.parse().map_err(|_| corrupt_meta(&dir, "workspace id"))?;
        let device_id = read("device_id")?.parse().map_err(|_| corrupt_meta(&dir, "device id"))?;
        let series = read("series")?.parse().map_err(|_| corrupt_meta(&dir, "series"))?;
        // Data directories from before roles were recorded were all set up by their owner.
        let role = meta(&conn, "role")?.and_then(|r| Role::parse(&r)).unwrap_or(Role::Owner);
        let info =
            WorkspaceInfo { workspace_id, device_id, series, data_dir: dir.clone(), key_location: profile.key, role };
        let store = Store::assemble(conn, info, clock);
        let version: i64 = store.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > crate::SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew { dir, found: version, supported: crate::SCHEMA_VERSION });
        }
        let mut before = None;
        if version < crate::SCHEMA_VERSION
            && let Some(hook) = before_migration
        {
            before = hook(&store).map_err(|detail| StoreError::MigrationBackupFailed {
                dir: dir.clone(),
                from: version,
                to: crate::SCHEMA_VERSION,
                detail,
            })?;
        }
        crate::schema::migrate(&store.conn, &dir)?;
        let mut store = store;
        if let Some(record) = before {
            store.record_backup(&record)?;
        }
        Ok(store)
    }

    pub fn info(&self) -> &WorkspaceInfo {
        &self.info
    }

    /// `Ok` when this device's role allows `action`; otherwise the refusal, which names the
    /// role it would need.
    pub fn permit(&self, action: Action) -> Result<()> {
        // Test support, in debug builds only: behave like a modified client that skips its own
        // checks, so tests can show that the other devices refuse what it sends.
        #[cfg(debug_assertions)]
        if std::env::var_os("DAFTAR_UNCHECKED_CLIENT").is_some() {
            return Ok(());
        }
        self.info.role.check(action).map_err(|forbidden| {
            // The attempt goes in the audit log (best effort: the refusal stands either way).
            let _ = self.record_refusal(&forbidden);
            StoreError::from(forbidden)
        })
    }

    fn record_refusal(&self, forbidden: &daftar_domain::Forbidden) -> Result<()> {
        let detail = serde_json::json!({
            "role": forbidden.role,
            "action": forbidden.action.describe(),
            "needs": forbidden.action.needs(),
        });
        self.record_event("refused", detail)
    }

    pub(crate) fn secret(&self, name: &str) -> Result<Secret<32>> {
        match &self.info.key_location {
            KeyLocation::Keyring { namespace } => Ok(keyring_store::load(name, namespace)?),
            KeyLocation::KeyFile => {
                let bytes: Vec<u8> = self
                    .conn
                    .query_row("SELECT value FROM secrets WHERE name = ?1", [name], |r| r.get(0))
                    .optional()?
                    .ok_or_else(|| corrupt_meta(&self.info.data_dir, name))?;
                let bytes: [u8; 32] = bytes.try_into().map_err(|_| corrupt_meta(&self.info.data_dir, name))?;
                Ok(Secret::new(bytes))
            }
        }
    }

    /// The public half of the key that signs recovery requests, as the relay will keep it.
    pub fn recovery_public_key(&self) -> Result<[u8; 32]> {
        let text = meta(&self.conn, "recovery_public_key")?
            .ok_or_else(|| corrupt_meta(&self.info.data_dir, "recovery public key"))?;
        hex::decode(text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt_meta(&self.info.data_dir, "recovery public key"))
    }

    /// Replaces the recovery material this device hands to relays with the workspace's own, as
    /// a relay already holding the workspace keeps it. A device that joined an existing workspace
    /// never saw the recovery key, so it starts with placeholder material.
    pub fn set_recovery_material(&mut self, public_key: &[u8; 32], wrapped: &[u8]) -> Result<()> {
        self.write(|tx, _, _| {
            let mut set = tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?;
            set.execute(["recovery_public_key", &hex::encode(public_key)])?;
            set.execute(["recovery_wrapped_workspace_key", &hex::encode(wrapped)])?;
            Ok(())
        })
    }

    /// What a joined device still has to do once approved: the invite's token (to enrol on the
    /// workspace's other relays) and the device's name. `None` once set up.
    pub fn pending_join(&self) -> Result<Option<PendingJoin>> {
        match meta(&self.conn, "pending_join")? {
            None => Ok(None),
            Some(text) => {
                serde_json::from_str(&text).map(Some).map_err(|_| corrupt_meta(&self.info.data_dir, "pending join"))
            }
        }
    }

    pub fn set_pending_join(&mut self, pending: Option<&PendingJoin>) -> Result<()> {
        let text = pending.map(|p| serde_json::to_string(p).expect("serialises"));
        self.write(|tx, _, _| {
            match text {
                Some(text) => {
                    tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('pending_join', ?1)", [text])?
                }
                None => tx.execute("DELETE FROM meta WHERE key = 'pending_join'", [])?,
            };
            Ok(())
        })
    }

    /// The workspace key wrapped by the recovery key, as the relay will keep it.
    pub fn recovery_wrapped_workspace_key(&self) -> Result<Vec<u8>> {
        let text = meta(&self.conn, "recovery_wrapped_workspace_key")?
            .ok_or_else(|| corrupt_meta(&self.info.data_dir, "recovery-wrapped workspace key"))?;
        hex::decode(text).map_err(|_| corrupt_meta(&self.info.data_dir, "recovery-wrapped workspace key"))
    }

    /// This device's Ed25519 key, which signs its envelopes and relay requests.
    pub fn device_signing_key(&self) -> Result<daftar_sync::DeviceSigningKey> {
        Ok(daftar_sync::DeviceSigningKey::from_seed(&self.secret(SIGNING_SEED)?))
    }

    /// The workspace key of `epoch`, which seals envelopes.
    pub fn workspace_key(&self, epoch: u32) -> Result<Secret<32>> {
        self.secret(&workspace_key_name(epoch))
    }

    /// The newest epoch this device holds: new envelopes and backups use its key.
    pub fn current_epoch(&self) -> Result<u32> {
        Ok(meta(&self.conn, "workspace_key_epoch")?.and_then(|e| e.parse().ok()).unwrap_or(1))
    }

    /// Every epoch whose key this device holds, oldest first (a device being set up may hold
    /// keys past its current epoch, not yet checked). Kept in `meta`, so listing them costs no
    /// keyring round trips.
    pub fn epochs(&self) -> Result<Vec<u32>> {
        match meta(&self.conn, "epochs_held")? {
            Some(text) => serde_json::from_str(&text).map_err(|_| corrupt_meta(&self.info.data_dir, "epochs held")),
            // A data directory from before rotation: the epoch it was set up with.
            None => Ok(vec![self.current_epoch()?]),
        }
    }

    /// Keeps the workspace key of `epoch` (received from a rotation, or made by this device's);
    /// with `advance`, moves to it if it is the newest (only keys checked against the
    /// membership document seal new envelopes).
    pub fn add_epoch_key(&mut self, epoch: u32, key: &Secret<32>, advance: bool) -> Result<()> {
        self.put_secret(&workspace_key_name(epoch), key)?;
        let mut held = self.epochs()?;
        if !held.contains(&epoch) {
            held.push(epoch);
            held.sort_unstable();
        }
        let held = serde_json::to_string(&held).expect("a list of numbers serialises");
        self.write(|tx, _, _| {
            tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('epochs_held', ?1)", [held])?;
            Ok(())
        })?;
        if !advance {
            return Ok(());
        }
        self.write(|tx, _, _| {
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'workspace_key_epoch' AND CAST(value AS INTEGER) < ?1",
                [epoch],
            )?;
            Ok(())
        })
    }

    /// The copy of `epoch`'s key only the recovery key opens (`daftar_sync::epoch`), for
    /// backup headers; epoch 1's is [`Store::recovery_wrapped_workspace_key`].
    pub fn recovery_epoch_copy(&self, epoch: u32) -> Result<Option<Vec<u8>>> {
        Ok(meta(&self.conn, &format!("recovery_epoch_{epoch}"))?.and_then(|h| hex::decode(h).ok()))
    }

    pub fn set_recovery_epoch_copy(&mut self, epoch: u32, wrapped: &[u8]) -> Result<()> {
        let key = format!("recovery_epoch_{epoch}");
        self.write(|tx, _, _| {
            tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", [key, hex::encode(wrapped)])?;
            Ok(())
        })
    }

    /// This device's X25519 key for receiving epoch keys. A data directory made before it
    /// existed gets one now.
    pub fn agreement_key(&self) -> Result<daftar_sync::AgreementKey> {
        match self.secret(AGREEMENT_SEED) {
            Ok(seed) => Ok(daftar_sync::AgreementKey::from_seed(&seed)),
            Err(StoreError::Key(daftar_keys::KeyError::KeyMissing { .. }) | StoreError::Corrupt { .. }) => {
                let seed = daftar_keys::generate_secret()?;
                self.put_secret(AGREEMENT_SEED, &seed)?;
                Ok(daftar_sync::AgreementKey::from_seed(&seed))
            }
            Err(e) => Err(e),
        }
    }

    /// Stores a secret where this data directory keeps them (keyring or `secrets`).
    fn put_secret(&self, name: &str, secret: &Secret<32>) -> Result<()> {
        match &self.info.key_location {
            KeyLocation::Keyring { namespace } => Ok(keyring_store::store(name, namespace, secret)?),
            KeyLocation::KeyFile => {
                self.conn.execute(
                    "INSERT OR REPLACE INTO secrets (name, value) VALUES (?1, ?2)",
                    params![name, secret.expose_secret_bytes().as_slice()],
                )?;
                Ok(())
            }
        }
    }

    pub(crate) fn ctx(&self) -> Ctx {
        Ctx { device: self.info.device_id, now: self.clock.now() }
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`): all of it is stored, durably
    /// (`synchronous = FULL`), or none of it. Another process's writer makes this wait up to
    /// [`database::BUSY_TIMEOUT`] and then fail with [`StoreError::Busy`].
    pub(crate) fn write<T>(&mut self, f: impl FnOnce(&Transaction<'_>, Ctx, &DocCache) -> Result<T>) -> Result<T> {
        let ctx = self.ctx();
        let dir = self.info.data_dir.clone();
        let busy = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Busy { dir: dir.clone(), seconds: database::BUSY_TIMEOUT.as_secs() }
            }
            _ => StoreError::Sqlite(e),
        };
        if self.signer.get().is_none() {
            let key = self.device_signing_key()?;
            let _ = self.signer.set(key);
        }
        let signer = self.signer.get().expect("loaded above");
        let result = (|| {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(busy)?;
            let value = f(&tx, ctx, &self.cache)?;
            crate::audit::seal(&tx, signer)?;
            tx.commit().map_err(busy)?;
            Ok(value)
        })();
        let value = result.map_err(|e| self.explain(e))?;
        self.unflushed.set(self.unflushed.get() + 1);
        if self.unflushed.get() >= SEARCH_BATCH {
            // The write is already durable; a failed flush leaves the queue for the next one.
            let _ = self.flush_search();
        }
        Ok(value)
    }

    /// Moves queued search text into the full-text index (done before every search, so search
    /// results always include every committed write).
    pub(crate) fn flush_search(&self) -> Result<usize> {
        self.unflushed.set(0);
        crate::search::flush_queue(&self.conn).map_err(|e| self.explain(StoreError::Sqlite(e)))
    }

    /// The pages of the database file whose authentication code does not verify (SQLCipher
    /// checks every page's HMAC), as SQLCipher describes them.
    pub(crate) fn damaged_pages(&self) -> Result<Vec<String>> {
        let mut statement = self.conn.prepare("PRAGMA cipher_integrity_check")?;
        let rows = statement.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Turns a bare SQLite error into [`StoreError::Corrupt`] when the cause is a damaged file,
    /// so that people are told to restore rather than shown "SQL logic error".
    fn explain(&self, error: StoreError) -> StoreError {
        if let StoreError::Sqlite(_) = &error
            && let Ok(pages) = self.damaged_pages()
            && !pages.is_empty()
        {
            return StoreError::Corrupt { path: self.info.data_dir.join(DATABASE_FILE), detail: pages.join("; ") };
        }
        error
    }

    /// Runs `f` in a read transaction, so that a document's snapshot and change rows are read
    /// from one consistent state even while another process compacts.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let result = (|| {
            let tx = self.conn.unchecked_transaction()?;
            let value = f(&tx)?;
            tx.finish()?;
            Ok(value)
        })();
        result.map_err(|e| self.explain(e))
    }

    /// Stores a new record as a new document.
    pub fn create<R: Record>(&mut self, record: &R, message: &str) -> Result<()> {
        self.permit(editing(R::KIND))?;
        record.validate().into_result()?;
        self.write(|tx, ctx, _| insert_record(tx, record, message, ctx))
    }

    /// The current state of a record.
    pub fn get<R: Record>(&self, id: DocumentId) -> Result<R> {
        self.read(|conn| {
            let (doc, record) = load_record::<R>(conn, &self.cache, id)?;
            self.cache.put(id, doc);
            Ok(record)
        })
    }

    /// Loads, changes and stores a record in one transaction. `f` may refuse by returning an
    /// error, in which case nothing is written. `message` describes the change in history.
    pub(crate) fn update<R: Record, T>(
        &mut self,
        id: DocumentId,
        f: impl FnOnce(&mut R, &Transaction<'_>, Ctx) -> Result<T>,
        message: impl FnOnce(&R) -> String,
    ) -> Result<(R, T)> {
        self.update_with_cache(id, |record, tx, ctx, _| f(record, tx, ctx), message)
    }

    /// [`Store::update`] for changes that read other documents in the same transaction.
    pub(crate) fn update_with_cache<R: Record, T>(
        &mut self,
        id: DocumentId,
        f: impl FnOnce(&mut R, &Transaction<'_>, Ctx, &DocCache) -> Result<T>,
        message: impl FnOnce(&R) -> String,
    ) -> Result<(R, T)> {
        self.write(|tx, ctx, cache| {
            let (mut doc, mut record) = load_record::<R>(tx, cache, id)?;
            let value = f(&mut record, tx, ctx, cache)?;
            record.validate().into_result()?;
            if commit_json(tx, id, &mut doc, &document::to_json_value(&record), &message(&record), ctx)? {
                record.index(tx, SearchWrite::Queue)?;
            }
            cache.put(id, doc);
            Ok((record, value))
        })
    }

    /// Moves a record to the trash.
    pub fn delete<R: Record>(&mut self, id: DocumentId, guard: impl FnOnce(&R) -> Result<()>) -> Result<R> {
        self.permit(if R::KIND == DocKind::Invoice { Action::DeleteDrafts } else { editing(R::KIND) })?;
        self.update(
            id,
            |record: &mut R, _, ctx| {
                if record.tombstone().is_some() {
                    return Err(StoreError::AlreadyDeleted { kind: R::KIND.as_str(), id: id.to_string() });
                }
                guard(record)?;
                record.set_tombstone(Some(Tombstone { by: ctx.device, at: ctx.now }));
                Ok(())
            },
            |_| "delete".to_owned(),
        )
        .map(|(r, ())| r)
    }

    /// Changes a record with `f`, which may refuse by returning an error. Records in the trash
    /// must be restored before they are edited.
    pub fn edit<R: Record>(&mut self, id: DocumentId, f: impl FnOnce(&mut R) -> Result<()>) -> Result<R> {
        self.permit(editing(R::KIND))?;
        self.update(
            id,
            |record: &mut R, _, _| {
                if record.tombstone().is_some() {
                    return Err(StoreError::InTrash { kind: R::KIND.as_str(), id: id.to_string() });
                }
                f(record)
            },
            |_| "edit".to_owned(),
        )
        .map(|(r, ())| r)
    }

    /// Takes a record out of the trash.
    pub fn restore<R: Record>(&mut self, id: DocumentId) -> Result<R> {
        self.permit(Action::RestoreFromTrash)?;
        self.update(
            id,
            |record: &mut R, _, _| {
                if record.tombstone().is_none() {
                    return Err(StoreError::NotDeleted { kind: R::KIND.as_str(), id: id.to_string() });
                }
                record.set_tombstone(None);
                Ok(())
            },
            |_| "restore".to_owned(),
        )
        .map(|(r, ())| r)
    }

    /// Every version of a document, oldest first.
    pub fn history(&self, id: DocumentId) -> Result<Vec<Version>> {
        self.read(|conn| {
            let loaded =
                load_doc(conn, id)?.ok_or_else(|| StoreError::NotFound { kind: "document", id: id.to_string() })?;
            Ok(loaded
                .doc
                .get_changes(&[])
                .iter()
                .enumerate()
                .map(|(i, change)| Version {
                    version: i + 1,
                    hash: change.hash().to_string(),
                    time: DateTime::from_timestamp_millis(change.timestamp()).unwrap_or_default(),
                    device: document::device_of(change.actor_id()),
                    message: change.message().cloned().unwrap_or_default(),
                })
                .collect())
        })
    }

    /// A record as it was at `version` (1-based).
    pub fn get_at<R: Record>(&self, id: DocumentId, version: usize) -> Result<R> {
        self.read(|conn| {
            let (doc, _) = load_record::<R>(conn, &self.cache, id)?;
            let changes = doc.get_changes(&[]);
            if version == 0 || version > changes.len() {
                return Err(StoreError::NoSuchVersion {
                    kind: R::KIND.as_str(),
                    id: id.to_string(),
                    version,
                    count: changes.len(),
                });
            }
            document::read_record(id, &doc, Some(&heads_at(&changes, version)))
        })
    }

    /// Writes a new change that makes the record look as it did at `version`, except for its
    /// trash state. History keeps every version in between.
    pub(crate) fn revert<R: Record>(
        &mut self,
        id: DocumentId,
        version: usize,
        guard: impl FnOnce(&R) -> Result<()>,
    ) -> Result<R> {
        let old: R = self.get_at(id, version)?;
        self.update(
            id,
            |record: &mut R, _, _| {
                guard(record)?;
                let tombstone = record.tombstone().cloned();
                *record = old;
                record.set_tombstone(tombstone);
                Ok(())
            },
            |_| format!("revert to version {version}"),
        )
        .map(|(r, ())| r)
    }

    /// Finds a document of `kind` from what a person typed: a full id, a unique id prefix of
    /// at least 4 characters, or (for invoices) an invoice number.
    pub fn resolve(&self, kind: DocKind, text: &str) -> Result<DocumentId> {
        let text = text.trim();
        let not_found = || StoreError::NotFound { kind: kind.as_str(), id: text.to_owned() };
        if let Ok(uuid) = Uuid::try_parse(text) {
            let id = DocumentId::from_uuid(uuid);
            let exists: Option<String> = self
                .conn
                .query_row("SELECT kind FROM documents WHERE id = ?1", [id.to_string()], |r| r.get(0))
                .optional()?;
            return match exists {
                Some(k) if k == kind.as_str() => Ok(id),
                _ => Err(not_found()),
            };
        }
        if kind == DocKind::Invoice {
            // Numbers are stored upper case (series prefixes are); compare exactly so the
            // partial number index serves the lookup.
            let by_number: Option<String> = self
                .conn
                .query_row("SELECT id FROM invoice_index WHERE number = ?1", [text.to_ascii_uppercase()], |r| r.get(0))
                .optional()?;
            if let Some(id) = by_number {
                return id.parse().map_err(|_| not_found());
            }
        }
        let prefix_ok = text.len() >= 4 && text.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        if !prefix_ok {
            return Err(not_found());
        }
        let mut statement =
            self.conn.prepare_cached("SELECT id FROM documents WHERE kind = ?1 AND id LIKE ?2 || '%' LIMIT 3")?;
        let matches: Vec<String> = statement
            .query_map(params![kind.as_str(), text.to_ascii_lowercase()], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        match matches.as_slice() {
            [one] => one.parse().map_err(|_| not_found()),
            [] => Err(not_found()),
            many => Err(StoreError::Ambiguous { kind: kind.as_str(), prefix: text.to_owned(), count: many.len() }),
        }
    }

    /// The workspace settings (seller profile, devices).
    pub fn settings(&self) -> Result<WorkspaceSettings> {
        self.get(self.info.workspace_id.into())
    }

    /// Changes the seller profile.
    pub fn update_seller(&mut self, f: impl FnOnce(&mut SellerProfile)) -> Result<WorkspaceSettings> {
        self.permit(Action::EditSettings)?;
        let id = self.info.workspace_id.into();
        self.update(
            id,
            |settings: &mut WorkspaceSettings, _, _| {
                f(&mut settings.seller);
                Ok(())
            },
            |_| "edit seller profile".to_owned(),
        )
        .map(|(s, ())| s)
    }
}

impl Store {
    fn update_settings(
        &mut self,
        message: &str,
        f: impl FnOnce(&mut WorkspaceSettings, Ctx) -> bool,
    ) -> Result<WorkspaceSettings> {
        let id = self.info.workspace_id.into();
        self.update(id, |settings: &mut WorkspaceSettings, _, ctx| Ok(f(settings, ctx)), |_| message.to_owned())
            .map(|(s, _)| s)
    }

    /// Names a relay in the workspace settings, so every device adopts it.
    pub fn announce_relay(&mut self, url: &str) -> Result<WorkspaceSettings> {
        self.update_settings("add relay", |settings, _| {
            let new = !settings.relays.iter().any(|r| r == url);
            if new {
                settings.relays.push(url.to_owned());
            }
            new
        })
    }

    /// Removes a relay from the workspace settings.
    pub fn withdraw_relay(&mut self, url: &str) -> Result<WorkspaceSettings> {
        self.permit(Action::ManageDevices)?;
        self.update_settings("remove relay", |settings, _| {
            let before = settings.relays.len();
            settings.relays.retain(|r| r != url);
            settings.relays.len() != before
        })
    }

    /// Adds this device (its id, series and `name`) to the workspace's device list, for a device
    /// that joined or recovered an existing workspace. Nothing happens if it is listed.
    pub fn list_this_device(&mut self, name: &str) -> Result<WorkspaceSettings> {
        let (id, series) = (self.info.device_id, self.info.series.clone());
        self.update_settings(&format!("join as {name}"), |settings, ctx| {
            let new = !settings.devices.iter().any(|d| d.id == id);
            if new {
                settings.devices.push(DeviceEntry { id, series, name: name.to_owned(), added_at: ctx.now });
            }
            new
        })
    }
}

/// Loads a document and deserialises it as `R`, refusing documents of another kind.
pub(crate) fn load_record<R: Record>(conn: &Connection, cache: &DocCache, id: DocumentId) -> Result<(Automerge, R)> {
    let not_found = || StoreError::NotFound { kind: R::KIND.as_str(), id: id.to_string() };
    let loaded = cache.take(conn, id)?.ok_or_else(not_found)?;
    if loaded.kind != R::KIND {
        cache.put(id, loaded.doc);
        return Err(not_found());
    }
    let record = document::read_record(id, &loaded.doc, None)?;
    Ok((loaded.doc, record))
}

/// Inserts a new document holding `record`, its first change, and its index rows.
pub(crate) fn insert_record<R: Record>(conn: &Connection, record: &R, message: &str, ctx: Ctx) -> Result<()> {
    let doc = build_document(record, message, ctx)?;
    insert_document(conn, record.document_id(), R::KIND, &doc, ctx)?;
    record.index(conn, SearchWrite::Queue)?;
    Ok(())
}

/// Builds a new document holding `record` as its first change, without touching the database.
pub(crate) fn build_document<R: Record>(record: &R, message: &str, ctx: Ctx) -> Result<Automerge> {
    let id = record.document_id();
    let mut doc = Automerge::new();
    doc.set_actor(actor_for(ctx.device));
    let options = CommitOptions::default().with_message(message.to_owned()).with_time(ctx.now.timestamp_millis());
    let json = document::to_json_value(record);
    doc.transact_with(|_| options, |tx| document::fill_root(tx, &json))
        .map_err(|failure| StoreError::Document { id, detail: failure.error.to_string() })?;
    Ok(doc)
}
