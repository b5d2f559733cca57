//! The membership document: who belongs to the workspace — each device with its member, role,
//! status and public signing key. It is an Automerge document synced like the others, but it
//! is where every device looks up who may do what, so its own changes are judged hardest: a
//! change counts only if the device that signed it held the role the change needs *in this
//! document*, and the document starts with its creator's device as the only owner. Everything
//! traces back to that device (or to the recovery key, for a device rebuilt with it).
//!
//! Roles are judged in the order changes are stored on the relay: a device's standing is the
//! one the membership document gives it when its change is applied here, and every device
//! applies the relay's log in the same order, so they agree. A device not in the document, or
//! revoked, or signing with another key than the document gives it, has nothing applied.

use chrono::{DateTime, Utc};
use daftar_domain::{Action, DeviceId, DocumentId, Problems, Role, WorkspaceId};
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::records::{DocKind, Record};
use crate::store::{DocCache, Store};

/// The workspace's membership document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Membership {
    pub id: DocumentId,
    pub workspace: WorkspaceId,
    /// The device that created the workspace: the document's first and only owner at first.
    pub creator: DeviceId,
    /// Keyed by device id, so concurrent approvals merge.
    pub devices: Vec<MemberDevice>,
    pub created_at: DateTime<Utc>,
    /// Hex of the X25519 public key derived from the recovery key: every new epoch's key is
    /// also wrapped for it, so backups and a rebuild keep working after rotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_agreement_key: Option<String>,
}

/// One device of the workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct MemberDevice {
    pub id: DeviceId,
    /// The person the device belongs to (several devices may share one).
    pub member: String,
    /// The member's id: the id of their first device. Their devices share one second factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
    pub role: Role,
    pub status: MemberStatus,
    /// Hex of the device's Ed25519 public key: its changes must be signed with it.
    pub signing_key: String,
    /// Hex of the device's X25519 public key: new epochs' workspace keys are wrapped for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement_key: Option<String>,
    /// Who made the last change to this entry.
    pub changed_by: DeviceId,
    pub changed_at: DateTime<Utc>,
    /// For an owner device rebuilt with the recovery key: the recovery key's signature over
    /// the entry (hex), which lets it list itself without anyone to approve it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    Approved,
    Revoked,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Approved => "approved",
            MemberStatus::Revoked => "revoked",
        }
    }
}

/// The membership document's id: derived from the workspace id, so every device names it
/// the same without being told.
pub fn membership_id(workspace: WorkspaceId) -> DocumentId {
    let mut input = b"daftar membership\0".to_vec();
    input.extend_from_slice(workspace.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA256, &input);
    let bytes: [u8; 16] = digest.as_ref()[..16].try_into().expect("16 bytes");
    DocumentId::from_uuid(uuid::Uuid::new_v8(bytes))
}

/// What the recovery key signs for a device rebuilt with it (`signing_key` in hex).
pub fn recovery_statement(workspace: WorkspaceId, device: DeviceId, signing_key: &str) -> Vec<u8> {
    format!("daftar recovered owner\0{workspace}\0{device}\0{signing_key}").into_bytes()
}

impl Record for Membership {
    const KIND: DocKind = DocKind::Membership;
    fn document_id(&self) -> DocumentId {
        self.id
    }
    fn validate(&self) -> Problems {
        let mut problems = Problems::new();
        for (i, device) in self.devices.iter().enumerate() {
            if device.member.trim().is_empty() {
                problems.push(format!("devices[{i}].member"), "name the member this device belongs to");
            }
        }
        problems
    }
}

impl Membership {
    pub fn device(&self, id: DeviceId) -> Option<&MemberDevice> {
        self.devices.iter().find(|d| d.id == id)
    }

    /// The role `id` holds, if it is an approved device.
    pub fn role_of(&self, id: DeviceId) -> Option<Role> {
        self.device(id).filter(|d| d.status == MemberStatus::Approved).map(|d| d.role)
    }
}

/// The membership document as stored, if this device has it.
pub(crate) fn load(conn: &Connection, cache: &DocCache, workspace: WorkspaceId) -> Result<Option<Membership>> {
    let id = membership_id(workspace);
    let Some(loaded) = cache.take(conn, id)? else { return Ok(None) };
    let record = crate::document::read_record::<Membership>(id, &loaded.doc, None).ok();
    cache.put(id, loaded.doc);
    Ok(record)
}

/// The membership document as received changes are judged by, read once per batch and again
/// only after a membership change was applied (reading it for each change would cost a
/// document load per change).
#[derive(Debug)]
pub(crate) struct Judge {
    workspace: WorkspaceId,
    membership: Option<Option<Membership>>,
}

impl Judge {
    pub(crate) fn new(workspace: WorkspaceId) -> Self {
        Judge { workspace, membership: None }
    }

    pub(crate) fn membership(&mut self, conn: &Connection, cache: &DocCache) -> Result<Option<&Membership>> {
        if self.membership.is_none() {
            self.membership = Some(load(conn, cache, self.workspace)?);
        }
        Ok(self.membership.as_ref().and_then(Option::as_ref))
    }

    /// After a membership change: read it afresh next time.
    pub(crate) fn forget(&mut self) {
        self.membership = None;
    }
}

/// Where a received change's signer stands, judged by the membership document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Standing {
    /// No membership document yet (a workspace made before it existed, or its first change
    /// still to come): the relay's word is all there is.
    Unknown,
    Member(Role),
    Refused(String),
}

pub(crate) fn standing(membership: Option<&Membership>, sender: DeviceId, sender_key: Option<&[u8; 32]>) -> Standing {
    let Some(membership) = membership else { return Standing::Unknown };
    let Some(device) = membership.device(sender) else {
        return Standing::Refused(format!("device {sender} is not an approved member of the workspace"));
    };
    if let Some(key) = sender_key
        && hex::encode(key) != device.signing_key
    {
        return Standing::Refused(format!(
            "device {sender} signed with a key the membership document does not give it"
        ));
    }
    match device.status {
        MemberStatus::Revoked => Standing::Refused(format!("device {sender} was revoked from the workspace")),
        MemberStatus::Approved => Standing::Member(device.role),
    }
}

/// What a snapshot's changes are judged by: each device the membership document has ever
/// listed, with the highest role it held over the document's whole history and its key.
///
/// A snapshot does not say where in the log each of its changes stood, so the role a device
/// had *then* is not known; the most it was ever allowed is (a change an accountant made
/// before being made a clerk stays valid). Revoked devices count too: the relays took nothing
/// from them after their revocation, so what of theirs a snapshot covers came before it. What
/// no role the device ever held allows is still refused, and a device never listed, or
/// signing with another key, has nothing applied.
#[derive(Debug, Default)]
pub(crate) struct RolesEver {
    /// `None` before there is a membership document: the relay's word then.
    devices: Option<std::collections::HashMap<DeviceId, (Role, String)>>,
}

impl RolesEver {
    pub(crate) fn load(conn: &Connection, cache: &DocCache, workspace: WorkspaceId) -> Result<Self> {
        let id = membership_id(workspace);
        let Some(loaded) = cache.take(conn, id)? else { return Ok(RolesEver::default()) };
        let mut devices = std::collections::HashMap::new();
        let mut replay = automerge::Automerge::new();
        for change in loaded.doc.get_changes(&[]) {
            if replay.apply_changes([change.clone()]).is_err() {
                continue;
            }
            let Ok(membership) = crate::document::read_record::<Membership>(id, &replay, None) else { continue };
            for device in membership.devices {
                let entry = devices.entry(device.id).or_insert((device.role, device.signing_key.clone()));
                entry.0 = entry.0.max(device.role);
            }
        }
        cache.put(id, loaded.doc);
        Ok(RolesEver { devices: Some(devices) })
    }

    pub(crate) fn standing(&self, sender: DeviceId, sender_key: Option<&[u8; 32]>) -> Standing {
        let Some(devices) = &self.devices else { return Standing::Unknown };
        match devices.get(&sender) {
            None => Standing::Refused(format!("device {sender} was never a member of the workspace")),
            Some((_, key)) if sender_key.is_some_and(|k| hex::encode(k) != *key) => {
                Standing::Refused(format!("device {sender} signed with a key the membership document does not give it"))
            }
            Some((role, _)) => Standing::Member(*role),
        }
    }
}

/// What a change to the membership document needs, or why no role may make it.
pub(crate) fn needed(
    conn: &Connection,
    before: Option<&Membership>,
    after: &Membership,
    sender: DeviceId,
) -> std::result::Result<Vec<Action>, String> {
    let Some(before) = before else {
        // The first change: its creator lists itself, alone, as the owner.
        let alone = after.devices.len() == 1
            && after.creator == sender
            && after.devices[0].id == sender
            && after.devices[0].role == Role::Owner
            && after.devices[0].status == MemberStatus::Approved;
        return if alone {
            Ok(Vec::new())
        } else {
            Err("a membership document must start with its creator as the only owner".into())
        };
    };
    if before.creator != after.creator || before.workspace != after.workspace {
        return Err("the workspace's creator cannot change".into());
    }
    if before.recovery_agreement_key.is_some() && before.recovery_agreement_key != after.recovery_agreement_key {
        return Err("the recovery key's agreement key cannot change".into());
    }
    let mut needs = Vec::new();
    for was in &before.devices {
        let Some(is) = after.device(was.id) else {
            return Err(format!("device {} was removed from the membership (revoke it instead)", was.id));
        };
        if is.signing_key != was.signing_key {
            return Err(format!("device {}'s signing key cannot change", was.id));
        }
        // A device may publish its own agreement key once (a device made before they existed);
        // no one may replace one, or epoch keys could be wrapped for someone else.
        if is.agreement_key != was.agreement_key && (was.agreement_key.is_some() || is.id != sender) {
            return Err(format!("device {}'s agreement key cannot change", was.id));
        }
        if is.status == MemberStatus::Approved && was.status == MemberStatus::Revoked {
            return Err(format!("device {} was revoked and cannot come back (invite it again)", was.id));
        }
        if (is.role, is.status, &is.member) != (was.role, was.status, &was.member) {
            needs.push(Action::ManageDevices);
            if is.role >= Role::Admin || was.role >= Role::Admin {
                needs.push(Action::ChangeAdmins);
            }
        }
    }
    for new in after.devices.iter().filter(|d| before.device(d.id).is_none()) {
        if new.id == sender && new.recovered.is_some() {
            // A device rebuilt with the recovery key lists itself, as an owner.
            let public: Option<[u8; 32]> = conn
                .query_row("SELECT value FROM meta WHERE key = 'recovery_public_key'", [], |r| r.get::<_, String>(0))
                .optional()
                .ok()
                .flatten()
                .and_then(|h| hex::decode(h).ok())
                .and_then(|k| k.try_into().ok());
            let signature = new.recovered.as_deref().and_then(|s| hex::decode(s).ok());
            let statement = recovery_statement(after.workspace, new.id, &new.signing_key);
            let good = match (public, signature) {
                (Some(public), Some(signature)) => {
                    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
                        .verify(&statement, &signature)
                        .is_ok()
                }
                _ => false,
            };
            if !good {
                return Err(format!("device {} claims a recovery the recovery key did not sign", new.id));
            }
            continue;
        }
        needs.push(Action::ManageDevices);
        if new.role >= Role::Admin {
            needs.push(Action::ChangeAdmins);
        }
    }
    Ok(needs)
}

impl Store {
    /// The membership document, if this device has it (a joined device receives it with its
    /// first sync).
    pub fn membership(&self) -> Result<Option<Membership>> {
        load(&self.conn, &self.cache, self.info.workspace_id)
    }

    /// Writes the first membership document: this device, the creator, the only owner.
    pub(crate) fn create_membership(
        &mut self,
        member: &str,
        signing_key: &[u8; 32],
        agreement_key: &[u8; 32],
        recovery_agreement_key: &[u8; 32],
    ) -> Result<()> {
        let now = self.clock.now();
        let membership = Membership {
            id: membership_id(self.info.workspace_id),
            workspace: self.info.workspace_id,
            creator: self.info.device_id,
            devices: vec![MemberDevice {
                id: self.info.device_id,
                member: member.to_owned(),
                member_id: Some(self.info.device_id.to_string()),
                role: Role::Owner,
                status: MemberStatus::Approved,
                signing_key: hex::encode(signing_key),
                agreement_key: Some(hex::encode(agreement_key)),
                changed_by: self.info.device_id,
                changed_at: now,
                recovered: None,
            }],
            created_at: now,
            recovery_agreement_key: Some(hex::encode(recovery_agreement_key)),
        };
        self.create(&membership, "create membership")
    }

    fn change_membership(
        &mut self,
        message: String,
        f: impl FnOnce(&mut Membership, DateTime<Utc>) -> Result<()>,
    ) -> Result<Membership> {
        let id = membership_id(self.info.workspace_id);
        let (membership, ()) = self.update(id, |m: &mut Membership, _, ctx| f(m, ctx.now), |_| message)?;
        Ok(membership)
    }

    /// The id of the member named `member` (the id of their first approved device), if any.
    pub fn member_id_of(&self, member: &str) -> Result<Option<String>> {
        Ok(self.membership()?.and_then(|m| {
            m.devices
                .iter()
                .find(|d| d.status == MemberStatus::Approved && d.member == member)
                .map(|d| d.member_id.clone().unwrap_or_else(|| d.id.to_string()))
        }))
    }

    /// Adds an approved device (`daftar devices approve`): its key and role as the relay
    /// enrolled it, and the member it belongs to (a new one unless the name is already a
    /// member's). Returns the member's id.
    pub fn approve_device(
        &mut self,
        device: DeviceId,
        signing_key: &[u8; 32],
        agreement_key: Option<&[u8; 32]>,
        role: Role,
        member: &str,
    ) -> Result<String> {
        self.permit(Action::ManageDevices)?;
        let member_id = self.member_id_of(member)?.unwrap_or_else(|| device.to_string());
        if role >= Role::Admin {
            self.permit(Action::ChangeAdmins)?;
        }
        let by = self.info.device_id;
        let key = hex::encode(signing_key);
        self.change_membership(format!("approve device {device} as {} for {member}", role.as_str()), |m, now| match m
            .devices
            .iter()
            .find(|d| d.id == device)
        {
            Some(d) if d.status == MemberStatus::Revoked => Err(StoreError::Membership {
                device: device.to_string(),
                reason: "it was revoked and cannot come back; invite it again as a new device".into(),
            }),
            Some(d) if d.signing_key != key => Err(StoreError::Membership {
                device: device.to_string(),
                reason: "it is already a member with another key and cannot be approved again".into(),
            }),
            Some(_) => Ok(()),
            None => {
                m.devices.push(MemberDevice {
                    id: device,
                    member: member.to_owned(),
                    member_id: Some(member_id.clone()),
                    role,
                    status: MemberStatus::Approved,
                    signing_key: key,
                    agreement_key: agreement_key.map(hex::encode),
                    changed_by: by,
                    changed_at: now,
                    recovered: None,
                });
                Ok(())
            }
        })?;
        Ok(member_id)
    }

    /// Marks a device revoked: nothing it signs counts from then on.
    pub fn revoke_device(&mut self, device: DeviceId) -> Result<()> {
        self.permit(Action::ManageDevices)?;
        let role = self.membership()?.and_then(|m| m.device(device).map(|d| d.role));
        if role.is_some_and(|r| r >= Role::Admin) {
            self.permit(Action::ChangeAdmins)?;
        }
        let by = self.info.device_id;
        self.change_membership(format!("revoke device {device}"), |m, now| {
            if let Some(d) = m.devices.iter_mut().find(|d| d.id == device)
                && d.status != MemberStatus::Revoked
            {
                d.status = MemberStatus::Revoked;
                d.changed_by = by;
                d.changed_at = now;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Gives a device another role. Admins change the roles below admin; only an owner makes
    /// or unmakes admins and owners (transferring ownership is making another owner, then
    /// stepping down).
    pub fn set_device_role(&mut self, device: DeviceId, role: Role) -> Result<()> {
        self.permit(Action::ManageDevices)?;
        let current = self
            .membership()?
            .and_then(|m| m.device(device).cloned())
            .ok_or_else(|| StoreError::NotFound { kind: "member device", id: device.to_string() })?;
        if current.status == MemberStatus::Revoked {
            return Err(StoreError::Membership {
                device: device.to_string(),
                reason: "it was revoked; its role cannot change".into(),
            });
        }
        if role >= Role::Admin || current.role >= Role::Admin {
            self.permit(Action::ChangeAdmins)?;
        }
        let by = self.info.device_id;
        let message = format!("change role of {device} from {} to {}", current.role.as_str(), role.as_str());
        self.change_membership(message, |m, now| {
            if let Some(d) = m.devices.iter_mut().find(|d| d.id == device) {
                d.role = role;
                d.changed_by = by;
                d.changed_at = now;
            }
            Ok(())
        })?;
        self.refresh_role()
    }

    /// Lists this device, rebuilt with the recovery key, as an owner: `signature` is the
    /// recovery key's over [`recovery_statement`], since no one may be left to approve it.
    pub fn list_recovered_device(&mut self, member: &str, signature: &[u8; 64]) -> Result<()> {
        let device = self.info.device_id;
        let key = hex::encode(self.device_signing_key()?.public_key());
        let agreement = hex::encode(self.agreement_key()?.public_key());
        let signature = hex::encode(signature);
        self.change_membership(format!("recovered owner device {device}"), |m, now| {
            if m.device(device).is_none() {
                m.devices.push(MemberDevice {
                    id: device,
                    member: member.to_owned(),
                    member_id: Some(device.to_string()),
                    role: Role::Owner,
                    status: MemberStatus::Approved,
                    signing_key: key,
                    agreement_key: Some(agreement),
                    changed_by: device,
                    changed_at: now,
                    recovered: Some(signature),
                });
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Publishes this device's agreement key in its membership entry, if the entry has none
    /// (a device made before agreement keys existed), so rotations can include it.
    pub fn publish_agreement_key(&mut self) -> Result<bool> {
        let device = self.info.device_id;
        let listed = self.membership()?.and_then(|m| m.device(device).cloned());
        if !listed.is_some_and(|d| d.agreement_key.is_none() && d.status == MemberStatus::Approved) {
            return Ok(false);
        }
        let agreement = hex::encode(self.agreement_key()?.public_key());
        self.change_membership(format!("publish agreement key of {device}"), |m, _| {
            if let Some(d) = m.devices.iter_mut().find(|d| d.id == device) {
                d.agreement_key.get_or_insert(agreement);
            }
            Ok(())
        })?;
        Ok(true)
    }

    /// Takes this device's role from the membership document, when it lists it (an owner or
    /// admin may have changed it).
    pub(crate) fn refresh_role(&mut self) -> Result<()> {
        let Some(role) = self.membership()?.and_then(|m| m.role_of(self.info.device_id)) else { return Ok(()) };
        if role != self.info.role {
            self.conn.execute("UPDATE meta SET value = ?1 WHERE key = 'role'", [role.as_str()])?;
            self.info.role = role;
        }
        Ok(())
    }
}
