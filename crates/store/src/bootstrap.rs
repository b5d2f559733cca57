//! The store's side of snapshots for fast bootstrap: reading every document as stored (its
//! compacted save and its change rows, queued ones included), and taking such documents in.

use automerge::{Automerge, Change, ReadDoc};
use daftar_domain::{Customer, DeviceId, DocumentId, Invoice, Item};
use daftar_sync::snapshot::{SnapshotChange, SnapshotDocument};
use rusqlite::{OptionalExtension, params};

use crate::document;
use crate::error::{Result, StoreError};
use crate::exchange::{IncomingChange, apply_one};
use crate::records::{DocKind, Record, SearchWrite};
use crate::store::{Store, insert_document_row, stored_bytes};

impl Store {
    /// Every document id with the size it takes in a snapshot, in id order: enough to cut a
    /// snapshot into parts before reading any content.
    pub fn snapshot_plan(&self) -> Result<Vec<(DocumentId, usize)>> {
        self.read(|conn| {
            let mut statement = conn.prepare(
                "SELECT d.id,
                        coalesce((SELECT length(bytes) FROM snapshots WHERE doc_id = d.id), 0),
                        coalesce((SELECT sum(20 + length(bytes)) FROM changes WHERE doc_id = d.id), 0)
                 FROM documents d ORDER BY d.id",
            )?;
            let rows =
                statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
            let mut plan = Vec::new();
            for row in rows {
                let (id, saved, changes) = row?;
                plan.push((self.parse_document_id(&id)?, 25 + saved as usize + changes as usize));
            }
            Ok(plan)
        })
    }

    fn parse_document_id(&self, id: &str) -> Result<DocumentId> {
        id.parse().map_err(|_| StoreError::Corrupt {
            path: self.info.data_dir.clone(),
            detail: format!("a document row names {id:?}"),
        })
    }

    /// The documents `ids` as stored, for a snapshot part.
    pub fn snapshot_documents(&self, ids: &[DocumentId]) -> Result<Vec<SnapshotDocument>> {
        self.read(|conn| documents_as_stored(conn, ids))
    }

    /// Takes in a prepared snapshot part, in one transaction. A document this store lacks is
    /// stored as it came (its save and change rows) and indexed; one it has already is merged
    /// change by change, so nothing here is overwritten. Returns the number of documents taken
    /// in.
    pub fn import_snapshot(&mut self, part: PreparedSnapshot) -> Result<usize> {
        Ok(self.take_in(&part)?.len())
    }

    /// [`Store::import_snapshot`], saying for each document whether it was new here, gained
    /// changes, or held nothing this store did not have.
    pub fn take_in(&mut self, part: &PreparedSnapshot) -> Result<Vec<(DocumentId, Taken)>> {
        self.write(|tx, ctx, cache| {
            let mut taken = Vec::with_capacity(part.documents.len());
            for p in &part.documents {
                let known: Option<String> = tx
                    .prepare_cached("SELECT kind FROM documents WHERE id = ?1")?
                    .query_row([p.source.document.to_string()], |r| r.get(0))
                    .optional()?;
                let outcome = if known.is_some() {
                    merge_prepared(tx, ctx, cache, p)?
                } else {
                    insert_prepared(tx, ctx, p)?;
                    Taken::Added
                };
                taken.push((p.source.document, outcome));
            }
            Ok(taken)
        })
    }
}

/// What taking in one document did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// The store did not have the document.
    Added,
    /// The store had it and gained changes.
    Merged,
    /// The store already had every change.
    Unchanged,
}

/// Merges a document the store has: every change of the save and every row that the stored
/// document lacks, through the ordinary path for received changes.
pub(crate) fn merge_prepared(
    tx: &rusqlite::Transaction<'_>,
    ctx: crate::store::Ctx,
    cache: &crate::store::DocCache,
    p: &PreparedDocument,
) -> Result<Taken> {
    let d = &p.source;
    // The common case, a document unchanged since the backup: same heads, nothing to load.
    let stored: Option<Vec<u8>> = tx
        .prepare_cached("SELECT heads FROM documents WHERE id = ?1")?
        .query_row([d.document.to_string()], |r| r.get(0))
        .optional()?;
    if let Some(stored) = stored {
        let mut stored = document::decode_heads(&stored);
        let mut theirs = p.heads.clone();
        stored.sort_unstable();
        theirs.sort_unstable();
        if stored == theirs {
            return Ok(Taken::Unchanged);
        }
    }
    let have = crate::store::load_doc(tx, d.document)?
        .ok_or_else(|| StoreError::NotFound { kind: "document", id: d.document.to_string() })?
        .doc;
    let mut all: Vec<(DeviceId, Vec<u8>)> = Vec::new();
    if let Some(bytes) = &d.saved {
        let saved = Automerge::load(bytes)
            .map_err(|e| StoreError::Document { id: d.document, detail: format!("its save does not load: {e}") })?;
        for change in saved.get_changes(&[]) {
            if have.get_change_by_hash(&change.hash()).is_none() {
                let device = document::device_of(change.actor_id()).unwrap_or(ctx.device);
                all.push((device, stored_bytes(change)));
            }
        }
    }
    for (row, (hash, _, _)) in d.changes.iter().zip(&p.changes) {
        if have.get_change_by_hash(hash).is_none() {
            all.push((row.device, row.bytes.clone()));
        }
    }
    let mut gained = false;
    for (sender, bytes) in &all {
        let incoming =
            IncomingChange { document: d.document, kind: p.kind, sender: *sender, bytes, role: None, sender_key: None };
        // Taken as it is (see `IncomingChange::role`): nothing to judge by.
        gained |= apply_one(tx, ctx, cache, &incoming, None)?;
    }
    Ok(if gained { Taken::Merged } else { Taken::Unchanged })
}

/// Stores a document the store lacks as it came: its save, its change rows, its index rows.
pub(crate) fn insert_prepared(
    tx: &rusqlite::Transaction<'_>,
    ctx: crate::store::Ctx,
    p: &PreparedDocument,
) -> Result<()> {
    let d = &p.source;
    let key = d.document.to_string();
    insert_document_row(tx, d.document, p.kind, &p.heads, ctx)?;
    if let Some(bytes) = &d.saved {
        tx.prepare_cached(
            "INSERT INTO snapshots (doc_id, bytes, heads, change_count, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            key,
            bytes,
            document::encode_heads(&p.saved_heads),
            p.saved_count as i64,
            ctx.now.timestamp_millis()
        ])?;
    }
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO changes (doc_id, hash, bytes, device, time, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (row, (hash, time, message)) in d.changes.iter().zip(&p.changes) {
        insert.execute(params![key, hash.0.as_slice(), row.bytes, row.device.to_string(), time, message])?;
    }
    // A document whose dependencies are still missing is indexed when they arrive.
    match &p.record {
        Some(Indexable::Invoice(r)) => r.index(tx, SearchWrite::Direct)?,
        Some(Indexable::Customer(r)) => r.index(tx, SearchWrite::Direct)?,
        Some(Indexable::Item(r)) => r.index(tx, SearchWrite::Direct)?,
        None => {}
    }
    Ok(())
}

/// The documents `ids` as stored (a compacted save and the change rows beside it), read on
/// `conn` — inside whatever transaction the caller holds. A document purged meanwhile is left
/// out.
pub(crate) fn documents_as_stored(conn: &rusqlite::Connection, ids: &[DocumentId]) -> Result<Vec<SnapshotDocument>> {
    let mut kind_of = conn.prepare_cached("SELECT kind FROM documents WHERE id = ?1")?;
    let mut saved_of = conn.prepare_cached("SELECT bytes FROM snapshots WHERE doc_id = ?1")?;
    let mut changes_of = conn.prepare_cached("SELECT device, bytes FROM changes WHERE doc_id = ?1 ORDER BY seq")?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let key = id.to_string();
        // A document purged since the plan is simply left out.
        let Some(kind) = kind_of.query_row([&key], |r| r.get::<_, String>(0)).optional()? else { continue };
        let kind = DocKind::parse(&kind)
            .ok_or_else(|| StoreError::Document { id: *id, detail: format!("unknown kind {kind:?}") })?;
        let saved: Option<Vec<u8>> = saved_of.query_row([&key], |r| r.get(0)).optional()?;
        let changes = changes_of
            .query_map([&key], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))?
            .map(|row| {
                let (device, bytes) = row?;
                let device: DeviceId = device.parse().map_err(|_| StoreError::Document {
                    id: *id,
                    detail: format!("a change row names device {device:?}"),
                })?;
                Ok(SnapshotChange { device, bytes })
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(SnapshotDocument { document: *id, kind: kind.code(), saved, changes });
    }
    Ok(out)
}

/// A record read from a snapshot document, ready for the index.
#[derive(Debug)]
pub(crate) enum Indexable {
    Invoice(Box<Invoice>),
    Customer(Box<Customer>),
    Item(Box<Item>),
}

#[derive(Debug)]
pub(crate) struct PreparedDocument {
    pub(crate) source: SnapshotDocument,
    pub(crate) kind: DocKind,
    pub(crate) heads: Vec<automerge::ChangeHash>,
    pub(crate) saved_heads: Vec<automerge::ChangeHash>,
    pub(crate) saved_count: usize,
    /// Hash, time and message of each change row.
    pub(crate) changes: Vec<(automerge::ChangeHash, i64, Option<String>)>,
    pub(crate) record: Option<Indexable>,
    /// The time of its newest change, in milliseconds.
    pub(crate) newest: i64,
}

/// A snapshot part decoded, loaded and read, ready for [`Store::import_snapshot`]. Preparing
/// needs no store, so a bootstrap prepares the next part on another core while the store takes
/// in this one.
#[derive(Debug)]
pub struct PreparedSnapshot {
    pub(crate) documents: Vec<PreparedDocument>,
}

/// What a prepared document is, for checking a backup against its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedSummary {
    pub id: DocumentId,
    pub kind: DocKind,
    /// The document's heads after loading its save and every change, sorted.
    pub heads: Vec<[u8; 32]>,
    /// Whether the record could be read (a document still waiting for changes cannot).
    pub readable: bool,
    /// When its newest change was made (milliseconds since the epoch; 0 for none).
    pub newest: i64,
}

impl PreparedSnapshot {
    /// Each document of the part, in the part's order.
    pub fn summaries(&self) -> impl Iterator<Item = PreparedSummary> + '_ {
        self.documents.iter().map(|p| {
            let mut heads: Vec<[u8; 32]> = p.heads.iter().map(|h| h.0).collect();
            heads.sort_unstable();
            PreparedSummary {
                id: p.source.document,
                kind: p.kind,
                heads,
                readable: p.record.is_some(),
                newest: p.newest,
            }
        })
    }

    pub fn len(&self) -> usize {
        self.documents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }
}

/// Decodes and loads every document of a snapshot part and reads its record. A document that
/// does not load refuses the whole part: the bootstrap then falls back to the log.
pub fn prepare_snapshot(documents: Vec<SnapshotDocument>) -> Result<PreparedSnapshot> {
    let documents = documents
        .into_iter()
        .map(|d| {
            let broken = |detail: String| StoreError::Document { id: d.document, detail };
            let kind = DocKind::from_code(d.kind).ok_or_else(|| broken(format!("unknown kind code {}", d.kind)))?;
            let mut doc = match &d.saved {
                Some(bytes) => Automerge::load(bytes).map_err(|e| broken(format!("its save does not load: {e}")))?,
                None => Automerge::new(),
            };
            let (saved_heads, saved_count) = (doc.get_heads(), doc.get_changes(&[]).len());
            let changes = d
                .changes
                .iter()
                .map(|c| {
                    Change::from_bytes(c.bytes.clone()).map_err(|e| broken(format!("a change does not decode: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            let rows = changes.iter().map(|c| (c.hash(), c.timestamp(), c.message().cloned())).collect();
            doc.apply_changes(changes).map_err(|e| broken(format!("changes do not apply: {e}")))?;
            let record = match kind {
                DocKind::Settings | DocKind::Membership | DocKind::Events => None,
                DocKind::Invoice => read::<Invoice>(d.document, &doc).map(|r| Indexable::Invoice(Box::new(r))),
                DocKind::Customer => read::<Customer>(d.document, &doc).map(|r| Indexable::Customer(Box::new(r))),
                DocKind::Item => read::<Item>(d.document, &doc).map(|r| Indexable::Item(Box::new(r))),
            };
            let newest = doc.get_changes(&[]).iter().map(|c| c.timestamp()).max().unwrap_or(0);
            Ok(PreparedDocument {
                newest,
                heads: doc.get_heads(),
                source: d,
                kind,
                saved_heads,
                saved_count,
                changes: rows,
                record,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(PreparedSnapshot { documents })
}

/// The record, or `None` while its dependencies are missing.
fn read<R: Record>(id: DocumentId, doc: &Automerge) -> Option<R> {
    document::read_record(id, doc, None).ok()
}
