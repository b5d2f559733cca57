//! Workspace-key epochs on this device's side (the cryptography is `daftar_sync::epoch`):
//! rotating to a new key, handing every key to a newly approved device, and taking in the keys
//! others wrapped for this device.
//!
//! The relays keep the wrapped keys, opaque; the membership document says whose wrapping counts
//! (an approved owner's or admin's, checked by the signature over each wrapped key) and whom to
//! wrap for (every approved device's agreement key, and the recovery key's).

use daftar_domain::{Action, DeviceId, Role, WorkspaceId};
use daftar_keys::Secret;
use daftar_relay_client::{EpochKey, RelayClient, RelayError};
use daftar_store::{MemberStatus, Membership, Store};
use daftar_sync::DeviceSigningKey;
use daftar_sync::epoch::{self, RECOVERY_HOLDER};
use serde::Serialize;

use crate::SyncError;

/// A one-time code given for a command that makes several privileged requests: sent with the
/// first request to each relay, which then lets the rest through within its window (a code is
/// accepted once).
#[derive(Debug)]
pub(crate) struct SecondFactor<'a> {
    code: Option<&'a str>,
    sent_to: std::cell::RefCell<std::collections::HashSet<String>>,
}

impl<'a> SecondFactor<'a> {
    pub(crate) fn new(code: Option<&'a str>) -> Self {
        SecondFactor { code, sent_to: Default::default() }
    }

    /// The code to send to `url`: the first time only.
    pub(crate) fn for_relay(&self, url: &str) -> Option<&'a str> {
        let code = self.code?;
        self.sent_to.borrow_mut().insert(url.to_owned()).then_some(code)
    }
}

/// What `daftar keys rotate` (or a revocation) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rotation {
    /// The new epoch: every envelope from now on is sealed with its key.
    pub epoch: u32,
    /// The devices it was wrapped for (this one included).
    pub devices: Vec<DeviceId>,
    /// Approved devices it could not be wrapped for, because they have published no agreement
    /// key yet (they publish one at their next sync; rotate again then).
    pub skipped: Vec<DeviceId>,
}

/// A 32-byte key from its hex text, if it is one.
pub(crate) fn hex32(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok().and_then(|k| k.try_into().ok())
}

/// `key` of `epoch` wrapped for `holder`, signed by this device.
fn wrapped_for(
    signer: &DeviceSigningKey,
    this_device: DeviceId,
    workspace: WorkspaceId,
    epoch: u32,
    holder: &str,
    recipient: &[u8; 32],
    key: &Secret<32>,
) -> Result<(EpochKey, Vec<u8>), SyncError> {
    use base64::Engine;
    let wrapped = epoch::wrap(recipient, workspace, epoch, holder, key)?;
    let signature = hex::encode(signer.sign(&epoch::statement(workspace, epoch, holder, &wrapped)));
    let key = EpochKey {
        epoch,
        holder: holder.to_owned(),
        wrapped: base64::engine::general_purpose::STANDARD.encode(&wrapped),
        signer: this_device,
        signature,
    };
    Ok((key, wrapped))
}

fn membership_of(store: &Store) -> Result<Membership, SyncError> {
    store
        .membership()?
        .ok_or_else(|| SyncError::Invalid("this device has no membership document yet; run `daftar sync` first".into()))
}

/// Makes a new epoch: a fresh workspace key, wrapped for every approved device and for the
/// recovery key, left with every relay; this device seals with it from now on, and the others
/// as soon as they take it in. A revoked device gets no copy, so it cannot read anything sealed
/// with it. `on_demand` is `daftar keys rotate` (owners); a revocation rotates too (admins).
pub fn rotate(store: &mut Store, totp: Option<&str>, on_demand: bool) -> Result<Rotation, SyncError> {
    let result = rotate_with(store, &SecondFactor::new(totp), on_demand);
    crate::setup::noting_factor(store, result)
}

pub(crate) fn rotate_with(
    store: &mut Store,
    factor: &SecondFactor<'_>,
    on_demand: bool,
) -> Result<Rotation, SyncError> {
    store.permit(if on_demand { Action::RotateKeys } else { Action::ManageDevices })?;
    let relays = store.relays()?;
    if relays.is_empty() {
        return Err(SyncError::NoRelay);
    }
    // The newest epoch first, so the new one follows it.
    take_in(store)?;
    let membership = membership_of(store)?;
    let recovery = membership.recovery_agreement_key.as_deref().and_then(hex32).ok_or_else(|| {
        SyncError::Invalid("the membership document names no recovery agreement key; the key cannot be rotated".into())
    })?;
    let info = store.info().clone();
    let signer = store.device_signing_key()?;
    let epoch = store.current_epoch()? + 1;
    let key = daftar_keys::generate_secret()?;
    let (mut keys, mut devices, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for device in membership.devices.iter().filter(|d| d.status == MemberStatus::Approved) {
        match device.agreement_key.as_deref().and_then(hex32) {
            Some(agreement) => {
                let holder = device.id.to_string();
                keys.push(wrapped_for(&signer, info.device_id, info.workspace_id, epoch, &holder, &agreement, &key)?.0);
                devices.push(device.id);
            }
            None => skipped.push(device.id),
        }
    }
    let (recovery_key, recovery_copy) =
        wrapped_for(&signer, info.device_id, info.workspace_id, epoch, RECOVERY_HOLDER, &recovery, &key)?;
    keys.push(recovery_key);
    for relay in &relays {
        RelayClient::new(&relay.url, info.device_id, &signer)?.with_totp(factor.for_relay(&relay.url)).add_epoch(
            info.workspace_id,
            epoch,
            &keys,
        )?;
    }
    store.add_epoch_key(epoch, &key, true)?;
    store.set_recovery_epoch_copy(epoch, &recovery_copy)?;
    store.record_event(
        "rotate keys",
        serde_json::json!({ "epoch": epoch, "devices": devices, "skipped": skipped, "on_demand": on_demand }),
    )?;
    Ok(Rotation { epoch, devices, skipped })
}

/// Leaves with every relay each epoch's key wrapped for `device` (being approved), whose
/// agreement key is `agreement`.
pub(crate) fn hand_keys(
    store: &Store,
    device: DeviceId,
    agreement: &[u8; 32],
    factor: &SecondFactor<'_>,
) -> Result<(), SyncError> {
    let info = store.info().clone();
    let signer = store.device_signing_key()?;
    let holder = device.to_string();
    let mut keys = Vec::new();
    for epoch in store.epochs()? {
        let key = store.workspace_key(epoch)?;
        keys.push(wrapped_for(&signer, info.device_id, info.workspace_id, epoch, &holder, agreement, &key)?.0);
    }
    for relay in store.relays()? {
        for key in &keys {
            RelayClient::new(&relay.url, info.device_id, &signer)?
                .with_totp(factor.for_relay(&relay.url))
                .put_epoch_key(info.workspace_id, key)?;
        }
    }
    Ok(())
}

/// Whether `key` was wrapped by a device the membership document lets hand out keys.
fn signed_by_manager(membership: &Membership, workspace: WorkspaceId, key: &EpochKey, wrapped: &[u8]) -> bool {
    let Some(signer) = membership.device(key.signer) else { return false };
    let manages = signer.status == MemberStatus::Approved && signer.role >= Role::Admin;
    let statement = epoch::statement(workspace, key.epoch, &key.holder, wrapped);
    manages && hex32(&signer.signing_key).is_some_and(|k| epoch::verify_statement(&k, &statement, &key.signature))
}

/// Takes in the epoch keys the relay holds for this device, and the recovery key's copies.
/// With the membership document at hand, only keys wrapped by an approved owner or admin are
/// taken, and the newest becomes the one new envelopes use; without it (a device being set
/// up), keys are kept for opening what it receives but not used for sealing until checked.
/// Returns how many epochs were new here.
pub fn take_in(store: &mut Store) -> Result<usize, SyncError> {
    let Some(relay) = store.relays()?.into_iter().next() else { return Ok(0) };
    let info = store.info().clone();
    let signer = store.device_signing_key()?;
    let keys = match RelayClient::new(&relay.url, info.device_id, &signer)?.epoch_keys(info.workspace_id, 0) {
        Ok(keys) => keys,
        // A relay from before epochs existed has none to give.
        Err(RelayError::Refused { status: 404, .. }) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    if keys.is_empty() {
        return Ok(0);
    }
    let membership = store.membership()?;
    let agreement = store.agreement_key()?;
    let held = store.epochs()?;
    let me = info.device_id.to_string();
    let mut new = 0;
    for key in keys {
        let wrapped = key.wrapped_bytes()?;
        let checked = membership.as_ref().map(|m| signed_by_manager(m, info.workspace_id, &key, &wrapped));
        if checked == Some(false) {
            // Not wrapped by anyone allowed to: ignored (a relay's forgery, or a demoted signer).
            continue;
        }
        if key.holder == RECOVERY_HOLDER {
            if checked == Some(true) {
                store.set_recovery_epoch_copy(key.epoch, &wrapped)?;
            }
        } else if key.holder == me {
            let opened = agreement.open(info.workspace_id, key.epoch, &me, &wrapped)?;
            if !held.contains(&key.epoch) {
                new += 1;
            }
            store.add_epoch_key(key.epoch, &opened, checked == Some(true))?;
        }
    }
    Ok(new)
}
