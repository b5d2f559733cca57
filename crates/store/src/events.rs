//! What a device did that is not a change to a record — a backup, a restore, an export, a
//! refused action, a key rotation, a wrong second-factor code — kept as a document of its own
//! (one per device, append-only), so that it syncs, encrypted, like everything else and every
//! device's audit log holds every device's events. The audit trigger records each appended
//! event as an entry, chained and signed like the rest.
//!
//! Only the device itself appends to its document, and only appends: other devices refuse
//! anything else (see `quarantine`). A viewer may not push anything, so its events stay as
//! local entries of its own log.

use chrono::{DateTime, Utc};
use daftar_domain::{DeviceId, DocumentId, Role, WorkspaceId};
use rusqlite::TransactionBehavior;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::records::{DocKind, Record};
use crate::store::{Store, commit_json, insert_record};

/// One device's events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEvents {
    pub id: DocumentId,
    pub workspace: WorkspaceId,
    pub device: DeviceId,
    /// Keyed by their own id, oldest first.
    pub events: Vec<DeviceEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEvent {
    pub id: String,
    pub at: DateTime<Utc>,
    pub action: String,
    /// The event's details as JSON text (kept as text so the document's shape never varies).
    pub detail: String,
}

/// The id of `device`'s events document.
pub fn events_id(workspace: WorkspaceId, device: DeviceId) -> DocumentId {
    let mut input = b"daftar device events\0".to_vec();
    input.extend_from_slice(workspace.as_bytes());
    input.extend_from_slice(device.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA256, &input);
    DocumentId::from_uuid(uuid::Uuid::new_v8(digest.as_ref()[..16].try_into().expect("16 bytes")))
}

impl Record for DeviceEvents {
    const KIND: DocKind = DocKind::Events;
    fn document_id(&self) -> DocumentId {
        self.id
    }
}

/// Why a received change to an events document may not be applied, if it may not: only its
/// device appends to it, and nothing is ever changed or removed.
pub(crate) fn judge(before: Option<&DeviceEvents>, after: &DeviceEvents, sender: DeviceId) -> Option<String> {
    if after.device != sender {
        return Some(format!("only device {} records its own events", after.device));
    }
    let kept = before.is_none_or(|b| {
        b.device == after.device
            && after.events.len() >= b.events.len()
            && after.events[..b.events.len()] == b.events[..]
    });
    (!kept).then(|| "events are only ever added, never changed or removed".to_owned())
}

impl Store {
    /// Records an event of this device in the audit log (an export, a backup, a restore, a
    /// refused action, …): appended to this device's events document, so it syncs. Takes `&self`
    /// so that a refusal can be recorded where it happens.
    pub fn record_event(&self, action: &str, detail: serde_json::Value) -> Result<()> {
        let ctx = self.ctx();
        if self.info.role == Role::Viewer {
            // A viewer may not push: its events stay in its own log.
            let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            crate::audit::event(&tx, ctx.now.timestamp_millis(), &ctx.device.to_string(), action, &detail)?;
            crate::audit::seal(&tx, &self.device_signing_key()?)?;
            tx.commit()?;
            return Ok(());
        }
        let id = events_id(self.info.workspace_id, self.info.device_id);
        let event = DeviceEvent {
            id: uuid::Uuid::now_v7().to_string(),
            at: ctx.now,
            action: action.to_owned(),
            detail: detail.to_string(),
        };
        let key = self.device_signing_key()?;
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        match self.cache.take(&tx, id)? {
            None => {
                let record = DeviceEvents {
                    id,
                    workspace: self.info.workspace_id,
                    device: self.info.device_id,
                    events: vec![event],
                };
                insert_record(&tx, &record, action, ctx)?;
            }
            Some(mut loaded) => {
                let mut record: DeviceEvents = crate::document::read_record(id, &loaded.doc, None)?;
                record.events.push(event);
                let json = crate::document::to_json_value(&record);
                // On failure the document is not put back: it is loaded afresh next time.
                commit_json(&tx, id, &mut loaded.doc, &json, action, ctx)?;
                self.cache.put(id, loaded.doc);
            }
        }
        crate::audit::seal(&tx, &key)?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(device: DeviceId, actions: &[&str]) -> DeviceEvents {
        let workspace = WorkspaceId::from_uuid(uuid::Uuid::from_u128(1));
        DeviceEvents {
            id: events_id(workspace, device),
            workspace,
            device,
            events: actions
                .iter()
                .enumerate()
                .map(|(n, a)| DeviceEvent {
                    id: n.to_string(),
                    at: DateTime::UNIX_EPOCH,
                    action: (*a).to_owned(),
                    detail: "{}".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn only_the_device_appends_to_its_own_events_and_never_rewrites_them() {
        let (me, other) =
            (DeviceId::from_uuid(uuid::Uuid::from_u128(2)), DeviceId::from_uuid(uuid::Uuid::from_u128(3)));
        let one = events(me, &["backup"]);
        let two = events(me, &["backup", "export"]);
        assert_eq!(judge(None, &one, me), None, "its first event");
        assert_eq!(judge(Some(&one), &two, me), None, "an appended event");
        assert!(judge(Some(&one), &two, other).unwrap().contains("only device"), "another device's events");
        assert!(judge(Some(&two), &one, me).unwrap().contains("never changed or removed"), "a removal");
        let rewritten = events(me, &["restore", "export"]);
        assert!(judge(Some(&two), &rewritten, me).is_some(), "a rewrite");
        assert!(judge(None, &events(other, &["backup"]), me).is_some(), "a document in another's name");
    }
}
