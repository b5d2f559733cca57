//! The audit log: who did what, when, where — every change this device stores (its own, those it
//! received, those a bootstrap or restore brought) and local events (refused actions, backups,
//! restores, exports), in one append-only, hash-chained, signed sequence.
//!
//! A trigger adds an entry for every change row as it is inserted, so no write path can skip
//! it; before each transaction commits, [`seal`] fills the new entries in (the change's message
//! as the action) and chains them: each entry's hash is SHA-256 over the previous entry's hash
//! and the entry itself, and the last entry of each commit is signed with the device's Ed25519
//! key. `daftar audit verify` recomputes all of it and names the first entry that does not
//! match: an edited entry fails its hash, a removed one breaks the chain after it, and a
//! rewritten chain fails the signatures. Field-level old and new values are not stored: they are
//! read from the change itself (whose hash the entry carries) when the log is shown.

use automerge::{Change, ChangeHash, ReadDoc};
use chrono::{DateTime, SecondsFormat};
use daftar_domain::DocumentId;
use daftar_sync::DeviceSigningKey;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::history::FieldChange;
use crate::store::{Store, load_doc};

/// One entry, as `daftar audit` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct AuditEntry {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub seq: i64,
    pub at: String,
    pub device: String,
    /// The device's name in the workspace settings, when it is listed there.
    pub device_name: Option<String>,
    /// What happened: the change's message (`create`, `edit`, `issue A-000001`, `delete`,
    /// `restore`, `revert to version 2`, …) or a local event (`refused`, `backup`, …).
    pub action: String,
    pub kind: Option<String>,
    pub document: Option<String>,
    /// The fields the change set, with their old and new values.
    pub changes: Vec<FieldChange>,
    /// A local event's details.
    pub detail: Option<serde_json::Value>,
    pub hash: String,
}

/// What `daftar audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditCheck {
    pub ok: bool,
    #[serde(rename = "entries")]
    pub count: u64,
    /// The first entry that does not match, and why.
    pub first_bad: Option<BadEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadEntry {
    pub seq: i64,
    pub problem: String,
}

/// Which entries `daftar audit` lists.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Milliseconds since the epoch.
    pub since: Option<i64>,
    /// A device id, a prefix of one, or a device's name.
    pub device: Option<String>,
    pub document: Option<DocumentId>,
    pub limit: Option<usize>,
}

const GENESIS: [u8; 32] = [0; 32];

type Row = (i64, i64, String, Option<String>, Option<String>, Option<String>, Option<Vec<u8>>, Option<String>);

/// The bytes an entry's hash covers after the previous hash: every field of `row` but its
/// action, and `action` (filled in when the entry is sealed).
fn canonical(row: &Row, action: &str) -> Vec<u8> {
    let (seq, at, device, _, kind, doc, change, detail) = row;
    serde_json::to_vec(&serde_json::json!([
        seq,
        at,
        device,
        action,
        kind,
        doc,
        change.as_deref().map(hex::encode),
        detail
    ]))
    .expect("an entry serialises")
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
}

/// Fills in and chains the entries added since the last seal, and signs the last one. Runs
/// inside the writing transaction.
pub(crate) fn seal(conn: &Connection, key: &DeviceSigningKey) -> Result<()> {
    let pending: Vec<Row> = {
        let mut statement = conn.prepare_cached(
            "SELECT seq, at, device, action, kind, doc_id, change_hash, detail FROM audit WHERE hash IS NULL ORDER BY seq",
        )?;
        statement.query_map([], row)?.collect::<rusqlite::Result<_>>()?
    };
    let Some(last) = pending.last().map(|r| r.0) else { return Ok(()) };
    let mut previous: [u8; 32] = conn
        .query_row("SELECT hash FROM audit WHERE hash IS NOT NULL ORDER BY seq DESC LIMIT 1", [], |r| {
            r.get::<_, Vec<u8>>(0)
        })
        .optional()?
        .and_then(|h| h.try_into().ok())
        .unwrap_or(GENESIS);
    let mut message_of = conn.prepare_cached("SELECT bytes FROM changes WHERE doc_id = ?1 AND hash = ?2")?;
    let mut update =
        conn.prepare_cached("UPDATE audit SET action = ?2, prev_hash = ?3, hash = ?4, signature = ?5 WHERE seq = ?1")?;
    for entry in pending {
        let (seq, _, _, action, _, doc, change, _) = &entry;
        let (seq, doc, change) = (*seq, doc.clone(), change.clone());
        let action = match (action.clone(), &doc, &change) {
            (Some(action), _, _) => action,
            (None, Some(doc), Some(hash)) => {
                let bytes: Option<Vec<u8>> = message_of.query_row(params![doc, hash], |r| r.get(0)).optional()?;
                bytes
                    .and_then(|b| Change::from_bytes(b).ok())
                    .and_then(|c| c.message().cloned())
                    .unwrap_or_else(|| "change".to_owned())
            }
            _ => "change".to_owned(),
        };
        let mut input = previous.to_vec();
        input.extend(canonical(&entry, &action));
        let hash: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &input).as_ref().try_into().expect("32 bytes");
        let signature = (seq == last).then(|| key.sign(&hash).to_vec());
        update.execute(params![seq, action, previous.as_slice(), hash.as_slice(), signature])?;
        previous = hash;
    }
    Ok(())
}

/// Adds a local event (sealed with the transaction it is part of).
pub(crate) fn event(conn: &Connection, at: i64, device: &str, action: &str, detail: &serde_json::Value) -> Result<()> {
    conn.prepare_cached("INSERT INTO audit (at, device, action, detail) VALUES (?1, ?2, ?3, ?4)")?.execute(params![
        at,
        device,
        action,
        detail.to_string()
    ])?;
    Ok(())
}

/// The fields a change set: the document just before it against just after it.
fn field_changes(doc: &automerge::Automerge, hash: &[u8]) -> Vec<FieldChange> {
    let Ok(hash) = <[u8; 32]>::try_from(hash) else { return Vec::new() };
    let Some(change) = doc.get_change_by_hash(&ChangeHash(hash)) else { return Vec::new() };
    let before = crate::document::to_json(doc, Some(change.deps()));
    let after = crate::document::to_json(doc, Some(&[ChangeHash(hash)]));
    crate::history::diff_json(&before, &after)
}

impl Store {
    /// Records a local event in the audit log (an export, a backup, a restore, …).
    pub fn record_event(&mut self, action: &str, detail: serde_json::Value) -> Result<()> {
        self.write(|tx, ctx, _| event(tx, ctx.now.timestamp_millis(), &ctx.device.to_string(), action, &detail))
    }

    /// The audit log, newest first.
    pub fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        self.permit(daftar_domain::Action::ReadAudit)?;
        let names: Vec<(String, String)> = self
            .settings()
            .map(|s| s.devices.into_iter().map(|d| (d.id.to_string(), d.name)).collect())
            .unwrap_or_default();
        let device_filter: Option<Vec<String>> = query.device.as_ref().map(|wanted| {
            let wanted = wanted.trim().to_lowercase();
            names
                .iter()
                .filter(|(id, name)| id.starts_with(&wanted) || name.to_lowercase() == wanted)
                .map(|(id, _)| id.clone())
                .chain(std::iter::once(wanted.clone()).filter(|w| w.len() == 36))
                .collect()
        });
        self.read(|conn| {
            let mut statement = conn.prepare(
                "SELECT seq, at, device, action, kind, doc_id, change_hash, detail, hash FROM audit
                 WHERE hash IS NOT NULL AND at >= ?1 AND (?2 IS NULL OR doc_id = ?2)
                 ORDER BY seq DESC",
            )?;
            let rows = statement
                .query_map(params![query.since.unwrap_or(i64::MIN), query.document.map(|d| d.to_string())], |r| {
                    Ok((row(r)?, r.get::<_, Vec<u8>>(8)?))
                })?;
            let mut docs: std::collections::HashMap<String, Option<automerge::Automerge>> = Default::default();
            let mut out = Vec::new();
            for entry in rows {
                let ((seq, at, device, action, kind, doc, change, detail), hash) = entry?;
                if let Some(wanted) = &device_filter
                    && !wanted.contains(&device)
                {
                    continue;
                }
                let changes = match (&doc, &change) {
                    (Some(id), Some(hash)) => {
                        let loaded = docs.entry(id.clone()).or_insert_with(|| {
                            id.parse().ok().and_then(|id| load_doc(conn, id).ok().flatten()).map(|l| l.doc)
                        });
                        loaded.as_ref().map(|d| field_changes(d, hash)).unwrap_or_default()
                    }
                    _ => Vec::new(),
                };
                out.push(AuditEntry {
                    seq,
                    at: DateTime::from_timestamp_millis(at)
                        .unwrap_or_default()
                        .to_rfc3339_opts(SecondsFormat::Millis, true),
                    device_name: names.iter().find(|(id, _)| *id == device).map(|(_, n)| n.clone()),
                    device,
                    action: action.unwrap_or_default(),
                    kind,
                    document: doc,
                    changes,
                    detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                    hash: hex::encode(hash),
                });
                if query.limit.is_some_and(|l| out.len() >= l) {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Recomputes the audit log's hash chain and checks its signatures; names the first entry
    /// that does not match.
    pub fn verify_audit(&self) -> Result<AuditCheck> {
        let public_key: [u8; 32] = self.device_signing_key()?.public_key();
        self.read(|conn| {
            let mut statement = conn.prepare(
                "SELECT seq, at, device, action, kind, doc_id, change_hash, detail, prev_hash, hash, signature
                 FROM audit ORDER BY seq",
            )?;
            let rows = statement.query_map([], |r| {
                Ok((
                    row(r)?,
                    r.get::<_, Option<Vec<u8>>>(8)?,
                    r.get::<_, Option<Vec<u8>>>(9)?,
                    r.get::<_, Option<Vec<u8>>>(10)?,
                ))
            })?;
            let mut previous = GENESIS.to_vec();
            let mut previous_seq: Option<i64> = None;
            let mut count = 0;
            let bad = |seq: i64, problem: String| {
                Ok(AuditCheck { ok: false, count: 0, first_bad: Some(BadEntry { seq, problem }) })
            };
            for entry in rows {
                let (stored, prev, hash, signature) = entry?;
                let (seq, _, _, action, _, doc, change, _) = &stored;
                let (seq, doc, change) = (*seq, doc.clone(), change.clone());
                count += 1;
                let (Some(prev), Some(hash)) = (prev, hash) else {
                    return bad(seq, "the entry was never sealed into the chain".into());
                };
                if prev != previous {
                    let after = previous_seq.map_or("the start".to_owned(), |s| format!("entry {s}"));
                    return bad(
                        seq,
                        format!("it does not follow {after}: an entry between them was removed or changed"),
                    );
                }
                let mut input = prev.clone();
                input.extend(canonical(&stored, action.as_deref().unwrap_or_default()));
                if ring::digest::digest(&ring::digest::SHA256, &input).as_ref() != hash.as_slice() {
                    return bad(seq, "its content does not match its hash: the entry was edited".into());
                }
                if let Some(signature) = signature {
                    let verifier = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key);
                    if verifier.verify(&hash, &signature).is_err() {
                        return bad(seq, "its signature is not this device's: the chain was rewritten".into());
                    }
                }
                if let (Some(doc), Some(change)) = (&doc, &change) {
                    let stored: Option<i64> = conn
                        .prepare_cached("SELECT 1 FROM changes WHERE doc_id = ?1 AND hash = ?2")?
                        .query_row(params![doc, change], |r| r.get(0))
                        .optional()?;
                    let compacted = stored.is_none()
                        && doc
                            .parse::<DocumentId>()
                            .ok()
                            .and_then(|id| load_doc(conn, id).ok().flatten())
                            .and_then(|l| <[u8; 32]>::try_from(change.as_slice()).ok().map(|h| (l, h)))
                            .is_some_and(|(l, h)| l.doc.get_change_by_hash(&ChangeHash(h)).is_some());
                    let purged: bool = conn
                        .prepare_cached("SELECT count(*) > 0 FROM purges WHERE doc_id = ?1")?
                        .query_row([doc], |r| r.get(0))?;
                    if stored.is_none() && !compacted && !purged {
                        return bad(seq, "the change it records is missing from the store".into());
                    }
                }
                previous = hash;
                previous_seq = Some(seq);
            }
            Ok(AuditCheck { ok: true, count, first_bad: None })
        })
        .map_err(|e: StoreError| e)
    }
}
