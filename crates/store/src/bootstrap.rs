//! The store's side of snapshots for fast bootstrap: reading every document as stored (its
//! compacted save and its change rows, queued ones included), and taking such documents in.

use std::collections::HashMap;

use automerge::{Automerge, Change, ChangeHash, ReadDoc};
use daftar_domain::{Customer, DeviceId, DocumentId, Invoice, Item, Role};
use daftar_sync::PROOF_LEN;
use daftar_sync::snapshot::{PROOF_ENTRY, SnapshotChange, SnapshotDocument, SnapshotProof};
use rusqlite::{OptionalExtension, params};

use crate::document;
use crate::error::{Result, StoreError};
use crate::exchange::{IncomingChange, Judging, apply_one, keep_seal};
use crate::records::{DocKind, Record, SearchWrite};
use crate::store::{Store, insert_document_row, stored_bytes};

impl Store {
    /// Every document id with the size it takes in a snapshot, the membership document first
    /// (a bootstrapping device judges everything else by it), then in id order: enough to cut
    /// a snapshot into parts before reading any content.
    pub fn snapshot_plan(&self) -> Result<Vec<(DocumentId, usize)>> {
        self.read(|conn| {
            let proofs = if has_seals(conn)? {
                format!("{PROOF_ENTRY} * (SELECT count(*) FROM seals WHERE doc_id = d.id)")
            } else {
                "0".to_owned()
            };
            let mut statement = conn.prepare(&format!(
                "SELECT d.id,
                        coalesce((SELECT length(bytes) FROM snapshots WHERE doc_id = d.id), 0),
                        coalesce((SELECT sum(20 + length(bytes)) FROM changes WHERE doc_id = d.id), 0) + {proofs}
                 FROM documents d ORDER BY d.kind <> 'membership', d.id"
            ))?;
            let rows =
                statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
            let mut plan = Vec::new();
            for row in rows {
                let (id, saved, changes) = row?;
                plan.push((self.parse_document_id(&id)?, 29 + saved as usize + changes as usize));
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
    ///
    /// Documents whose changes were proven ([`prepare_snapshot`] with a check) are judged: a
    /// record document made only by owners' and admins' devices (who may do anything to
    /// records) is stored as it came; any other goes change by change, in causal order,
    /// through the path received changes take, each judged by the role its proven sender
    /// held (see [`crate::membership::RolesEver`]) and quarantined if no role it held allows
    /// it. The membership document goes first, so everything after is judged by it.
    pub fn take_in(&mut self, part: &PreparedSnapshot) -> Result<Vec<(DocumentId, Taken)>> {
        let workspace = self.info.workspace_id;
        let mut order: Vec<&PreparedDocument> = part.documents.iter().collect();
        order.sort_by_key(|p| p.kind != DocKind::Membership);
        let taken = self.write(|tx, ctx, cache| {
            let mut roles = crate::membership::RolesEver::load(tx, cache, workspace)?;
            let mut taken = Vec::with_capacity(order.len());
            for p in order {
                let known: Option<String> = tx
                    .prepare_cached("SELECT kind FROM documents WHERE id = ?1")?
                    .query_row([p.source.document.to_string()], |r| r.get(0))
                    .optional()?;
                let outcome = match &p.sealed {
                    None if known.is_some() => merge_prepared(tx, ctx, cache, p)?,
                    None => {
                        insert_prepared(tx, ctx, p)?;
                        Taken::Added
                    }
                    Some(sealed) if known.is_none() && made_by_managers(p.kind, sealed, &roles) => {
                        insert_prepared(tx, ctx, p)?;
                        for change in sealed {
                            keep_seal(tx, p.source.document, &change.hash.0, change.device, &change.proof)?;
                        }
                        Taken::Added
                    }
                    Some(sealed) => {
                        let mut gained = false;
                        for change in sealed {
                            let incoming = IncomingChange {
                                document: p.source.document,
                                kind: p.kind,
                                sender: change.device,
                                bytes: &change.bytes,
                                role: Some(change.sealer.relay_role),
                                sender_key: Some(change.sealer.key),
                                proof: Some(&change.proof),
                            };
                            gained |= apply_one(tx, ctx, cache, &incoming, Judging::Snapshot(&roles))?;
                        }
                        if p.kind == DocKind::Membership {
                            roles = crate::membership::RolesEver::load(tx, cache, workspace)?;
                        }
                        match (known.is_some(), gained) {
                            (false, _) => Taken::Added,
                            (true, true) => Taken::Merged,
                            (true, false) => Taken::Unchanged,
                        }
                    }
                };
                taken.push((p.source.document, outcome));
            }
            // The part's search text in one statement: FTS5 flushes its pending terms at every
            // statement that writes to it, so row by row it would write (and merge) a segment
            // per invoice.
            crate::search::move_queue(tx)?;
            Ok(taken)
        })?;
        // The snapshot's membership document may give this device its role.
        if part.documents.iter().any(|p| p.kind == DocKind::Membership && p.sealed.is_some()) {
            self.refresh_role()?;
        }
        Ok(taken)
    }
}

/// Whether a record document's every change was sealed by a device that was an owner's or an
/// admin's: they may do anything to invoices, customers and items, so there is nothing to
/// judge change by change.
fn made_by_managers(kind: DocKind, sealed: &[SealedChange], roles: &crate::membership::RolesEver) -> bool {
    use crate::membership::Standing;
    matches!(kind, DocKind::Invoice | DocKind::Customer | DocKind::Item)
        && sealed.iter().all(|c| {
            let role = match roles.standing(c.device, Some(&c.sealer.key)) {
                Standing::Unknown => c.sealer.relay_role,
                Standing::Member(role) => role,
                Standing::Refused(_) => return false,
            };
            role >= Role::Admin
        })
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
        crate::inflation::check_received(d.document, "its save", bytes, crate::inflation::MAX_INFLATED_BYTES)?;
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
        let incoming = IncomingChange {
            document: d.document,
            kind: p.kind,
            sender: *sender,
            bytes,
            role: None,
            sender_key: None,
            proof: None,
        };
        // Taken as it is (see `IncomingChange::role`): nothing to judge by.
        gained |= apply_one(tx, ctx, cache, &incoming, Judging::Trusted)?;
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
        Some(Indexable::Invoice(r)) => r.index(tx, SearchWrite::Queue)?,
        Some(Indexable::Customer(r)) => r.index(tx, SearchWrite::Queue)?,
        Some(Indexable::Item(r)) => r.index(tx, SearchWrite::Queue)?,
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
    // A store backed up before its migration to schema 11 has no seals.
    let mut proofs_of = if has_seals(conn)? {
        Some(conn.prepare_cached("SELECT hash, device, proof FROM seals WHERE doc_id = ?1")?)
    } else {
        None
    };
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
        let Some(proofs_of) = proofs_of.as_mut() else {
            out.push(SnapshotDocument { document: *id, kind: kind.code(), saved, changes, proofs: Vec::new() });
            continue;
        };
        let proofs = proofs_of
            .query_map([&key], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?, r.get::<_, Vec<u8>>(2)?)))?
            .map(|row| {
                let (hash, device, proof) = row?;
                let bad = |what: &str| StoreError::Document { id: *id, detail: format!("a seal row has {what}") };
                Ok(SnapshotProof {
                    hash: hash.try_into().map_err(|_| bad("a bad hash"))?,
                    device: device.parse().map_err(|_| bad("a bad device id"))?,
                    proof: proof.try_into().map_err(|_| bad("a proof of the wrong length"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(SnapshotDocument { document: *id, kind: kind.code(), saved, changes, proofs });
    }
    Ok(out)
}

fn has_seals(conn: &rusqlite::Connection) -> Result<bool> {
    Ok(conn.prepare_cached("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'seals'")?.exists([])?)
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
    /// Every change with its proven sealer, in causal order; `None` when not checked (a
    /// backup of this workspace, taken as it is).
    pub(crate) sealed: Option<Vec<SealedChange>>,
}

/// A change of a snapshot whose seal proof was checked.
#[derive(Debug)]
pub(crate) struct SealedChange {
    pub(crate) hash: ChangeHash,
    /// Exactly the bytes that were sealed.
    pub(crate) bytes: Vec<u8>,
    pub(crate) device: DeviceId,
    pub(crate) sealer: ProvenSealer,
    pub(crate) proof: [u8; PROOF_LEN],
}

/// A change of a snapshot with the device said to have sealed it, for a [`ProofCheck`].
#[derive(Debug, Clone, Copy)]
pub struct ProofClaim<'a> {
    pub document: DocumentId,
    /// The document kind's envelope code.
    pub kind: u8,
    pub device: DeviceId,
    pub change: &'a [u8],
    pub proof: &'a [u8; PROOF_LEN],
}

/// What a [`ProofCheck`] found out about a change's sealer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvenSealer {
    /// The public key the proof's signature verified with.
    pub key: [u8; 32],
    /// The role the relay lists for the device (used only before there is a membership
    /// document).
    pub relay_role: Role,
}

/// Checks that the claimed device sealed the change (the sync layer holds the keys for it):
/// `Err` says why not.
pub type ProofCheck<'a> = &'a (dyn Fn(&ProofClaim<'_>) -> std::result::Result<ProvenSealer, String> + Sync);

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
///
/// With `check`, every change must come with a seal proof that `check` accepts for the device
/// named for it (see [`daftar_sync::SealProof`]); one without refuses the part the same way,
/// so a snapshot's maker cannot put a change in anyone else's name.
pub fn prepare_snapshot(documents: Vec<SnapshotDocument>, check: Option<ProofCheck<'_>>) -> Result<PreparedSnapshot> {
    // Loading, reading and checking are independent per document: split across the cores
    // (while the store takes in the previous part on its own thread).
    let cores = std::thread::available_parallelism().map_or(1, usize::from).min(4);
    if cores < 2 || documents.len() < 256 {
        return Ok(PreparedSnapshot { documents: prepare_documents(documents, check)? });
    }
    let size = documents.len().div_ceil(cores);
    let mut chunks: Vec<Vec<SnapshotDocument>> = Vec::with_capacity(cores);
    let mut rest = documents.into_iter();
    loop {
        let chunk: Vec<SnapshotDocument> = rest.by_ref().take(size).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    let prepared = std::thread::scope(|scope| {
        let handles: Vec<_> =
            chunks.into_iter().map(|chunk| scope.spawn(move || prepare_documents(chunk, check))).collect();
        handles.into_iter().map(|h| h.join().expect("preparing a snapshot part does not panic")).collect::<Vec<_>>()
    });
    let mut documents = Vec::new();
    for chunk in prepared {
        documents.extend(chunk?);
    }
    Ok(PreparedSnapshot { documents })
}

fn prepare_documents(documents: Vec<SnapshotDocument>, check: Option<ProofCheck<'_>>) -> Result<Vec<PreparedDocument>> {
    // Every save and change is measured before Automerge inflates it, each against its own
    // limit and all of this thread's together against the part's (see `inflation`).
    let mut budget = crate::inflation::MAX_PART_INFLATED_BYTES;
    for d in &documents {
        let saves = d.saved.iter().map(|bytes| ("its save", bytes));
        for (what, bytes) in saves.chain(d.changes.iter().map(|c| ("a change", &c.bytes))) {
            let limit = budget.min(crate::inflation::MAX_INFLATED_BYTES);
            budget -= crate::inflation::check_received(d.document, what, bytes, limit)?;
        }
    }
    documents
        .into_iter()
        .map(|d| {
            let broken = |detail: String| StoreError::Document { id: d.document, detail };
            let kind = DocKind::from_code(d.kind).ok_or_else(|| broken(format!("unknown kind code {}", d.kind)))?;
            let mut doc = match &d.saved {
                Some(bytes) => Automerge::load(bytes).map_err(|e| broken(format!("its save does not load: {e}")))?,
                None => Automerge::new(),
            };
            let (saved_heads, saved_count) = (doc.get_heads(), doc.get_changes(&[]).len());
            let saved_changes: Vec<Change> =
                if check.is_some() { doc.get_changes(&[]).into_iter().cloned().collect() } else { Vec::new() };
            let changes = d
                .changes
                .iter()
                .map(|c| {
                    Change::from_bytes(c.bytes.clone()).map_err(|e| broken(format!("a change does not decode: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            let rows: Vec<_> = changes.iter().map(|c| (c.hash(), c.timestamp(), c.message().cloned())).collect();
            doc.apply_changes(changes).map_err(|e| broken(format!("changes do not apply: {e}")))?;
            let sealed = check.map(|check| prove(&d, kind, &doc, &saved_changes, &rows, check)).transpose()?;
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
                sealed,
            })
        })
        .collect::<Result<Vec<_>>>()
}

/// Every change of a snapshot document (in its save or its rows) with its checked sealer, in
/// causal order (rows still waiting for their dependencies last).
fn prove(
    d: &SnapshotDocument,
    kind: DocKind,
    doc: &Automerge,
    saved: &[Change],
    rows: &[(ChangeHash, i64, Option<String>)],
    check: ProofCheck<'_>,
) -> Result<Vec<SealedChange>> {
    let unproven = |detail: String| StoreError::UnprovenChange { id: d.document, detail };
    let proofs: HashMap<[u8; 32], &SnapshotProof> = d.proofs.iter().map(|p| (p.hash, p)).collect();
    let row_of: HashMap<ChangeHash, &SnapshotChange> = rows.iter().map(|r| r.0).zip(&d.changes).collect();
    let saved_of: HashMap<ChangeHash, &Change> = saved.iter().map(|c| (c.hash(), c)).collect();
    let mut order: Vec<ChangeHash> = doc.get_changes(&[]).iter().map(|c| c.hash()).collect();
    let placed: std::collections::HashSet<ChangeHash> = order.iter().copied().collect();
    order.extend(rows.iter().map(|r| r.0).filter(|h| !placed.contains(h)));
    order
        .into_iter()
        .map(|hash| {
            let name = hex::encode(&hash.0[..8]);
            let proof = proofs.get(&hash.0).ok_or_else(|| unproven(format!("change {name}… has no seal proof")))?;
            // The exact bytes sealed: a row's are kept; a change from a compacted save is encoded
            // again, the way it was sent (compressed) or, failing that, raw.
            let candidates = match (row_of.get(&hash), saved_of.get(&hash)) {
                (Some(row), _) if row.device != proof.device => {
                    return Err(unproven(format!(
                        "change {name}… is listed as device {}'s but its seal proof is device {}'s",
                        row.device, proof.device
                    )));
                }
                (Some(row), _) => vec![row.bytes.clone()],
                (None, Some(change)) => {
                    let mut change = (*change).clone();
                    let (sent, raw) = (change.bytes().into_owned(), change.raw_bytes().to_vec());
                    if sent == raw { vec![sent] } else { vec![sent, raw] }
                }
                (None, None) => return Err(unproven(format!("change {name}… is neither saved nor a row"))),
            };
            let mut why = String::new();
            for bytes in candidates {
                let claim = ProofClaim {
                    document: d.document,
                    kind: kind.code(),
                    device: proof.device,
                    change: &bytes,
                    proof: &proof.proof,
                };
                match check(&claim) {
                    Ok(sealer) => {
                        return Ok(SealedChange { hash, bytes, device: proof.device, sealer, proof: proof.proof });
                    }
                    Err(e) => why = e,
                }
            }
            Err(unproven(format!("change {name}… (device {}): {why}", proof.device)))
        })
        .collect()
}

/// The record, or `None` while its dependencies are missing.
fn read<R: Record>(id: DocumentId, doc: &Automerge) -> Option<R> {
    document::read_record(id, doc, None).ok()
}
