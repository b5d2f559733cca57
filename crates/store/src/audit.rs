//! The audit log: who did what, when, where — every change this device stores (its own, those it
//! received, those a bootstrap or restore brought) and local events (refused actions, backups,
//! restores, exports), in one append-only, hash-chained, signed sequence.
//!
//! A trigger adds an entry for every change row as it is inserted, so no write path can skip
//! it, and chains it as it goes in: each entry's hash is SHA-256 over the previous entry's hash
//! and the entry itself, computed by [`hash_function`] (an SQL function registered on every
//! connection). Before each transaction commits, [`seal`] signs its last entry with the
//! device's Ed25519 key. `daftar audit verify` recomputes all of it and names the first entry that does not
//! match: an edited entry fails its hash, a removed one breaks the chain after it, and a
//! rewritten chain fails the signatures. Field-level old and new values are not stored: they are
//! read from the change itself (whose hash the entry carries) when the log is shown.

use automerge::{ChangeHash, ReadDoc};
use chrono::{DateTime, SecondsFormat};
use daftar_domain::DocumentId;
use daftar_sync::DeviceSigningKey;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::error::Result;
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
    /// The member (person) the device belongs to, as the membership document names it.
    pub member: Option<String>,
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
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct AuditCheck {
    pub ok: bool,
    #[serde(rename = "entries")]
    #[cfg_attr(feature = "ts", ts(rename = "entries", type = "number"))]
    pub count: u64,
    /// The first entry that does not match, and why.
    pub first_bad: Option<BadEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct BadEntry {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub seq: i64,
    pub problem: String,
}

/// Audit entries as CSV, one row per changed field (a local event: one row, its details in the
/// last column), for `daftar audit --format csv` and the app's export.
pub fn audit_csv(entries: &[AuditEntry]) -> Vec<u8> {
    let mut out = csv::Writer::from_writer(Vec::new());
    // `member` came last, after the columns scripts already read by position.
    let header =
        ["seq", "at", "device", "device_name", "action", "kind", "document", "field", "before", "after", "member"];
    out.write_record(header).expect("writing to memory");
    let value = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string()).unwrap_or_default();
    for e in entries {
        let base = [
            e.seq.to_string(),
            e.at.clone(),
            e.device.clone(),
            e.device_name.clone().unwrap_or_default(),
            e.action.clone(),
            e.kind.clone().unwrap_or_default(),
            e.document.clone().unwrap_or_default(),
        ];
        let member = e.member.clone().unwrap_or_default();
        if e.changes.is_empty() {
            let detail = e.detail.as_ref().map(|d| d.to_string()).unwrap_or_default();
            out.write_record(base.iter().cloned().chain([String::new(), String::new(), detail, member.clone()]))
                .expect("writing to memory");
        }
        for c in &e.changes {
            let fields = [c.path.clone(), value(&c.before), value(&c.after), member.clone()];
            out.write_record(base.iter().cloned().chain(fields)).expect("writing to memory");
        }
    }
    out.into_inner().expect("writing to memory")
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

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
}

/// An entry's hash: SHA-256 over the previous entry's hash and the entry's fields.
fn entry_hash(prev: &[u8], row: &Row) -> [u8; 32] {
    let (seq, at, device, action, kind, doc, change, detail) = row;
    let fields = serde_json::json!([seq, at, device, action, kind, doc, change.as_deref().map(hex::encode), detail]);
    let mut input = prev.to_vec();
    input.extend(serde_json::to_vec(&fields).expect("an entry serialises"));
    ring::digest::digest(&ring::digest::SHA256, &input).as_ref().try_into().expect("32 bytes")
}

/// Registers `daftar_audit_hash(prev, seq, at, device, action, kind, doc, change, detail)` on
/// `conn`: the hash the trigger and the event inserts chain entries with.
pub(crate) fn hash_function(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "daftar_audit_hash",
        9,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let prev: Vec<u8> = ctx.get(0)?;
            let row: Row = (
                ctx.get(1)?,
                ctx.get(2)?,
                ctx.get(3)?,
                ctx.get(4)?,
                ctx.get(5)?,
                ctx.get(6)?,
                ctx.get(7)?,
                ctx.get(8)?,
            );
            Ok(entry_hash(&prev, &row).to_vec())
        },
    )
}

/// Signs the newest entry if this transaction added entries since the last signature. Runs
/// inside the writing transaction, just before it commits.
pub(crate) fn seal(conn: &Connection, key: &DeviceSigningKey) -> Result<()> {
    let newest: Option<(i64, Vec<u8>, Option<Vec<u8>>)> = conn
        .prepare_cached("SELECT seq, hash, signature FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    if let Some((seq, hash, None)) = newest {
        conn.prepare_cached("UPDATE audit SET signature = ?2 WHERE seq = ?1")?
            .execute(params![seq, key.sign(&hash).as_slice()])?;
    }
    Ok(())
}

/// Adds a local event to the chain.
pub(crate) fn event(conn: &Connection, at: i64, device: &str, action: &str, detail: &serde_json::Value) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (seq, at, device, action, detail, prev_hash, hash)
         SELECT n.seq, ?1, ?2, ?3, ?4, n.prev, daftar_audit_hash(n.prev, n.seq, ?1, ?2, ?3, NULL, NULL, NULL, ?4)
         FROM (SELECT coalesce((SELECT max(seq) FROM audit), 0) + 1 AS seq,
                      coalesce((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), zeroblob(32)) AS prev) AS n",
    )?
    .execute(params![at, device, action, detail.to_string()])?;
    Ok(())
}

/// Puts the changes stored before the log existed into it, in the order they arrived (once,
/// after the migration that made the log).
pub(crate) fn backfill(conn: &Connection) -> Result<()> {
    let empty: bool = conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM audit)", [], |r| r.get(0))?;
    if !empty {
        return Ok(());
    }
    let rows: Vec<i64> = {
        let mut statement = conn.prepare("SELECT seq FROM changes ORDER BY seq")?;
        statement.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
    };
    let mut copy = conn.prepare(
        "INSERT INTO audit (seq, at, device, action, kind, doc_id, change_hash, prev_hash, hash)
         SELECT n.seq, c.time, c.device, c.message, n.kind, c.doc_id, c.hash, n.prev,
                daftar_audit_hash(n.prev, n.seq, c.time, c.device, c.message, n.kind, c.doc_id, c.hash, NULL)
         FROM changes c,
              (SELECT coalesce((SELECT max(seq) FROM audit), 0) + 1 AS seq,
                      coalesce((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), zeroblob(32)) AS prev,
                      (SELECT kind FROM documents d JOIN changes x ON x.doc_id = d.id WHERE x.seq = ?1) AS kind) AS n
         WHERE c.seq = ?1",
    )?;
    for seq in rows {
        copy.execute([seq])?;
    }
    Ok(())
}

/// The event a change to a device's events document added, as its detail.
fn appended_event(doc: &automerge::Automerge, hash: &[u8]) -> Option<serde_json::Value> {
    let hash = ChangeHash(<[u8; 32]>::try_from(hash).ok()?);
    let change = doc.get_change_by_hash(&hash)?;
    let ids = |json: &serde_json::Value| -> Vec<serde_json::Value> {
        json["events"].as_array().map(|events| events.to_vec()).unwrap_or_default()
    };
    let before = ids(&crate::document::to_json(doc, Some(change.deps())));
    let after = ids(&crate::document::to_json(doc, Some(&[hash])));
    let added = after.into_iter().find(|e| !before.iter().any(|b| b["id"] == e["id"]))?;
    serde_json::from_str(added["detail"].as_str()?).ok()
}

/// The fields a change set: the document just before it against just after it.
fn field_changes(doc: &automerge::Automerge, hash: &[u8]) -> Vec<FieldChange> {
    let Ok(hash) = <[u8; 32]>::try_from(hash) else { return Vec::new() };
    let Some(change) = doc.get_change_by_hash(&ChangeHash(hash)) else { return Vec::new() };
    let before = crate::document::to_json(doc, Some(change.deps()));
    let after = crate::document::to_json(doc, Some(&[ChangeHash(hash)]));
    // A document's first change has nothing before it: its root is no field.
    crate::history::diff_json(&before, &after).into_iter().filter(|c| !c.path.is_empty()).collect()
}

impl Store {
    /// The audit log, newest first.
    pub fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        self.permit(daftar_domain::Action::ReadAudit)?;
        let names: Vec<(String, String)> = self
            .settings()
            .map(|s| s.devices.into_iter().map(|d| (d.id.to_string(), d.name)).collect())
            .unwrap_or_default();
        let members: Vec<(String, String)> = self
            .membership()?
            .map(|m| m.devices.into_iter().map(|d| (d.id.to_string(), d.member)).collect())
            .unwrap_or_default();
        // A member's name stands for all of their devices; a device id (or its start) or a
        // device's name for that device.
        let device_filter: Option<Vec<String>> = query.device.as_ref().map(|wanted| {
            let wanted = wanted.trim().to_lowercase();
            names
                .iter()
                .chain(&members)
                .filter(|(id, name)| id.starts_with(&wanted) || name.to_lowercase() == wanted)
                .map(|(id, _)| id.clone())
                .chain(std::iter::once(wanted.clone()).filter(|w| w.len() == 36))
                .collect()
        });
        self.read(|conn| {
            let mut statement = conn.prepare(
                "SELECT seq, at, device, action, kind, doc_id, change_hash, detail, hash FROM audit
                 WHERE at >= ?1 AND (?2 IS NULL OR doc_id = ?2)
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
                let loaded = match &doc {
                    Some(id) => docs
                        .entry(id.clone())
                        .or_insert_with(|| {
                            id.parse().ok().and_then(|id| load_doc(conn, id).ok().flatten()).map(|l| l.doc)
                        })
                        .as_ref(),
                    None => None,
                };
                // A device's event (synced in its events document) reads like a local one.
                let event = kind.as_deref() == Some("events");
                let (changes, detail, kind, doc) = match (loaded, &change) {
                    (Some(d), Some(hash)) if event => {
                        (Vec::new(), appended_event(d, hash).map(|v| v.to_string()), None, None)
                    }
                    (Some(d), Some(hash)) => (field_changes(d, hash), detail, kind, doc),
                    _ => (Vec::new(), detail, kind, doc),
                };
                out.push(AuditEntry {
                    seq,
                    at: DateTime::from_timestamp_millis(at)
                        .unwrap_or_default()
                        .to_rfc3339_opts(SecondsFormat::Millis, true),
                    device_name: names.iter().find(|(id, _)| *id == device).map(|(_, n)| n.clone()),
                    member: members.iter().find(|(id, _)| *id == device).map(|(_, m)| m.clone()),
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
        let verifier = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key);
        self.read(|conn| {
            let mut statement = conn.prepare(
                "SELECT seq, at, device, action, kind, doc_id, change_hash, detail, prev_hash, hash, signature
                 FROM audit ORDER BY seq",
            )?;
            let rows = statement.query_map([], |r| {
                Ok((row(r)?, r.get::<_, Vec<u8>>(8)?, r.get::<_, Vec<u8>>(9)?, r.get::<_, Option<Vec<u8>>>(10)?))
            })?;
            let mut previous = GENESIS.to_vec();
            let mut previous_seq: Option<i64> = None;
            let mut count = 0;
            // Every change the log records, to find the newest entries if they were cut off.
            let mut recorded: std::collections::HashSet<(String, Vec<u8>)> = Default::default();
            for entry in rows {
                let (stored, prev, hash, signature) = entry?;
                let seq = stored.0;
                count += 1;
                let bad = |problem: String| AuditCheck { ok: false, count, first_bad: Some(BadEntry { seq, problem }) };
                if prev != previous {
                    let after = previous_seq.map_or("the start".to_owned(), |s| format!("entry {s}"));
                    return Ok(bad(format!(
                        "it does not follow {after}: an entry between them was removed or changed"
                    )));
                }
                if entry_hash(&prev, &stored).as_slice() != hash.as_slice() {
                    return Ok(bad("its content does not match its hash: the entry was edited".into()));
                }
                if let Some(signature) = signature
                    && verifier.verify(&hash, &signature).is_err()
                {
                    return Ok(bad("its signature is not this device's: the chain was rewritten".into()));
                }
                if let (Some(doc), Some(change)) = (&stored.5, &stored.6)
                    && !change_kept(conn, doc, change)?
                {
                    return Ok(bad("the change it records is missing from the store".into()));
                }
                if let (Some(doc), Some(change)) = (stored.5, stored.6) {
                    recorded.insert((doc, change));
                }
                previous = hash;
                previous_seq = Some(seq);
            }
            // The chain cannot show that its newest entries were removed; the store can: every
            // change it holds has an entry (the trigger adds one with each row).
            let mut rows = conn.prepare("SELECT doc_id, hash FROM changes ORDER BY seq")?;
            let mut rows = rows.query([])?;
            while let Some(row) = rows.next()? {
                let (doc, change): (String, Vec<u8>) = (row.get(0)?, row.get(1)?);
                if !recorded.contains(&(doc.clone(), change)) {
                    let seq = previous_seq.unwrap_or(0) + 1;
                    let problem = format!(
                        "the log ends at entry {} but the store holds a change of document {doc} it does not record: the newest entries were removed",
                        previous_seq.unwrap_or(0)
                    );
                    return Ok(AuditCheck { ok: false, count, first_bad: Some(BadEntry { seq, problem }) });
                }
            }
            Ok(AuditCheck { ok: true, count, first_bad: None })
        })
    }
}

/// Whether the store still holds the change an entry records: as a row, inside a compacted
/// save, or gone with a recorded purge.
fn change_kept(conn: &Connection, doc: &str, change: &[u8]) -> Result<bool> {
    let row: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM changes WHERE doc_id = ?1 AND hash = ?2")?
        .query_row(params![doc, change], |r| r.get(0))
        .optional()?;
    if row.is_some() {
        return Ok(true);
    }
    let purged: bool =
        conn.prepare_cached("SELECT count(*) > 0 FROM purges WHERE doc_id = ?1")?.query_row([doc], |r| r.get(0))?;
    if purged {
        return Ok(true);
    }
    let Some(id) = doc.parse::<DocumentId>().ok() else { return Ok(false) };
    let Ok(hash) = <[u8; 32]>::try_from(change) else { return Ok(false) };
    Ok(load_doc(conn, id)?.is_some_and(|l| l.doc.get_change_by_hash(&ChangeHash(hash)).is_some()))
}
