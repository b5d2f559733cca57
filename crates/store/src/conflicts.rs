//! Issued invoices stay as issued when changes meet.
//!
//! Merging per field is right for drafts, but an issued invoice is a legal document: its number,
//! lines and totals were printed, signed and perhaps reported. Two things can still reach one:
//!
//! - an edit or delete made on another device while the draft was not yet known there as issued
//!   (or by a client that skipped its own checks), and
//! - the same draft issued on two devices at once, each under its own number.
//!
//! Whenever a received change touches an invoice that is issued after merging, the store compares
//! the merged content with the content the winning issue change produced (the document as of that
//! change alone). Payments are the only part allowed to grow after issuing. If anything else
//! differs, a new change puts the issued content back, so every device converges on the issued
//! invoice, and a conflict is recorded for people to look at (`daftar sync conflicts`). The
//! discarded edits stay in history, so nothing is lost.
//!
//! The winner among concurrent issues is the one whose number the merge kept (Automerge resolves
//! the field the same way on every device); the other number is void, recorded here, and counted
//! as used by `store verify` so its series stays gapless.

use automerge::{Automerge, Change, ChangeHash};
use daftar_domain::{DeviceId, DocumentId, Invoice, InvoiceId};
use rusqlite::{Connection, params};
use serde::Serialize;

use crate::document::{self, device_of, read_record};
use crate::error::Result;
use crate::history::diff_json;
use crate::store::{Ctx, Store, commit_json};

/// The message of a change that issues an invoice starts with this.
const ISSUE_MESSAGE: &str = "issue ";
/// The message of the change that puts issued content back.
const KEEP_MESSAGE: &str = "keep issued ";
const PAYMENT_MESSAGE: &str = "record payment";

/// What met an issued invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// Edited or deleted elsewhere while (or after) it was issued; the edit was undone.
    ChangedAfterIssue,
    /// Issued on two devices at once; one number was kept and the other is void.
    IssuedTwice,
}

impl ConflictKind {
    fn as_str(self) -> &'static str {
        match self {
            ConflictKind::ChangedAfterIssue => "changed_after_issue",
            ConflictKind::IssuedTwice => "issued_twice",
        }
    }

    fn parse(text: &str) -> Option<ConflictKind> {
        match text {
            "changed_after_issue" => Some(ConflictKind::ChangedAfterIssue),
            "issued_twice" => Some(ConflictKind::IssuedTwice),
            _ => None,
        }
    }
}

/// A recorded conflict on an issued invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Conflict {
    pub invoice_id: InvoiceId,
    pub kind: ConflictKind,
    /// The number the invoice keeps.
    pub number: String,
    /// For `issued_twice`: the number given up, which stays unused.
    pub void_number: Option<String>,
    /// The fields whose merged values were put back to the issued ones.
    pub fields: Vec<String>,
    /// The devices whose changes were undone (made concurrently with or after the issue).
    pub devices: Vec<DeviceId>,
    /// Milliseconds since the epoch.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub detected_at: i64,
}

/// The part of an invoice frozen by issuing: everything but its payments.
fn frozen(invoice: &Invoice) -> Invoice {
    Invoice { payments: Vec::new(), ..invoice.clone() }
}

struct IssueChange {
    hash: ChangeHash,
    time: i64,
    issued: Invoice,
}

/// Every change that issued the invoice, with the invoice as of that change.
fn issue_changes(id: DocumentId, doc: &Automerge) -> Vec<IssueChange> {
    doc.get_changes(&[])
        .into_iter()
        .filter(|c| c.message().is_some_and(|m| m.starts_with(ISSUE_MESSAGE)))
        .filter_map(|c| {
            let issued: Invoice = read_record(id, doc, Some(&[c.hash()])).ok()?;
            issued.is_issued().then_some(IssueChange { hash: c.hash(), time: c.timestamp(), issued })
        })
        .collect()
}

/// After a received change merged into invoice `id`: if the invoice is issued and its frozen
/// content is no longer what issuing produced, writes a change that puts it back and records the
/// conflict. Returns whether a change was written.
pub(crate) fn keep_issued(conn: &Connection, id: DocumentId, doc: &mut Automerge, ctx: Ctx) -> Result<bool> {
    // Until every dependency has arrived the document may not read as an invoice yet.
    let Ok(current) = read_record::<Invoice>(id, doc, None) else { return Ok(false) };
    if !current.is_issued() {
        return Ok(false);
    }
    let mut issues = issue_changes(id, doc);
    if issues.is_empty() {
        // Issued without an issue change: only a modified client does this; the roles issue
        // quarantines such changes. Nothing to compare against here.
        return Ok(false);
    }
    // The kept issue: the one whose number the merge chose; else the earliest.
    issues.sort_by_key(|i| (i.issued.number != current.number, i.time, i.hash));
    let winner = &issues[0];
    let mut kept = winner.issued.clone();
    kept.payments = current.payments.clone();
    let changed = frozen(&current) != frozen(&kept);
    let number = kept.number.clone().unwrap_or_default();
    let mut wrote = false;
    if changed {
        let before = document::to_json_value(&current);
        let after = document::to_json_value(&kept);
        let fields: Vec<String> = diff_json(&after, &before).into_iter().map(|f| f.path).collect();
        let devices = undone_devices(doc, winner.hash);
        wrote = commit_json(conn, id, doc, &after, &format!("{KEEP_MESSAGE}{number}"), ctx)?;
        record(conn, id, ConflictKind::ChangedAfterIssue, &number, None, &fields, &devices, Some(winner.hash), ctx)?;
    }
    for lost in &issues[1..] {
        let void = lost.issued.number.clone().unwrap_or_default();
        if void == number {
            continue;
        }
        let devices: Vec<DeviceId> = lost.issued.issued_by.into_iter().collect();
        record(conn, id, ConflictKind::IssuedTwice, &number, Some(&void), &[], &devices, Some(lost.hash), ctx)?;
    }
    Ok(wrote)
}

/// The authors of changes that are not part of the winning issue's history and did more than
/// record a payment or put issued content back.
fn undone_devices(doc: &Automerge, issue: ChangeHash) -> Vec<DeviceId> {
    let mut devices: Vec<DeviceId> = doc
        .get_changes(&[issue])
        .into_iter()
        .filter(|c: &&Change| {
            c.message()
                .is_none_or(|m| !m.starts_with(KEEP_MESSAGE) && m != PAYMENT_MESSAGE && !m.starts_with(ISSUE_MESSAGE))
        })
        .filter_map(|c| device_of(c.actor_id()))
        .collect();
    devices.sort();
    devices.dedup();
    devices
}

#[allow(clippy::too_many_arguments)]
fn record(
    conn: &Connection,
    id: DocumentId,
    kind: ConflictKind,
    number: &str,
    void_number: Option<&str>,
    fields: &[String],
    devices: &[DeviceId],
    cause: Option<ChangeHash>,
    ctx: Ctx,
) -> Result<()> {
    let devices: Vec<String> = devices.iter().map(ToString::to_string).collect();
    conn.prepare_cached(
        "INSERT OR IGNORE INTO conflicts (doc_id, kind, cause, number, void_number, fields, devices, detected_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        id.to_string(),
        kind.as_str(),
        cause.map(|h| h.0.to_vec()).unwrap_or_default(),
        number,
        void_number,
        fields.join("\n"),
        devices.join(","),
        ctx.now.timestamp_millis()
    ])?;
    Ok(())
}

impl Store {
    /// Conflicts recorded on issued invoices, newest first.
    pub fn conflicts(&self) -> Result<Vec<Conflict>> {
        self.read(|conn| {
            let mut statement = conn.prepare(
                "SELECT doc_id, kind, number, void_number, fields, devices, detected_at FROM conflicts
                 ORDER BY detected_at DESC, rowid DESC",
            )?;
            let rows = statement.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (doc, kind, number, void_number, fields, devices, detected_at) = row?;
                let (Ok(invoice_id), Some(kind)) = (doc.parse::<InvoiceId>(), ConflictKind::parse(&kind)) else {
                    return Err(crate::StoreError::Corrupt {
                        path: self.info.data_dir.clone(),
                        detail: format!("a conflict row names {doc:?} as a {kind:?}"),
                    });
                };
                out.push(Conflict {
                    invoice_id,
                    kind,
                    number,
                    void_number,
                    fields: fields.lines().map(str::to_owned).collect(),
                    devices: devices.split(',').filter_map(|d| d.parse().ok()).collect(),
                    detected_at,
                });
            }
            Ok(out)
        })
    }
}
