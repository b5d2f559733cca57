//! Judging what a received change does against the role of the device that signed it. The
//! sender's own `Store::permit` is not to be trusted — a modified client skips it — so every
//! device checks every change it receives: it applies the change to a fork of the document,
//! compares the record before and after (created, edited, issued, a note, a payment, moved to or
//! out of the trash, settings changed), and refuses what the sender's role does not allow. A
//! refused change is not applied but kept, with the reason, for admins (`daftar sync
//! quarantine`); changes built on it cannot apply either, since their dependency never does.

use automerge::{Automerge, Change, ReadDoc};
use daftar_domain::{Action, Customer, DeviceId, DocumentId, Invoice, Item, Role};
use rusqlite::params;
use serde::Serialize;

use crate::document::read_record;
use crate::error::Result;
use crate::membership::Membership;
use crate::records::{DocKind, Record, WorkspaceSettings};
use crate::store::{Ctx, Store, load_doc};

/// A received change that was not applied, because its sender's role does not allow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct QuarantinedChange {
    pub document: String,
    pub kind: String,
    /// Hex of the Automerge change hash.
    pub change: String,
    pub sender: String,
    /// The sender's role when the change arrived.
    pub role: String,
    pub reason: String,
    /// Milliseconds since the epoch.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at: i64,
}

/// What a change does, as the actions of the permission matrix it needs (empty: nothing the
/// matrix restricts, such as a change that alters nothing), or why no role may make it.
fn actions(
    conn: &rusqlite::Connection,
    kind: DocKind,
    id: DocumentId,
    before: Option<&Automerge>,
    after: &Automerge,
    sender: DeviceId,
) -> std::result::Result<Vec<Action>, String> {
    fn pair<R: Record>(id: DocumentId, before: Option<&Automerge>, after: &Automerge) -> Option<(Option<R>, R)> {
        let after = read_record::<R>(id, after, None).ok()?;
        let before = before.and_then(|d| read_record::<R>(id, d, None).ok());
        Some((before, after))
    }
    let trash = |was: bool, is: bool, delete: Action| match (was, is) {
        (false, true) => vec![delete],
        (true, false) => vec![Action::RestoreFromTrash],
        _ => vec![],
    };
    Ok(match kind {
        DocKind::Events => {
            let Some((before, after)) = pair::<crate::events::DeviceEvents>(id, before, after) else {
                return Err("the change leaves an events document unreadable".into());
            };
            return match crate::events::judge(before.as_ref(), &after, sender) {
                Some(reason) => Err(reason),
                None => Ok(Vec::new()),
            };
        }
        DocKind::Membership => {
            let Some((before, after)) = pair::<Membership>(id, before, after) else {
                return Err("the change leaves the membership document unreadable".into());
            };
            return crate::membership::needed(conn, before.as_ref(), &after, sender);
        }
        DocKind::Invoice => {
            // A document that does not read as an invoice yet (waiting for changes) cannot be
            // judged on its content; its creation is a draft's at least.
            let Some((before, after)) = pair::<Invoice>(id, before, after) else {
                return Ok(vec![Action::EditDrafts]);
            };
            let mut needed = Vec::new();
            let Some(before) = before else {
                needed.push(Action::EditDrafts);
                if after.original.is_some() {
                    needed.push(Action::MakeNotes);
                }
                if after.is_issued() {
                    needed.push(Action::IssueInvoices);
                }
                if !after.payments.is_empty() {
                    needed.push(Action::RecordPayments);
                }
                return Ok(needed);
            };
            needed.extend(trash(before.deleted.is_some(), after.deleted.is_some(), Action::DeleteDrafts));
            if !before.is_issued() && after.is_issued() {
                needed.push(Action::IssueInvoices);
            }
            if before.original.is_none() && after.original.is_some() {
                needed.push(Action::MakeNotes);
            }
            if crate::document::to_json_value(&before.payments) != crate::document::to_json_value(&after.payments) {
                needed.push(Action::RecordPayments);
            }
            let content = |i: &Invoice| {
                let mut i = i.clone();
                i.deleted = None;
                i.payments.clear();
                crate::document::to_json_value(&i)
            };
            if needed.is_empty() && content(&before) != content(&after) {
                needed.push(Action::EditDrafts);
            }
            needed
        }
        DocKind::Customer => record_actions::<Customer>(id, before, after, Action::EditCustomers),
        DocKind::Item => record_actions::<Item>(id, before, after, Action::EditItems),
        DocKind::Settings => {
            let Some((before, after)) = pair::<WorkspaceSettings>(id, before, after) else {
                return Ok(vec![Action::EditSettings]);
            };
            let Some(before) = before else { return Ok(vec![Action::EditSettings]) };
            let mut needed = Vec::new();
            if crate::document::to_json_value(&before.seller) != crate::document::to_json_value(&after.seller) {
                needed.push(Action::EditSettings);
            }
            if before.relays != after.relays {
                needed.push(Action::ManageDevices);
            }
            // A device may list itself (every joining device does); only managers change the
            // entries of others.
            let others = |s: &WorkspaceSettings| {
                crate::document::to_json_value(&s.devices.iter().filter(|d| d.id != sender).collect::<Vec<_>>())
            };
            if others(&before) != others(&after) {
                needed.push(Action::ManageDevices);
            }
            needed
        }
    })
}

fn record_actions<R: Record>(
    id: DocumentId,
    before: Option<&Automerge>,
    after: &Automerge,
    edit: Action,
) -> Vec<Action> {
    let Ok(after) = read_record::<R>(id, after, None) else { return vec![edit] };
    let Some(before) = before.and_then(|d| read_record::<R>(id, d, None).ok()) else { return vec![edit] };
    match (before.tombstone().is_some(), after.tombstone().is_some()) {
        (true, false) => vec![Action::RestoreFromTrash],
        (false, true) => vec![edit],
        _ if crate::document::to_json_value(&before) != crate::document::to_json_value(&after) => vec![edit],
        _ => vec![],
    }
}

/// Why `change` from `sender` may not be applied to document `id`, if it may not. `role` is
/// the sender's, or `Err` with why it has none (not a member, revoked): such a device may
/// only list itself in the membership with the recovery key's signature.
pub(crate) fn judge(
    conn: &rusqlite::Connection,
    id: DocumentId,
    kind: DocKind,
    sender: DeviceId,
    role: std::result::Result<Role, &str>,
    change: &Change,
) -> Result<Option<String>> {
    if role == Ok(Role::Owner) && !matches!(kind, DocKind::Membership | DocKind::Events) {
        return Ok(None);
    }
    if let Err(reason) = role
        && kind != DocKind::Membership
    {
        return Ok(Some(reason.to_owned()));
    }
    let before = load_doc(conn, id)?.map(|loaded| loaded.doc);
    let mut after = before.as_ref().map_or_else(Automerge::new, Automerge::fork);
    if after.apply_changes([change.clone()]).is_err() {
        return Ok(Some("the change does not apply to the document".into()));
    }
    if after.get_change_by_hash(&change.hash()).is_none() {
        // Waiting for changes it depends on: it takes no effect until they arrive, and is
        // judged with the one that completes it.
        return Ok(None);
    }
    let needed = match actions(conn, kind, id, before.as_ref(), &after, sender) {
        Ok(needed) => needed,
        Err(reason) => return Ok(Some(reason)),
    };
    Ok(match role {
        Ok(role) => needed
            .into_iter()
            .find(|a| !role.may(*a))
            .map(|action| daftar_domain::Forbidden { role, action }.to_string()),
        Err(reason) if !needed.is_empty() => Some(reason.to_owned()),
        Err(_) => None,
    })
}

/// Keeps a refused change.
pub(crate) fn keep(
    conn: &rusqlite::Connection,
    ctx: Ctx,
    incoming: &crate::exchange::IncomingChange<'_>,
    role: Option<Role>,
    change: &Change,
    reason: &str,
) -> Result<()> {
    let crate::exchange::IncomingChange { document: id, kind, sender, bytes, proof, .. } = *incoming;
    conn.prepare_cached(
        "INSERT OR IGNORE INTO quarantine (doc_id, hash, kind, bytes, sender, role, reason, at, proof)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        id.to_string(),
        change.hash().0.as_slice(),
        kind.as_str(),
        bytes,
        sender.to_string(),
        role.map_or("none", Role::as_str),
        reason,
        ctx.now.timestamp_millis(),
        proof.map(|p| p.as_slice())
    ])?;
    Ok(())
}

impl Store {
    /// Received changes that were not applied because their sender's role does not allow them,
    /// newest first.
    pub fn quarantine(&self) -> Result<Vec<QuarantinedChange>> {
        let mut statement = self
            .conn
            .prepare("SELECT doc_id, kind, hash, sender, role, reason, at FROM quarantine ORDER BY at DESC, doc_id")?;
        let rows = statement.query_map([], |r| {
            Ok(QuarantinedChange {
                document: r.get(0)?,
                kind: r.get(1)?,
                change: hex::encode(r.get::<_, Vec<u8>>(2)?),
                sender: r.get(3)?,
                role: r.get(4)?,
                reason: r.get(5)?,
                at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
