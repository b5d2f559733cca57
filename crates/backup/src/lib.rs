//! Backups: portable, encrypted, verified snapshots of a workspace, and the three ways back
//! from one (a new data directory, a CRDT merge into the live store, a revert of what changed
//! since).
//!
//! - **What a backup holds**: every document (its compacted save and change rows, so history
//!   included) as of one consistent read of the store — the same snapshot parts a relay
//!   bootstrap uses — plus a header naming the workspace, device, time, counts and a digest of
//!   every document's heads ([`file`] has the byte layout).
//! - **Its key** is derived from the workspace key, which every device of the workspace holds,
//!   and the header carries that workspace key wrapped by the recovery key exactly as the relay
//!   keeps it. So any device of the workspace backs up and restores with what is in its
//!   keyring, and a new machine needs only the file and the recovery key. ARCHITECTURE.md says
//!   why this rather than a key only the first device could derive.
//! - **Checked**: after writing, the file is read back in full, every chunk authenticated,
//!   every document loaded and read, and the counts and heads digest recomputed and compared
//!   with the header. Restores run the same check on the whole file before they write anything.
//! - **Pruned** by age buckets; the newest verified backup is never removed.

mod drill;
mod file;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Local, SecondsFormat, Timelike, Utc};
use daftar_domain::{DeviceId, DocumentId, Series, WorkspaceId};
use daftar_keys::Secret;
use daftar_store::{
    BackupCounts, BackupRecord, DocKind, ExistingWorkspace, HeadsDigest, InitOptions, KeyChoice, PreparedSnapshot,
    RevertFilter, RevertOutcome, Store, StoreError, SystemClock, Taken,
};
use daftar_sync::RecoveryKey;
use daftar_sync::snapshot::{self, PartHeader};
use serde::Serialize;

pub use drill::{DrillReport, PathReport, drill};
pub use file::{FORMAT, Header, KeyInfo, Reader, Writer, read_header};

/// What backup files end with.
pub const EXTENSION: &str = "daftar-backup";
/// Documents per snapshot part in a backup body.
const PART_DOCUMENTS: usize = 512;
/// A part longer than this is damage, not data.
const MAX_PART: usize = 1 << 30;
/// A `.partial` file this old belongs to a backup that was killed, not to one being written.
const STALE_PARTIAL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// A backup could not be made, read or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0} is not a Daftar backup (it does not start with DAFTARBK)")]
    NotABackup(String),
    #[error("{path} is a backup of format {found}; this Daftar reads format {FORMAT} — update Daftar to restore it")]
    UnsupportedFormat { path: String, found: u16 },
    #[error("{path} is cut short ({detail}): the file is incomplete; use another backup")]
    Truncated { path: String, detail: String },
    #[error("{path}: its header is damaged ({detail}); use another backup")]
    BadHeader { path: String, detail: String },
    #[error(
        "{path}: chunk {chunk} does not decrypt: the file was altered or damaged after it was written; use another backup"
    )]
    Tampered { path: String, chunk: u64 },
    #[error("{path}: the backup's contents are damaged ({detail}); use another backup")]
    Damaged { path: String, detail: String },
    #[error("{path}: the backup does not hold what its header says ({detail}); use another backup")]
    Mismatch { path: String, detail: String },
    #[error(
        "{path} is a backup of workspace {backup}, but this data directory holds workspace {ours}; restore it with --into a new directory and its --recovery-key"
    )]
    WrongWorkspace { path: String, backup: String, ours: String },
    #[error(
        "the recovery key does not open {path}: it is another workspace's recovery key (or the backup's header was altered); check the key against the printed copy"
    )]
    WrongRecoveryKey { path: String },
    #[error("{0} is not empty; restore into a new directory")]
    TargetNotEmpty(String),
    #[error("no randomness available")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sync(#[from] daftar_sync_driver::SyncError),
}

impl BackupError {
    /// A short, stable code for `--json` errors and the app.
    pub fn code(&self) -> &'static str {
        match self {
            BackupError::Io { .. } => "io",
            BackupError::NotABackup(_) | BackupError::UnsupportedFormat { .. } => "not_a_backup",
            BackupError::Truncated { .. }
            | BackupError::BadHeader { .. }
            | BackupError::Tampered { .. }
            | BackupError::Damaged { .. }
            | BackupError::Mismatch { .. } => "damaged_backup",
            BackupError::WrongWorkspace { .. } => "wrong_workspace",
            BackupError::WrongRecoveryKey { .. } => "wrong_key",
            BackupError::TargetNotEmpty(_) => "invalid",
            BackupError::Random => "io",
            BackupError::Store(e) => e.code(),
            BackupError::Sync(daftar_sync_driver::SyncError::Store(e)) => e.code(),
            BackupError::Sync(_) => "sync",
        }
    }
}

struct Len32;
impl ring::hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// The workspace's backup key: HKDF of its workspace key, bound to the workspace id. Each file
/// then has its own key derived from this and a random salt.
pub fn backup_key(workspace_key: &Secret<32>, workspace: WorkspaceId) -> Secret<32> {
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"daftar backup key v1")
        .extract(workspace_key.expose_secret_bytes());
    let info = [workspace.as_bytes().as_slice()];
    let okm = prk.expand(&info, Len32).expect("32 bytes is a valid length");
    let mut key = [0u8; 32];
    okm.fill(&mut key).expect("32 bytes fill");
    Secret::new(key)
}

/// What opens a backup: the keyring of a device of its workspace, or the recovery key.
#[derive(Debug, Clone, Copy)]
pub enum Unlock<'a> {
    Store(&'a Store),
    RecoveryKey(&'a RecoveryKey),
}

fn workspace_of(header: &Header, path: &Path) -> Result<WorkspaceId, BackupError> {
    header.workspace.parse().map_err(|_| BackupError::BadHeader {
        path: path.display().to_string(),
        detail: format!("it names workspace {:?}", header.workspace),
    })
}

/// The workspace key that opens the backup at `path`.
fn workspace_key_for(header: &Header, path: &Path, unlock: Unlock<'_>) -> Result<Secret<32>, BackupError> {
    let workspace = workspace_of(header, path)?;
    match unlock {
        Unlock::Store(store) => {
            let ours = store.info().workspace_id;
            if ours != workspace {
                return Err(BackupError::WrongWorkspace {
                    path: path.display().to_string(),
                    backup: workspace.to_string(),
                    ours: ours.to_string(),
                });
            }
            Ok(store.workspace_key(header.key.epoch)?)
        }
        Unlock::RecoveryKey(recovery) => {
            let wrapped =
                file::unhex(&header.key.recovery_wrapped_workspace_key).ok_or_else(|| BackupError::BadHeader {
                    path: path.display().to_string(),
                    detail: "its wrapped workspace key is not hex".into(),
                })?;
            // Epoch 1's copy is the one made at `init`; later epochs' are wrapped for the
            // recovery key's agreement key (`daftar_sync::epoch`).
            let opened = match header.key.epoch {
                1 => recovery.unwrap_workspace_key(workspace, &wrapped).ok(),
                epoch => {
                    recovery.agreement_key().open(workspace, epoch, daftar_sync::epoch::RECOVERY_HOLDER, &wrapped).ok()
                }
            };
            opened.ok_or_else(|| BackupError::WrongRecoveryKey { path: path.display().to_string() })
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.display().to_string(), source }
}

/// A backup as `daftar backup list --json` and `create --json` print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct BackupInfo {
    pub file: String,
    pub created_at: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub bytes: u64,
    pub workspace: String,
    pub device: String,
    pub device_name: String,
    /// What made it (`manual`, `schedule`, `exit`, `migration`), for this device's backups.
    pub reason: Option<String>,
    pub counts: BackupCounts,
    /// Whether its last full check passed; `null` when this device never checked it.
    pub verified: Option<bool>,
    pub verified_at: Option<String>,
    /// What the last check found wrong.
    pub problem: Option<String>,
}

fn rfc3339(millis: i64) -> String {
    DateTime::from_timestamp_millis(millis).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn info_of(path: &Path, header: &Header, bytes: u64, record: Option<&BackupRecord>) -> BackupInfo {
    BackupInfo {
        file: path.display().to_string(),
        created_at: header.created_at.clone(),
        bytes,
        workspace: header.workspace.clone(),
        device: header.device.clone(),
        device_name: header.device_name.clone(),
        reason: record.map(|r| r.reason.clone()),
        counts: header.counts,
        verified: record.and_then(|r| r.verified),
        verified_at: record.and_then(|r| r.verified_at).map(rfc3339),
        problem: record.and_then(|r| r.problem.clone()),
    }
}

/// Where this device's backups go: its setting, or `backups` beside the database.
pub fn backup_dir(store: &Store) -> Result<PathBuf, BackupError> {
    Ok(store.backup_settings()?.dir.unwrap_or_else(|| store.info().data_dir.join("backups")))
}

/// Makes a backup of the whole store into the backup folder (or `to`), checks it in full,
/// records the result and prunes old backups. A backup that fails its check is recorded as
/// failed and returned as an error.
pub fn create(store: &mut Store, reason: &str, to: Option<&Path>) -> Result<BackupInfo, BackupError> {
    let result = create_checked(store, reason, to);
    let failure = result.as_ref().err().map(ToString::to_string);
    store.record_backup_attempt(failure.as_deref())?;
    result
}

fn create_checked(store: &mut Store, reason: &str, to: Option<&Path>) -> Result<BackupInfo, BackupError> {
    let dir = match to {
        Some(dir) => dir.to_owned(),
        None => backup_dir(store)?,
    };
    let (record, header) = write_backup(store, reason, &dir)?;
    store.record_backup(&record)?;
    let problem = check(&record.file, Unlock::Store(store)).err();
    store.record_backup_check(&record.file, problem.as_ref().map(ToString::to_string).as_deref())?;
    if let Some(problem) = problem {
        return Err(problem);
    }
    prune(store)?;
    store.record_event(
        "backup",
        serde_json::json!({ "file": record.file, "reason": reason, "counts": record.counts }),
    )?;
    let record = store.backup_records()?.into_iter().find(|r| r.file == record.file).unwrap_or(record);
    Ok(info_of(&record.file, &header, record.bytes, Some(&record)))
}

/// The backup made before a schema migration (see `Store::open_with`): written and checked
/// in full with the store as it is, into the backup folder — or, when that cannot be written
/// (a drive unplugged), into `backups` in the data directory. The store records it once
/// migrated.
pub fn before_migration(store: &Store) -> Result<Option<BackupRecord>, String> {
    let attempt = |dir: &Path| -> Result<BackupRecord, BackupError> {
        let (mut record, _) = write_backup(store, "migration", dir)?;
        if let Err(problem) = check(&record.file, Unlock::Store(store)) {
            let _ = std::fs::remove_file(&record.file);
            return Err(problem);
        }
        record.verified = Some(true);
        record.verified_at = Some(Utc::now().timestamp_millis());
        Ok(record)
    };
    let fallback = store.info().data_dir.join("backups");
    let configured = backup_dir(store).unwrap_or_else(|_| fallback.clone());
    match attempt(&configured) {
        Ok(record) => Ok(Some(record)),
        Err(_) if configured != fallback => attempt(&fallback).map(Some).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Writes a backup of the store as it is now into `dir`: one consistent read, streamed.
fn write_backup(store: &Store, reason: &str, dir: &Path) -> Result<(BackupRecord, Header), BackupError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    sweep_partials(dir);
    let info = store.info().clone();
    let now = Utc::now();
    let created_at = now.timestamp_millis();
    let name = format!(
        "daftar-{}-{}-{}.{EXTENSION}",
        &info.workspace_id.to_string()[..8],
        now.format("%Y%m%dT%H%M%S%3fZ"),
        &info.device_id.to_string()[..8]
    );
    let path = dir.join(name);
    // The newest epoch: a device revoked since an older one cannot open new backups either.
    let epoch = store.current_epoch()?;
    let key = backup_key(&store.workspace_key(epoch)?, info.workspace_id);
    let recovery_wrapped = if epoch == 1 {
        store.recovery_wrapped_workspace_key()?
    } else {
        store.recovery_epoch_copy(epoch)?.ok_or_else(|| {
            BackupError::Store(StoreError::NotFound {
                kind: "recovery copy of the workspace key of epoch",
                id: epoch.to_string(),
            })
        })?
    };
    let device_name = store
        .settings()
        .ok()
        .and_then(|s| s.devices.into_iter().find(|d| d.id == info.device_id).map(|d| d.name))
        .unwrap_or_default();
    let read = store.consistent_read()?;
    let manifest = read.manifest()?;
    let parts = manifest.ids.len().div_ceil(PART_DOCUMENTS).max(1);
    let header = Header {
        workspace: info.workspace_id.to_string(),
        device: info.device_id.to_string(),
        device_name,
        created_at: rfc3339(created_at),
        app_version: env!("CARGO_PKG_VERSION").to_owned(),
        counts: manifest.counts,
        heads_digest: manifest.heads_digest.clone(),
        parts: parts as u32,
        key: KeyInfo {
            epoch,
            recovery_wrapped_workspace_key: hex::encode(recovery_wrapped),
            recovery_public_key: hex::encode(store.recovery_public_key()?),
        },
        salt: String::new(),
        nonce_prefix: String::new(),
    };
    let (mut writer, header) = Writer::create(&path, header, &key)?;
    let id: [u8; 16] = *uuid::Uuid::new_v4().as_bytes();
    let mut batches: Vec<&[DocumentId]> = manifest.ids.chunks(PART_DOCUMENTS).collect();
    if batches.is_empty() {
        batches.push(&[]);
    }
    for (index, ids) in batches.iter().enumerate() {
        let documents = read.documents(ids)?;
        let part = snapshot::encode_part(
            &PartHeader { snapshot: id, seq: 0, part: index as u32, parts: parts as u32 },
            &documents,
        );
        writer.write(&(part.len() as u32).to_be_bytes())?;
        writer.write(&part)?;
    }
    let bytes = writer.finish()?;
    drop(read);
    let record = BackupRecord {
        file: path,
        created_at,
        bytes,
        reason: reason.to_owned(),
        counts: header.counts,
        heads_digest: header.heads_digest.clone(),
        verified: None,
        verified_at: None,
        problem: None,
    };
    Ok((record, header))
}

/// Removes `.partial` files left by backups that were killed.
fn sweep_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_PARTIAL);
        if name.starts_with('.') && name.ends_with(&format!(".{EXTENSION}.partial")) && stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// What a full check of a backup found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub file: String,
    pub created_at: String,
    pub counts: BackupCounts,
    /// Documents whose record could not be read (still waiting for changes from another
    /// device when the backup was made); they are kept and restored as they are.
    pub incomplete: u64,
}

/// Reads the whole backup: authenticates every chunk, loads and reads every document,
/// recomputes the counts and heads digest and compares them with the header.
pub fn check(path: &Path, unlock: Unlock<'_>) -> Result<CheckReport, BackupError> {
    let key = key_of(path, unlock)?;
    read_parts(path, &key, |_| Ok(()))
}

/// The backup key that opens the backup at `path`.
fn key_of(path: &Path, unlock: Unlock<'_>) -> Result<Secret<32>, BackupError> {
    let header = read_header(path)?;
    let workspace_key = workspace_key_for(&header, path, unlock)?;
    Ok(backup_key(&workspace_key, workspace_of(&header, path)?))
}

/// Runs `each` on every part of the backup, in order, after checking it, and checks the whole.
/// The reading thread decrypts; parts are decoded and their documents loaded on worker threads
/// (loading is most of the work); at most a few parts are in memory at once, whatever the
/// backup's size.
fn read_parts(
    path: &Path,
    key: &Secret<32>,
    mut each: impl FnMut(PreparedSnapshot) -> Result<(), BackupError>,
) -> Result<CheckReport, BackupError> {
    let name = path.display().to_string();
    let (header, mut reader) = Reader::open(path, key)?;
    let damaged = |detail: String| BackupError::Damaged { path: name.clone(), detail };
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
    let mut tally = Tally::default();
    std::thread::scope(|scope| -> Result<(), BackupError> {
        type Job = (u32, Vec<u8>);
        type Done = (u32, Result<(PartHeader, PreparedSnapshot), String>);
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(workers);
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        let (finished, results) = std::sync::mpsc::channel::<Done>();
        for _ in 0..workers {
            let (queue, finished) = (queue.clone(), finished.clone());
            scope.spawn(move || {
                loop {
                    let job = queue.lock().map(|q| q.recv());
                    let Ok(Ok((index, bytes))) = job else { return };
                    let result = snapshot::unpack(&bytes).map_err(|e| format!("part {index}: {e}")).and_then(
                        |(part, documents)| {
                            daftar_store::prepare_snapshot(documents, None)
                                .map(|p| (part, p))
                                .map_err(|e| e.to_string())
                        },
                    );
                    if finished.send((index, result)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(finished);
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0u32;
        let mut take_in = |done: Done, waiting: &mut std::collections::BTreeMap<u32, _>, next: &mut u32| {
            waiting.insert(done.0, done.1);
            while let Some(result) = waiting.remove(next) {
                let (part, prepared) = result.map_err(&damaged)?;
                tally.part(&header, *next, part, &prepared).map_err(&damaged)?;
                each(prepared)?;
                *next += 1;
            }
            Ok::<(), BackupError>(())
        };
        for index in 0..header.parts {
            let length = u32::from_be_bytes(reader.take(4)?.try_into().expect("4 bytes")) as usize;
            if length > MAX_PART {
                return Err(damaged(format!("part {index} claims {length} bytes")));
            }
            let bytes = reader.take(length)?;
            // Keep a bounded window of parts in flight.
            while index - next >= 2 * workers as u32 {
                let done = results.recv().map_err(|_| damaged("a worker stopped".into()))?;
                take_in(done, &mut waiting, &mut next)?;
            }
            jobs.send((index, bytes)).map_err(|_| damaged("a worker stopped".into()))?;
        }
        drop(jobs);
        while next < header.parts {
            let done = results.recv().map_err(|_| damaged("a worker stopped".into()))?;
            take_in(done, &mut waiting, &mut next)?;
        }
        Ok(())
    })?;
    if !reader.at_end()? {
        return Err(damaged("there is data after the last part".into()));
    }
    if tally.counts != header.counts {
        return Err(BackupError::Mismatch {
            path: name,
            detail: format!("the header counts {:?}, the body holds {:?}", header.counts, tally.counts),
        });
    }
    if tally.digest.finish() != header.heads_digest {
        return Err(BackupError::Mismatch {
            path: name,
            detail: "the documents' versions differ from the header's digest".into(),
        });
    }
    Ok(CheckReport { file: name, created_at: header.created_at, counts: tally.counts, incomplete: tally.incomplete })
}

/// What the parts read so far add up to.
#[derive(Debug, Default)]
struct Tally {
    counts: BackupCounts,
    digest: HeadsDigest,
    incomplete: u64,
    first: Option<PartHeader>,
    previous: Option<DocumentId>,
}

impl Tally {
    /// Checks part `index` against the header and the parts before it, and adds it up.
    fn part(
        &mut self,
        header: &Header,
        index: u32,
        part: PartHeader,
        prepared: &PreparedSnapshot,
    ) -> Result<(), String> {
        match &self.first {
            None if part.part != 0 || part.parts != header.parts => {
                return Err(format!("part 0 says it is part {} of {}", part.part, part.parts));
            }
            None => self.first = Some(part),
            Some(first) => snapshot::check_part(first, index, &part).map_err(|e| e.to_string())?,
        }
        for summary in prepared.summaries() {
            if self.previous.is_some_and(|p| p.as_uuid() >= summary.id.as_uuid()) {
                return Err(format!("document {} is out of order or repeated", summary.id));
            }
            self.previous = Some(summary.id);
            self.digest.add(summary.id, summary.kind, &summary.heads);
            self.counts.add(summary.kind);
            self.incomplete += u64::from(!summary.readable);
        }
        Ok(())
    }
}

/// Checks `path` and records the result if this device made it.
pub fn verify(store: &mut Store, path: &Path, recovery: Option<&RecoveryKey>) -> Result<CheckReport, BackupError> {
    let unlock = match recovery {
        Some(key) => Unlock::RecoveryKey(key),
        None => Unlock::Store(store),
    };
    let result = check(path, unlock);
    let problem = result.as_ref().err().map(ToString::to_string);
    if !matches!(result, Err(BackupError::WrongRecoveryKey { .. } | BackupError::WrongWorkspace { .. })) {
        store.record_backup_check(path, problem.as_deref())?;
    }
    result
}

/// Every backup of this workspace in the backup folder, and every one this device recorded
/// elsewhere that still exists, newest first.
pub fn list(store: &Store) -> Result<Vec<BackupInfo>, BackupError> {
    let dir = backup_dir(store)?;
    let records = store.backup_records()?;
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                !name.starts_with('.') && name.ends_with(&format!(".{EXTENSION}"))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(&dir)(e)),
    };
    for record in &records {
        if !files.contains(&record.file) && record.file.exists() {
            files.push(record.file.clone());
        }
    }
    let workspace = store.info().workspace_id.to_string();
    let mut out = Vec::new();
    for path in files {
        let record = records.iter().find(|r| r.file == path);
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match read_header(&path) {
            Ok(header) if header.workspace == workspace => out.push(info_of(&path, &header, bytes, record)),
            Ok(_) => {}
            Err(e) => {
                // Named like a backup but not readable as one: show it, failed.
                out.push(BackupInfo {
                    file: path.display().to_string(),
                    created_at: record.map(|r| rfc3339(r.created_at)).unwrap_or_default(),
                    bytes,
                    workspace: workspace.clone(),
                    device: String::new(),
                    device_name: String::new(),
                    reason: record.map(|r| r.reason.clone()),
                    counts: BackupCounts::default(),
                    verified: Some(false),
                    verified_at: None,
                    problem: Some(e.to_string()),
                })
            }
        }
    }
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.file.cmp(&a.file)));
    Ok(out)
}

/// Which of `times` (newest first) the retention keeps: the newest `last`, and the newest in
/// each of the newest `hourly` hours, `daily` days and `monthly` months (local time) that have
/// one.
pub fn keep(times: &[DateTime<Local>], retention: daftar_store::Retention) -> Vec<bool> {
    let mut kept: Vec<bool> = (0..times.len()).map(|i| i < retention.last as usize).collect();
    /// A backup's hour, day or month.
    type Bucket = fn(&DateTime<Local>) -> (i32, u32, u32, u32);
    let rules: [(u32, Bucket); 3] = [
        (retention.hourly, |t| (t.year(), t.month(), t.day(), t.hour())),
        (retention.daily, |t| (t.year(), t.month(), t.day(), 0)),
        (retention.monthly, |t| (t.year(), t.month(), 0, 0)),
    ];
    for (count, bucket) in rules {
        let mut seen = HashSet::new();
        for (index, time) in times.iter().enumerate() {
            if seen.len() as u32 >= count {
                break;
            }
            if seen.insert(bucket(time)) {
                kept[index] = true;
            }
        }
    }
    kept
}

/// Removes this device's backups that the retention does not keep. Only verified backups
/// count towards the buckets; one that failed or was never checked goes once a newer verified
/// backup exists. The newest verified backup always stays. Returns the files removed.
pub fn prune(store: &mut Store) -> Result<Vec<PathBuf>, BackupError> {
    let retention = store.backup_settings()?.keep;
    let device = store.info().device_id.to_string();
    let mine: Vec<BackupInfo> = list(store)?.into_iter().filter(|b| b.device == device).collect();
    let verified: Vec<&BackupInfo> = mine.iter().filter(|b| b.verified == Some(true)).collect();
    let Some(newest_verified) = verified.first().map(|b| b.created_at.clone()) else { return Ok(Vec::new()) };
    let times: Vec<DateTime<Local>> = verified
        .iter()
        .map(|b| DateTime::parse_from_rfc3339(&b.created_at).map(|t| t.with_timezone(&Local)).unwrap_or_default())
        .collect();
    let mut kept = keep(&times, retention);
    kept[0] = true;
    let mut removed = Vec::new();
    let keep_files: HashSet<&str> =
        verified.iter().zip(&kept).filter(|(_, k)| **k).map(|(b, _)| b.file.as_str()).collect();
    for backup in &mine {
        let unverified_but_newer = backup.verified != Some(true) && backup.created_at > newest_verified;
        if keep_files.contains(backup.file.as_str()) || unverified_but_newer {
            continue;
        }
        let path = PathBuf::from(&backup.file);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        store.forget_backup(&path)?;
        removed.push(path);
    }
    Ok(removed)
}

/// Where backups stand, for the settings screen (`BackupStatus` in the app).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct BackupStatus {
    pub dir: String,
    pub keep: daftar_store::Retention,
    /// Minutes between automatic backups while the app runs; 0: off.
    pub every_minutes: u32,
    /// This workspace's backups, newest first.
    pub backups: Vec<BackupInfo>,
    /// This device's newest backup.
    pub last: Option<BackupInfo>,
    /// What needs attention, if anything.
    pub warning: Option<BackupWarning>,
    /// The last drill.
    pub last_drill: Option<DrillSummary>,
}

/// What the settings screen warns about (the UI words it in the person's language).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BackupWarning {
    /// No verified backup exists.
    NoBackup,
    /// The last attempt to make a backup failed (a folder unreachable, a disk full).
    AttemptFailed { at: String, message: String },
    /// This device's newest backup failed its check.
    CheckFailed { problem: String },
    /// The backup folder cannot be read (a drive unplugged, a share offline).
    FolderUnreadable { message: String },
    /// The newest verified backup is this many hours old.
    Stale {
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        hours: i64,
    },
}

/// The last drill, for the settings screen.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct DrillSummary {
    pub at: String,
    pub ok: bool,
    pub backup: DrillPathSummary,
    pub relay: DrillPathSummary,
}

/// One path of the last drill, in brief.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct DrillPathSummary {
    pub ok: bool,
    /// `no_relay` or `no_recovery_key` when the path was not tried.
    pub skipped: Option<String>,
    pub error: Option<String>,
    pub recovery_point: Option<String>,
    pub seconds: f64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub documents: u64,
    /// Documents of the live store the path did not bring back or brought back older.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub differing: u64,
}

impl DrillPathSummary {
    fn of(report: &serde_json::Value) -> Self {
        let count = |name: &str| report[name].as_array().map_or(0, |a| a.len() as u64);
        DrillPathSummary {
            ok: report["ok"].as_bool().unwrap_or(false),
            skipped: report["skipped_code"].as_str().map(str::to_owned),
            error: report["error"].as_str().map(str::to_owned),
            recovery_point: report["recovery_point"].as_str().map(str::to_owned),
            seconds: report["seconds"].as_f64().unwrap_or_default(),
            documents: report["documents"].as_u64().unwrap_or_default(),
            differing: count("missing") + count("differs"),
        }
    }
}

/// How old the newest verified backup may be before the settings screen warns.
const STALE_AFTER_HOURS: i64 = 24;

/// Where backups stand.
pub fn status(store: &Store) -> Result<BackupStatus, BackupError> {
    let settings = store.backup_settings()?;
    let (backups, unreadable) = match list(store) {
        Ok(backups) => (backups, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let device = store.info().device_id.to_string();
    let last = backups.iter().find(|b| b.device == device).cloned();
    let newest_verified = backups.iter().find(|b| b.verified == Some(true));
    let warning = if let Some((at, message)) = store.backup_failure()? {
        Some(BackupWarning::AttemptFailed { at: rfc3339(at), message })
    } else if let Some(message) = unreadable {
        Some(BackupWarning::FolderUnreadable { message })
    } else if let Some(last) = last.as_ref().filter(|b| b.verified == Some(false)) {
        Some(BackupWarning::CheckFailed { problem: last.problem.clone().unwrap_or_default() })
    } else {
        match newest_verified {
            None => Some(BackupWarning::NoBackup),
            Some(b) => {
                let hours = DateTime::parse_from_rfc3339(&b.created_at)
                    .map(|t| Utc::now().signed_duration_since(t.with_timezone(&Utc)).num_hours())
                    .unwrap_or(i64::MAX);
                (hours >= STALE_AFTER_HOURS).then_some(BackupWarning::Stale { hours })
            }
        }
    };
    let last_drill = store.last_drill()?.map(|d| DrillSummary {
        at: rfc3339(d.at),
        ok: d.ok,
        backup: DrillPathSummary::of(&d.report["backup"]),
        relay: DrillPathSummary::of(&d.report["relay"]),
    });
    Ok(BackupStatus {
        dir: backup_dir(store)?.display().to_string(),
        keep: settings.keep,
        every_minutes: settings.every_minutes,
        backups,
        last,
        warning,
        last_drill,
    })
}

/// Whether the app's schedule calls for a backup now: automatic backups are on and this
/// device's newest backup (or failed attempt) is at least the interval old.
pub fn due(store: &Store, now: DateTime<Utc>) -> Result<bool, BackupError> {
    let settings = store.backup_settings()?;
    if settings.every_minutes == 0 {
        return Ok(false);
    }
    let newest = store.backup_records()?.into_iter().map(|r| r.created_at).max();
    let last_attempt = newest.max(store.backup_failure()?.map(|(at, _)| at));
    Ok(match last_attempt {
        None => true,
        Some(at) => now.timestamp_millis() - at >= i64::from(settings.every_minutes) * 60_000,
    })
}

/// Whether anything changed since this device's newest backup (a backup on exit is skipped
/// when nothing did).
pub fn changed_since_last(store: &Store) -> Result<bool, BackupError> {
    let Some(newest) = store.backup_records()?.into_iter().find(|r| r.verified == Some(true)) else {
        return Ok(true);
    };
    let read = store.consistent_read()?;
    Ok(read.manifest()?.heads_digest != newest.heads_digest)
}

/// A restore into a new data directory.
#[derive(Debug)]
pub struct RestoredInto {
    pub store: Store,
    pub check: CheckReport,
}

/// Restores `path` as a complete workspace in the new data directory `dir`, as a new device
/// of the workspace (its own id, signing key and invoice series `B…`). `live` opens it on a
/// device of the workspace; `recovery` on any machine. The backup is checked in full first,
/// and the new store is compared with the backup's header afterwards.
pub fn restore_into(
    path: &Path,
    dir: &Path,
    recovery: Option<&RecoveryKey>,
    live: Option<&Store>,
    key_choice: KeyChoice,
) -> Result<RestoredInto, BackupError> {
    if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(BackupError::TargetNotEmpty(dir.display().to_string()));
    }
    let header = read_header(path)?;
    let unlock = match (recovery, live) {
        (Some(key), _) => Unlock::RecoveryKey(key),
        (None, Some(store)) => Unlock::Store(store),
        (None, None) => return Err(BackupError::WrongRecoveryKey { path: path.display().to_string() }),
    };
    let checked = check(path, unlock)?;
    let unlock_is_keyring = matches!(unlock, Unlock::Store(_));
    let workspace_key = workspace_key_for(&header, path, unlock)?;
    let workspace = workspace_of(&header, path)?;
    let device = DeviceId::from_uuid(uuid::Uuid::now_v7());
    // Set-up needs a recovery key to wrap the workspace key with; the workspace's own recovery
    // material replaces what it makes below.
    let recovery = RecoveryKey::generate().map_err(|_| BackupError::Random)?;
    let existing = ExistingWorkspace {
        workspace_id: workspace,
        device_id: device,
        workspace_key,
        epoch: header.key.epoch,
        agreement_seed: daftar_keys::generate_secret().map_err(StoreError::from)?,
        signing_seed: daftar_keys::generate_secret().map_err(StoreError::from)?,
        recovery,
        // Whoever holds the recovery key holds the workspace; a device of the workspace keeps
        // its own role.
        role: live.filter(|_| unlock_is_keyring).map_or(daftar_domain::Role::Owner, |s| s.info().role),
    };
    let series = Series::for_device('B', device).expect("B and four hex digits is a valid series");
    let existed = dir.exists();
    let (mut store, _) = Store::init(
        dir,
        InitOptions {
            seller: Default::default(),
            series: Some(series),
            key: key_choice,
            device_name: "restored from backup".into(),
            member: None,
            existing: Some(existing),
        },
        std::sync::Arc::new(SystemClock),
    )?;
    let result = (|| {
        let bad = |what: &str| BackupError::BadHeader { path: path.display().to_string(), detail: what.into() };
        let public: [u8; 32] = file::unhex(&header.key.recovery_public_key)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("its recovery public key is not 32 bytes of hex"))?;
        let wrapped =
            file::unhex(&header.key.recovery_wrapped_workspace_key).ok_or_else(|| bad("its wrapped key is not hex"))?;
        store.set_recovery_material(&public, &wrapped)?;
        let key = key_of(path, Unlock::Store(&store))?;
        read_parts(path, &key, |part| {
            store.take_in(&part)?;
            Ok(())
        })?;
        let read = store.consistent_read()?;
        let manifest = read.manifest()?;
        drop(read);
        if manifest.heads_digest != header.heads_digest || manifest.counts != header.counts {
            return Err(BackupError::Mismatch {
                path: path.display().to_string(),
                detail: "the restored store does not hold the backup's documents at the backup's versions".into(),
            });
        }
        Ok(())
    })();
    if let Err(e) = result {
        drop(store);
        if existed {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
        return Err(e);
    }
    Ok(RestoredInto { store, check: checked })
}

/// One document a restore touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Touched {
    pub id: String,
    pub kind: &'static str,
}

/// What `restore --merge` did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct MergeReport {
    /// Documents the live store lacked (purged, lost): back, with their history.
    pub brought_back: Vec<Touched>,
    /// Documents that gained changes the live store lacked.
    pub merged: Vec<Touched>,
    pub unchanged: u64,
}

fn unlock_for<'a>(store: &'a Store, recovery: Option<&'a RecoveryKey>) -> Unlock<'a> {
    match recovery {
        Some(key) => Unlock::RecoveryKey(key),
        None => Unlock::Store(store),
    }
}

fn check_workspace(store: &Store, path: &Path) -> Result<(), BackupError> {
    let header = read_header(path)?;
    let ours = store.info().workspace_id;
    if workspace_of(&header, path)? != ours {
        return Err(BackupError::WrongWorkspace {
            path: path.display().to_string(),
            backup: header.workspace,
            ours: ours.to_string(),
        });
    }
    Ok(())
}

/// Checks the whole backup first — a damaged one writes nothing — then reads it again and
/// hands each part to `apply` with the store.
fn apply_parts(
    store: &mut Store,
    path: &Path,
    recovery: Option<&RecoveryKey>,
    mut apply: impl FnMut(&mut Store, PreparedSnapshot) -> Result<(), BackupError>,
) -> Result<CheckReport, BackupError> {
    store.permit(daftar_domain::Action::RestoreBackups)?;
    check_workspace(store, path)?;
    let key = key_of(path, unlock_for(store, recovery))?;
    read_parts(path, &key, |_| Ok(()))?;
    read_parts(path, &key, |part| apply(store, part))
}

/// Merges every document of the backup into the live store as CRDT merges: what the store
/// lacks comes back, nothing newer is overwritten.
pub fn merge(store: &mut Store, path: &Path, recovery: Option<&RecoveryKey>) -> Result<MergeReport, BackupError> {
    let mut report = MergeReport::default();
    apply_parts(store, path, recovery, |store, part| {
        let kinds: Vec<DocKind> = part.summaries().map(|s| s.kind).collect();
        for ((id, taken), kind) in store.take_in(&part)?.into_iter().zip(kinds) {
            let touched = Touched { id: id.to_string(), kind: kind.as_str() };
            match taken {
                Taken::Added => report.brought_back.push(touched),
                Taken::Merged => report.merged.push(touched),
                Taken::Unchanged => report.unchanged += 1,
            }
        }
        Ok(())
    })?;
    store.record_event(
        "restore from backup (merge)",
        serde_json::json!({ "file": path, "brought_back": report.brought_back.len(), "merged": report.merged.len() }),
    )?;
    Ok(report)
}

/// One document `restore --revert-to-backup` could not turn back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    pub id: String,
    pub kind: &'static str,
    pub reason: String,
}

/// What `restore --revert-to-backup` did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RevertReport {
    pub brought_back: Vec<Touched>,
    pub reverted: Vec<Touched>,
    pub refused: Vec<Refused>,
    pub unchanged: u64,
    pub not_selected: u64,
}

/// Turns documents that changed since the backup back to their state in it, as new changes
/// that sync like any edit (see `Store::revert_to_backup`).
pub fn revert(
    store: &mut Store,
    path: &Path,
    recovery: Option<&RecoveryKey>,
    filter: &RevertFilter,
) -> Result<RevertReport, BackupError> {
    let header = read_header(path)?;
    let when = DateTime::parse_from_rfc3339(&header.created_at)
        .map(|t| t.with_timezone(&Utc).format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or(header.created_at.clone());
    let label = format!("revert to backup of {when}");
    let mut report = RevertReport::default();
    apply_parts(store, path, recovery, |store, part| {
        for (id, kind, outcome) in store.revert_to_backup(&part, filter, &label)? {
            let touched = Touched { id: id.to_string(), kind: kind.as_str() };
            match outcome {
                RevertOutcome::BroughtBack => report.brought_back.push(touched),
                RevertOutcome::Reverted => report.reverted.push(touched),
                RevertOutcome::Unchanged => report.unchanged += 1,
                RevertOutcome::NotSelected => report.not_selected += 1,
                RevertOutcome::Refused { reason } => {
                    report.refused.push(Refused { id: touched.id, kind: touched.kind, reason })
                }
            }
        }
        Ok(())
    })?;
    store.record_event(
        "restore from backup (revert)",
        serde_json::json!({
            "file": path,
            "reverted": report.reverted.len(),
            "brought_back": report.brought_back.len(),
            "refused": report.refused.len(),
            "only_deleted": filter.only_deleted,
        }),
    )?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32, hour: u32, minute: u32) -> DateTime<Local> {
        Local.with_ymd_and_hms(2026, 11, day, hour, minute, 0).unwrap()
    }

    #[test]
    fn retention_keeps_the_newest_of_each_bucket() {
        // Newest first: three in the 10 o'clock hour, one at 9, one the day before, one a month
        // before.
        let times = [at(30, 10, 50), at(30, 10, 20), at(30, 10, 5), at(30, 9, 0), at(29, 23, 0), at(1, 1, 0)];
        let keep = |last, hourly, daily, monthly| {
            super::keep(&times, daftar_store::Retention { last, hourly, daily, monthly })
        };
        assert_eq!(keep(0, 24, 0, 0), [true, false, false, true, true, true]);
        assert_eq!(keep(0, 2, 0, 0), [true, false, false, true, false, false]);
        assert_eq!(keep(0, 0, 2, 0), [true, false, false, false, true, false]);
        assert_eq!(keep(0, 0, 0, 12), [true, false, false, false, false, false], "1 Nov is this month too");
        assert_eq!(keep(3, 0, 0, 0), [true, true, true, false, false, false]);
        assert_eq!(keep(0, 0, 0, 0), [false; 6], "prune itself always keeps the newest verified");
    }

    #[test]
    fn the_backup_key_is_bound_to_the_workspace() {
        let key = Secret::new([9u8; 32]);
        let one = WorkspaceId::from_uuid(uuid::Uuid::from_u128(1));
        let two = WorkspaceId::from_uuid(uuid::Uuid::from_u128(2));
        assert_ne!(backup_key(&key, one).expose_secret_bytes(), backup_key(&key, two).expose_secret_bytes());
        assert_ne!(backup_key(&key, one).expose_secret_bytes(), key.expose_secret_bytes());
    }
}
