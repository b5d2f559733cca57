//! The store's side of backups (the file format, keys and restore paths are in
//! `daftar-backup`): one consistent read of every document, the record of each backup made and
//! checked, this device's backup settings, and turning documents back to their state in a
//! backup as new changes.

use std::collections::HashSet;
use std::path::PathBuf;

use daftar_domain::{Customer, DocumentId, Invoice, Item};
use daftar_sync::snapshot::SnapshotDocument;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::bootstrap::{Indexable, PreparedDocument, PreparedSnapshot, documents_as_stored};
use crate::document;
use crate::error::{Result, StoreError};
use crate::records::{DocKind, Record, SearchWrite};
use crate::store::{Ctx, DocCache, Store, commit_json, load_record};

/// How many documents of each kind a backup holds (deleted ones included: the trash is part of
/// the workspace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct BackupCounts {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub documents: u64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub invoices: u64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub customers: u64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub items: u64,
}

impl BackupCounts {
    pub fn add(&mut self, kind: DocKind) {
        self.documents += 1;
        match kind {
            DocKind::Invoice => self.invoices += 1,
            DocKind::Customer => self.customers += 1,
            DocKind::Item => self.items += 1,
            DocKind::Settings | DocKind::Membership | DocKind::Events => {}
        }
    }
}

/// SHA-256 over every document id and its sorted heads, in id order: one value that says
/// "exactly these documents at exactly these versions". A backup's header carries it; checking
/// the backup recomputes it from the documents it actually loads. Devices' events documents are
/// left out: making a backup records an event, and "has anything changed since the last
/// backup" must not count that.
#[derive(Clone)]
pub struct HeadsDigest(ring::digest::Context);

impl std::fmt::Debug for HeadsDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeadsDigest")
    }
}

impl Default for HeadsDigest {
    fn default() -> Self {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(b"daftar heads digest v1");
        Self(context)
    }
}

impl HeadsDigest {
    /// Adds one document of `kind`; `heads` must be sorted.
    pub fn add(&mut self, id: DocumentId, kind: DocKind, heads: &[[u8; 32]]) {
        if kind == DocKind::Events {
            return;
        }
        self.0.update(id.as_uuid().as_bytes());
        self.0.update(&(heads.len() as u32).to_be_bytes());
        for head in heads {
            self.0.update(head);
        }
    }

    pub fn finish(self) -> String {
        hex::encode(self.0.finish())
    }
}

/// What a consistent read holds, before any document is read.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Every document id, in id order.
    pub ids: Vec<DocumentId>,
    /// Each document's heads, sorted, in the same order.
    pub heads: Vec<Vec<[u8; 32]>>,
    /// Each document's kind, in the same order.
    pub kinds: Vec<DocKind>,
    pub counts: BackupCounts,
    pub heads_digest: String,
}

/// A read transaction over the whole store: everything read through it comes from one
/// committed state, while other writers (the app, a sync) carry on in WAL mode.
#[allow(missing_debug_implementations)] // a transaction has nothing worth showing
pub struct ConsistentRead<'a> {
    tx: rusqlite::Transaction<'a>,
    store: &'a Store,
}

impl Store {
    /// Starts a consistent read. Hold it only as long as needed: the WAL cannot be
    /// checkpointed past it meanwhile.
    pub fn consistent_read(&self) -> Result<ConsistentRead<'_>> {
        let tx = self.conn.unchecked_transaction()?;
        Ok(ConsistentRead { tx, store: self })
    }
}

impl ConsistentRead<'_> {
    /// Every document id, the counts and the heads digest.
    pub fn manifest(&self) -> Result<Manifest> {
        let mut statement = self.tx.prepare("SELECT id, kind, heads FROM documents ORDER BY id")?;
        let rows = statement
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Vec<u8>>(2)?)))?;
        let (mut ids, mut all_heads, mut kinds) = (Vec::new(), Vec::new(), Vec::new());
        let (mut counts, mut digest) = (BackupCounts::default(), HeadsDigest::default());
        let corrupt = |detail: String| StoreError::Corrupt { path: self.store.info.data_dir.clone(), detail };
        for row in rows {
            let (id, kind, heads) = row?;
            let id: DocumentId = id.parse().map_err(|_| corrupt(format!("a document row names {id:?}")))?;
            let kind = DocKind::parse(&kind).ok_or_else(|| corrupt(format!("document {id} has kind {kind:?}")))?;
            let mut heads: Vec<[u8; 32]> = document::decode_heads(&heads).iter().map(|h| h.0).collect();
            heads.sort_unstable();
            digest.add(id, kind, &heads);
            counts.add(kind);
            ids.push(id);
            all_heads.push(heads);
            kinds.push(kind);
        }
        Ok(Manifest { ids, heads: all_heads, kinds, counts, heads_digest: digest.finish() })
    }

    /// The documents `ids` as stored.
    pub fn documents(&self, ids: &[DocumentId]) -> Result<Vec<SnapshotDocument>> {
        documents_as_stored(&self.tx, ids)
    }
}

/// How many backups to keep (restic's `--keep-last/-hourly/-daily/-monthly`): the newest
/// `last`, and the newest backup in each of the newest N hours, days and months that have one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Retention {
    #[serde(default)]
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub monthly: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self { last: 0, hourly: 24, daily: 14, monthly: 12 }
    }
}

/// This device's backup settings (they stay on the device: each machine has its own drives).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BackupSettings {
    /// Where backups go; `None` means the default folder beside the data directory's database.
    pub dir: Option<PathBuf>,
    pub keep: Retention,
    /// Minutes between automatic backups while the app runs; 0 turns the schedule off.
    pub every_minutes: u32,
}

/// A backup this device made, and the last check of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupRecord {
    pub file: PathBuf,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub bytes: u64,
    /// What made it: `manual`, `schedule`, `exit`, `migration`.
    pub reason: String,
    pub counts: BackupCounts,
    pub heads_digest: String,
    /// `None` until checked; then whether the last check passed.
    pub verified: Option<bool>,
    pub verified_at: Option<i64>,
    /// What the last check found wrong.
    pub problem: Option<String>,
}

/// The last disaster-recovery drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRecord {
    pub at: i64,
    pub ok: bool,
    /// The drill's report, as JSON.
    pub report: serde_json::Value,
}

const DEFAULT_EVERY_MINUTES: u32 = 60;

impl Store {
    pub fn backup_settings(&self) -> Result<BackupSettings> {
        let value: Option<String> =
            self.conn.query_row("SELECT value FROM meta WHERE key = 'backup_settings'", [], |r| r.get(0)).optional()?;
        match value {
            None => Ok(BackupSettings { every_minutes: DEFAULT_EVERY_MINUTES, ..Default::default() }),
            Some(text) => serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                path: self.info.data_dir.clone(),
                detail: format!("the backup settings do not read: {e}"),
            }),
        }
    }

    pub fn set_backup_settings(&mut self, settings: &BackupSettings) -> Result<()> {
        let text = serde_json::to_string(settings).expect("settings serialise");
        self.write(|tx, _, _| {
            tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('backup_settings', ?1)", [text])?;
            Ok(())
        })
    }

    /// Records a backup just written (before it is checked).
    pub fn record_backup(&mut self, record: &BackupRecord) -> Result<()> {
        let counts = serde_json::to_string(&record.counts).expect("counts serialise");
        self.write(|tx, _, _| {
            tx.execute(
                "INSERT OR REPLACE INTO backups (file, created_at, bytes, reason, counts, heads_digest, verified,
                                                 verified_at, problem)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    record.file.to_string_lossy(),
                    record.created_at,
                    record.bytes as i64,
                    record.reason,
                    counts,
                    record.heads_digest,
                    record.verified,
                    record.verified_at,
                    record.problem
                ],
            )?;
            Ok(())
        })
    }

    /// Records the result of checking a backup this device made; a file it did not make is
    /// not recorded (returns false).
    pub fn record_backup_check(&mut self, file: &std::path::Path, problem: Option<&str>) -> Result<bool> {
        self.write(|tx, ctx, _| {
            let changed = tx.execute(
                "UPDATE backups SET verified = ?2, verified_at = ?3, problem = ?4 WHERE file = ?1",
                params![file.to_string_lossy(), problem.is_none(), ctx.now.timestamp_millis(), problem],
            )?;
            Ok(changed > 0)
        })
    }

    /// Forgets a backup that was pruned or that no longer exists.
    pub fn forget_backup(&mut self, file: &std::path::Path) -> Result<()> {
        self.write(|tx, _, _| {
            tx.execute("DELETE FROM backups WHERE file = ?1", [file.to_string_lossy()])?;
            Ok(())
        })
    }

    /// Every backup this device made, newest first.
    pub fn backup_records(&self) -> Result<Vec<BackupRecord>> {
        let mut statement = self.conn.prepare(
            "SELECT file, created_at, bytes, reason, counts, heads_digest, verified, verified_at, problem
             FROM backups ORDER BY created_at DESC, file DESC",
        )?;
        let rows = statement.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<bool>>(6)?,
                r.get::<_, Option<i64>>(7)?,
                r.get::<_, Option<String>>(8)?,
            ))
        })?;
        rows.map(|row| {
            let (file, created_at, bytes, reason, counts, heads_digest, verified, verified_at, problem) = row?;
            let counts = serde_json::from_str(&counts).map_err(|e| StoreError::Corrupt {
                path: self.info.data_dir.clone(),
                detail: format!("the record of backup {file} does not read: {e}"),
            })?;
            Ok(BackupRecord {
                file: file.into(),
                created_at,
                bytes: bytes as u64,
                reason,
                counts,
                heads_digest,
                verified,
                verified_at,
                problem,
            })
        })
        .collect()
    }

    /// Records why the last attempt to make a backup failed (`None`: it succeeded), for the
    /// settings screen's warning: a failed attempt may leave no file to show.
    pub fn record_backup_attempt(&mut self, failure: Option<&str>) -> Result<()> {
        self.write(|tx, ctx, _| {
            match failure {
                None => tx.execute("DELETE FROM meta WHERE key = 'backup_failure'", [])?,
                Some(message) => {
                    let value = serde_json::json!({ "at": ctx.now.timestamp_millis(), "message": message }).to_string();
                    tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('backup_failure', ?1)", [value])?
                }
            };
            Ok(())
        })
    }

    /// When and why the last attempt to make a backup failed, if it did.
    pub fn backup_failure(&self) -> Result<Option<(i64, String)>> {
        let value: Option<String> =
            self.conn.query_row("SELECT value FROM meta WHERE key = 'backup_failure'", [], |r| r.get(0)).optional()?;
        Ok(value
            .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
            .map(|v| (v["at"].as_i64().unwrap_or_default(), v["message"].as_str().unwrap_or_default().to_owned())))
    }

    pub fn record_drill(&mut self, drill: &DrillRecord) -> Result<()> {
        let report = drill.report.to_string();
        self.write(|tx, _, _| {
            tx.execute("INSERT INTO drills (at, ok, report) VALUES (?1, ?2, ?3)", params![drill.at, drill.ok, report])?;
            Ok(())
        })
    }

    pub fn last_drill(&self) -> Result<Option<DrillRecord>> {
        let row: Option<(i64, bool, String)> = self
            .conn
            .query_row("SELECT at, ok, report FROM drills ORDER BY id DESC LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        Ok(row.map(|(at, ok, report)| DrillRecord {
            at,
            ok,
            report: serde_json::from_str(&report).unwrap_or(serde_json::Value::String(report)),
        }))
    }
}

/// Which documents a revert to a backup touches.
#[derive(Debug, Clone, Default)]
pub struct RevertFilter {
    /// Only documents that are in the trash (or purged) now but were not in the backup.
    pub only_deleted: bool,
    /// Only these documents.
    pub only: Option<HashSet<DocumentId>>,
}

/// What reverting one document to its state in a backup did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RevertOutcome {
    /// The store no longer had it (purged or lost): it is back, with its whole history.
    BroughtBack,
    /// A new change made it equal to the backup's version.
    Reverted,
    /// It has not changed since the backup.
    Unchanged,
    /// Left out by `--only-deleted` or `--only`.
    NotSelected,
    /// It changed, but cannot be turned back; `reason` says why and what to do instead.
    Refused { reason: String },
}

impl Store {
    /// Turns every document of a backup part that changed since the backup back to the
    /// backup's state, as new changes (history keeps both; the revert syncs like any edit).
    /// Each document is merged with the backup first, so nothing the live store lacked is
    /// lost either. Workspace settings (devices, relays, seller) are not reverted. Issued
    /// invoices are permanent: one issued since the backup is refused, with the way out.
    pub fn revert_to_backup(
        &mut self,
        part: &PreparedSnapshot,
        filter: &RevertFilter,
        label: &str,
    ) -> Result<Vec<(DocumentId, DocKind, RevertOutcome)>> {
        let mut outcomes = Vec::with_capacity(part.documents.len());
        for p in &part.documents {
            let id = p.source.document;
            if filter.only.as_ref().is_some_and(|only| !only.contains(&id))
                || matches!(p.kind, DocKind::Settings | DocKind::Membership | DocKind::Events)
            {
                outcomes.push((id, p.kind, RevertOutcome::NotSelected));
                continue;
            }
            let outcome = self.write(|tx, ctx, cache| revert_one(tx, ctx, cache, p, filter, label))?;
            outcomes.push((id, p.kind, outcome));
        }
        Ok(outcomes)
    }
}

fn revert_one(
    tx: &rusqlite::Transaction<'_>,
    ctx: Ctx,
    cache: &DocCache,
    p: &PreparedDocument,
    filter: &RevertFilter,
    label: &str,
) -> Result<RevertOutcome> {
    let known: Option<String> = tx
        .prepare_cached("SELECT kind FROM documents WHERE id = ?1")?
        .query_row([p.source.document.to_string()], |r| r.get(0))
        .optional()?;
    if known.is_none() {
        // Purged or lost since the backup: that counts as deleted.
        crate::bootstrap::insert_prepared(tx, ctx, p)?;
        return Ok(RevertOutcome::BroughtBack);
    }
    crate::bootstrap::merge_prepared(tx, ctx, cache, p)?;
    match &p.record {
        Some(Indexable::Invoice(backup)) => {
            revert_record::<Invoice>(tx, ctx, cache, &**backup, filter, label, |now, then| {
                if now.is_issued() {
                    let number = now.number.clone().unwrap_or_default();
                    return Err(if then.is_issued() {
                        format!(
                            "invoice {number} is issued; issued invoices are permanent — record or correct payments on it"
                        )
                    } else {
                        format!("invoice {number} was issued after the backup; cancel it with a credit note instead")
                    });
                }
                Ok(())
            })
        }
        Some(Indexable::Customer(backup)) => {
            revert_record::<Customer>(tx, ctx, cache, &**backup, filter, label, |_, _| Ok(()))
        }
        Some(Indexable::Item(backup)) => revert_record::<Item>(tx, ctx, cache, &**backup, filter, label, |_, _| Ok(())),
        // The backup's copy is still waiting for changes it never had: nothing to revert to.
        None => Ok(RevertOutcome::Unchanged),
    }
}

fn revert_record<R: Record>(
    tx: &rusqlite::Transaction<'_>,
    ctx: Ctx,
    cache: &DocCache,
    backup: &R,
    filter: &RevertFilter,
    label: &str,
    allowed: impl FnOnce(&R, &R) -> std::result::Result<(), String>,
) -> Result<RevertOutcome> {
    let id = backup.document_id();
    let (mut doc, live) = load_record::<R>(tx, cache, id)?;
    let wanted = document::to_json_value(backup);
    if document::to_json_value(&live) == wanted {
        cache.put(id, doc);
        return Ok(RevertOutcome::Unchanged);
    }
    if filter.only_deleted && !(live.tombstone().is_some() && backup.tombstone().is_none()) {
        cache.put(id, doc);
        return Ok(RevertOutcome::NotSelected);
    }
    if let Err(reason) = allowed(&live, backup) {
        cache.put(id, doc);
        return Ok(RevertOutcome::Refused { reason });
    }
    if commit_json(tx, id, &mut doc, &wanted, label, ctx)? {
        backup.index(tx, SearchWrite::Queue)?;
    }
    cache.put(id, doc);
    Ok(RevertOutcome::Reverted)
}
