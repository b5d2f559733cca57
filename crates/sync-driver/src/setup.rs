//! A workspace on its relays: adding a relay, inviting, joining, recovering, listing and
//! revoking devices.

use std::path::Path;
use std::sync::Arc;

use daftar_domain::{Action, DeviceId, Role, Series, WorkspaceId};
use daftar_relay_client::{RelayClient, RelayError};
use daftar_store::{ExistingWorkspace, InitOptions, KeyChoice, MemberStatus, PendingJoin, Store, SystemClock};
use daftar_sync::{DeviceSigningKey, InviteCode, RecoveryKey};
use serde::Serialize;
use uuid::Uuid;

use crate::{RelayReport, SyncError};

fn normalise(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

/// Adds a relay to this device and names it in the workspace settings, so every device adopts
/// it. On the first relay the workspace is created (this device its owner). On a further relay
/// this device may already be enrolled (it joined through it); otherwise the workspace is created
/// there — by an owner's device only — with the workspace's recovery material and every device the
/// first relay knows. Returns the URL as recorded.
pub fn add_relay(store: &mut Store, url: &str) -> Result<String, SyncError> {
    let url = normalise(url);
    let key = store.device_signing_key()?;
    let info = store.info().clone();
    let client = RelayClient::new(&url, info.device_id, &key)?;
    match store.relays()?.into_iter().next() {
        None => match client.create_workspace(
            info.workspace_id,
            &store.recovery_public_key()?,
            &store.recovery_wrapped_workspace_key()?,
        ) {
            Ok(()) => {}
            // This device is already enrolled there (a joined or recovered device).
            Err(RelayError::Refused { code, .. }) if code == "workspace_exists" => {}
            Err(e) => return Err(e.into()),
        },
        Some(known) => match client.members(info.workspace_id) {
            Ok(_) => {}
            Err(RelayError::Refused { code, .. }) if code == "not_a_member" => {
                extend_to(store, &client, &known.url, &key)?;
            }
            Err(e) => return Err(e.into()),
        },
    }
    store.add_relay(&url)?;
    store.announce_relay(&url)?;
    Ok(url)
}

/// What adding a relay did about the second factor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AddedRelay {
    pub url: String,
    /// An owner's or admin's device added a further relay without a code: the relay has no copy
    /// of their second factor yet (`daftar mfa carry --totp CODE`).
    pub second_factor_needed: bool,
    /// The relays the second factor was carried to (with a code).
    pub second_factor_carried_to: Vec<String>,
}

/// [`add_relay`], then for an owner's or admin's device adding a further relay, carries their
/// second factor to it when `totp` (a current code) is given ([`mfa_carry`]).
pub fn add_relay_carrying_factor(store: &mut Store, url: &str, totp: Option<&str>) -> Result<AddedRelay, SyncError> {
    let url = add_relay(store, url)?;
    let manager = store.relays()?.len() > 1 && store.info().role >= Role::Admin;
    let carried = match totp.map(str::trim).filter(|c| !c.is_empty()) {
        Some(code) if manager => mfa_carry(store, code)?,
        _ => Vec::new(),
    };
    let needed = manager && !carried.contains(&url);
    Ok(AddedRelay { url, second_factor_needed: needed, second_factor_carried_to: carried })
}

/// Creates the workspace on a further relay: only an owner's device may (it becomes the owner
/// there), with the workspace's recovery material and every device `known` has.
fn extend_to(
    store: &mut Store,
    client: &RelayClient<'_>,
    known: &str,
    key: &DeviceSigningKey,
) -> Result<(), SyncError> {
    let info = store.info().clone();
    let first = RelayClient::new(known, info.device_id, key)?;
    let members = first.members(info.workspace_id)?;
    let role = members.iter().find(|m| m.device_id == info.device_id).map(|m| m.role.as_str());
    if role != Some("owner") {
        return Err(SyncError::Invalid(format!(
            "only an owner's device can add a relay to the workspace (this device is {}); ask an owner to run `daftar relay add {}`",
            role.unwrap_or("not a member"),
            client.url()
        )));
    }
    // The workspace's own recovery material, which a joined device did not start with.
    let (public, wrapped) = first.recovery_material(info.workspace_id)?;
    store.set_recovery_material(&public, &wrapped)?;
    client.create_workspace(info.workspace_id, &public, &wrapped)?;
    for member in members.iter().filter(|m| m.device_id != info.device_id) {
        client.register_device(info.workspace_id, member)?;
    }
    Ok(())
}

/// Adds to this device the relays the workspace names that it lacks. Returns how many.
pub(crate) fn adopt_relays(store: &mut Store) -> Result<usize, SyncError> {
    // A joined device has no settings document until its first pull.
    let Ok(settings) = store.settings() else { return Ok(0) };
    let local: Vec<String> = store.relays()?.into_iter().map(|r| r.url).collect();
    let mut adopted = 0;
    for url in settings.relays.iter().filter(|u| !local.contains(u)) {
        store.add_relay(url)?;
        adopted += 1;
    }
    Ok(adopted)
}

/// Removes a relay from this device (the relay keeps its copy).
pub fn remove_relay(store: &mut Store, url: &str) -> Result<(), SyncError> {
    let url = normalise(url);
    if !store.remove_relay(&url)? {
        return Err(SyncError::UnknownRelay { url });
    }
    store.withdraw_relay(&url)?;
    Ok(())
}

/// Records a one-time code the relay refused (wrong, reused, or too many) in the audit log.
pub(crate) fn noting_factor<T>(store: &Store, result: Result<T, SyncError>) -> Result<T, SyncError> {
    if let Err(SyncError::Relay(RelayError::Refused { code, message, .. })) = &result
        && matches!(code.as_str(), "mfa_invalid" | "mfa_locked")
    {
        let _ = store.record_event("second factor refused", serde_json::json!({ "code": code, "message": message }));
    }
    result
}

fn first_relay(store: &Store, relay: Option<&str>) -> Result<String, SyncError> {
    match relay {
        Some(url) => Ok(normalise(url)),
        None => store.relays()?.into_iter().next().map(|r| r.url).ok_or(SyncError::NoRelay),
    }
}

/// A new invite, registered with the relay.
#[derive(Debug)]
pub struct Invite {
    pub code: InviteCode,
    pub role: String,
    pub relay: String,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
}

/// Registers a one-time invite with the relay (the first one unless `relay` is given). The
/// workspace key travels wrapped by a secret only the code carries.
pub fn invite(
    store: &Store,
    role: &str,
    relay: Option<&str>,
    hours: u32,
    now_ms: i64,
    totp: Option<&str>,
) -> Result<Invite, SyncError> {
    let result = invite_inner(store, role, relay, hours, now_ms, totp);
    noting_factor(store, result)
}

fn invite_inner(
    store: &Store,
    role: &str,
    relay: Option<&str>,
    hours: u32,
    now_ms: i64,
    totp: Option<&str>,
) -> Result<Invite, SyncError> {
    let Some(role_wanted) = daftar_domain::Role::parse(role) else {
        return Err(SyncError::UnknownRole(role.to_owned()));
    };
    store.permit(daftar_domain::Action::ManageDevices)?;
    if role_wanted >= daftar_domain::Role::Admin {
        store.permit(daftar_domain::Action::ChangeAdmins)?;
    }
    let relay = first_relay(store, relay)?;
    let info = store.info().clone();
    let key = store.device_signing_key()?;
    let code = InviteCode::generate(&relay, info.workspace_id)?;
    let epoch = store.current_epoch()?;
    let wrapped = code.wrap_workspace_key(epoch, &store.workspace_key(epoch)?)?;
    let expires_at = now_ms + i64::from(hours) * 3_600_000;
    // The code names one relay; the same token is left with every relay of the workspace so
    // the new device can enrol on each.
    let mut relays = vec![relay.clone()];
    relays.extend(store.relays()?.into_iter().map(|r| r.url).filter(|u| *u != relay));
    for url in &relays {
        RelayClient::new(url, info.device_id, &key)?.with_totp(totp).create_invite(
            info.workspace_id,
            &daftar_sync::relay_auth::token_hash(code.token()),
            role,
            expires_at,
            &wrapped,
        )?;
    }
    store.record_event("invite", serde_json::json!({ "role": role, "relay": relay, "expires_at": expires_at }))?;
    Ok(Invite { code, role: role.to_owned(), relay, expires_at })
}

/// A device of the workspace (`daftar devices list --json`): the relay's view (enrolled,
/// pending, revoked) joined with the membership document's (member, role).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceRecord {
    pub device_id: DeviceId,
    /// The member the device belongs to, as the membership document names it (or the device's
    /// name in the settings, for a device the document does not list yet).
    pub member: Option<String>,
    pub role: String,
    /// `pending`, `approved` or `revoked`.
    pub status: &'static str,
    pub this_device: bool,
}

pub fn devices(store: &Store) -> Result<Vec<DeviceRecord>, SyncError> {
    let relay = first_relay(store, None)?;
    let info = store.info().clone();
    let key = store.device_signing_key()?;
    let names: Vec<(DeviceId, String)> =
        store.settings().map(|s| s.devices.into_iter().map(|d| (d.id, d.name)).collect()).unwrap_or_default();
    let membership = store.membership()?;
    let members = RelayClient::new(&relay, info.device_id, &key)?.members(info.workspace_id)?;
    Ok(members
        .into_iter()
        .map(|m| {
            let listed = membership.as_ref().and_then(|doc| doc.device(m.device_id));
            let status = match (m.status(), listed.map(|d| d.status)) {
                ("approved", Some(MemberStatus::Revoked)) => "revoked",
                (relay, _) => relay,
            };
            DeviceRecord {
                member: listed
                    .map(|d| d.member.clone())
                    .or_else(|| names.iter().find(|(id, _)| *id == m.device_id).map(|(_, name)| name.clone())),
                role: listed.map_or(m.role.clone(), |d| d.role.as_str().to_owned()),
                status,
                this_device: m.device_id == info.device_id,
                device_id: m.device_id,
            }
        })
        .collect())
}

/// Approves a device that joined with an invite: the membership document lists it (with the
/// key and role the relay enrolled it with, and `member`), that change goes out, and only then
/// do the relays let the device in — so every device knows it before its first change.
pub fn approve(store: &mut Store, device: DeviceId, member: Option<&str>, totp: Option<&str>) -> Result<(), SyncError> {
    let result = approve_inner(store, device, member, totp);
    noting_factor(store, result)
}

fn approve_inner(
    store: &mut Store,
    device: DeviceId,
    member: Option<&str>,
    totp: Option<&str>,
) -> Result<(), SyncError> {
    store.permit(Action::ManageDevices)?;
    let factor = crate::rotation::SecondFactor::new(totp);
    let info = store.info().clone();
    let key = store.device_signing_key()?;
    let relays = store.relays()?;
    let first = relays.first().ok_or(SyncError::NoRelay)?;
    let members = RelayClient::new(&first.url, info.device_id, &key)?.members(info.workspace_id)?;
    let target = members.iter().find(|m| m.device_id == device).cloned().ok_or_else(|| {
        SyncError::Invalid(format!("no device {device} has joined the workspace (daftar devices list)"))
    })?;
    if target.revoked {
        return Err(SyncError::Invalid(format!("device {device} was revoked; invite it again as a new device")));
    }
    let role = Role::parse(&target.role).ok_or_else(|| SyncError::UnknownRole(target.role.clone()))?;
    let public: [u8; 32] = crate::rotation::hex32(&target.public_key)
        .ok_or_else(|| SyncError::Invalid(format!("the relay lists device {device} with a malformed key")))?;
    let agreement: Option<[u8; 32]> = target.agreement_key.as_deref().and_then(crate::rotation::hex32);
    check_join_proof(store, &target, &public, agreement.as_ref())?;
    let default_member = format!("member {}", &device.to_string()[..8]);
    let member_id =
        store.approve_device(device, &public, agreement.as_ref(), role, member.unwrap_or(&default_member))?;
    push_membership(store)?;
    // Every epoch's key, wrapped for the device, before the relays let it in.
    if let Some(agreement) = &agreement {
        crate::rotation::hand_keys(store, device, agreement, &factor)?;
    }
    let approved = daftar_relay_client::Member { approved: true, member: Some(member_id.clone()), ..target };
    for relay in &relays {
        let client = RelayClient::new(&relay.url, info.device_id, &key)?.with_totp(factor.for_relay(&relay.url));
        match client.approve(info.workspace_id, device, Some(&member_id)) {
            Ok(()) => {}
            // A further relay the device has not enrolled on yet learns it as approved.
            Err(RelayError::Refused { code, .. }) if code == "not_found" => {
                client.register_device(info.workspace_id, &approved)?
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Checks the proof a joined device left with the relay that the keys the relay lists for it
/// are the ones it enrolled with (keyed with the workspace key of the invite's epoch, which the
/// relay never has). Without it, a relay could list its own keys for the device and be handed
/// the workspace key at approval. It must use the newest epoch: one held by a device revoked
/// since could have been used to make it.
fn check_join_proof(
    store: &Store,
    target: &daftar_relay_client::Member,
    public: &[u8; 32],
    agreement: Option<&[u8; 32]>,
) -> Result<(), SyncError> {
    let device = target.device_id;
    let refuse = |why: String| Err(SyncError::Invalid(why));
    let Some((epoch, mac)) = target.join_proof.as_deref().and_then(|p| p.split_once(':')) else {
        return refuse(format!(
            "device {device} has not proven that the keys the relay lists for it are its own (its join did not finish, or the relay changed its record): do not approve it; invite it again"
        ));
    };
    let (Ok(epoch), Ok(mac), Some(agreement)) = (epoch.parse::<u32>(), hex::decode(mac), agreement) else {
        return refuse(format!("the relay's record of device {device} has a malformed join proof: do not approve it"));
    };
    let current = store.current_epoch()?;
    if epoch < current {
        return refuse(format!(
            "device {device} joined with an invite made before the workspace key was rotated (epoch {epoch}, now {current}): make a new invite and join again"
        ));
    }
    let info = store.info();
    let key = store.workspace_key(epoch)?;
    let claim = daftar_sync::invite::JoinClaim {
        workspace: info.workspace_id,
        device,
        signing_key: public,
        agreement_key: agreement,
        epoch,
    };
    if !claim.verify(&key, &mac) {
        return refuse(format!(
            "the keys the relay lists for device {device} are not the ones it joined with: the relay may have replaced them; do not approve it"
        ));
    }
    Ok(())
}

/// Sends this device's membership change now: it must reach a relay before the relays act on
/// it.
fn push_membership(store: &mut Store) -> Result<(), SyncError> {
    let reports = crate::sync_rounds(store)?;
    if store.relays()?.iter().all(|r| r.pending > 0) {
        let reasons =
            reports.iter().map(|r| format!("{}: {}", r.url, r.error.as_deref().unwrap_or("not sent"))).collect();
        return Err(SyncError::NoRelayReached { reasons });
    }
    Ok(())
}

/// Gives a device another role: in the membership document (which every device judges by)
/// and on every relay (for its coarse checks).
pub fn set_role(store: &mut Store, device: DeviceId, role: Role, totp: Option<&str>) -> Result<(), SyncError> {
    let result = set_role_inner(store, device, role, totp);
    noting_factor(store, result)
}

fn set_role_inner(store: &mut Store, device: DeviceId, role: Role, totp: Option<&str>) -> Result<(), SyncError> {
    store.set_device_role(device, role)?;
    push_membership(store)?;
    let info = store.info().clone();
    let key = store.device_signing_key()?;
    for relay in store.relays()? {
        RelayClient::new(&relay.url, info.device_id, &key)?.with_totp(totp).set_role(
            info.workspace_id,
            device,
            role.as_str(),
        )?;
    }
    Ok(())
}

/// Revokes a device on every relay of this device — the relays refuse it from then on — and
/// in the membership document, so nothing it signs counts on any device; then rotates the
/// workspace key, so it cannot read what is written after.
pub fn revoke(store: &mut Store, device: DeviceId, totp: Option<&str>) -> Result<crate::Rotation, SyncError> {
    let result = revoke_inner(store, device, totp);
    noting_factor(store, result)
}

fn revoke_inner(store: &mut Store, device: DeviceId, totp: Option<&str>) -> Result<crate::Rotation, SyncError> {
    store.permit(Action::ManageDevices)?;
    let factor = crate::rotation::SecondFactor::new(totp);
    let info = store.info().clone();
    let key = store.device_signing_key()?;
    let relays = store.relays()?;
    if relays.is_empty() {
        return Err(SyncError::NoRelay);
    }
    for relay in relays {
        RelayClient::new(&relay.url, info.device_id, &key)?
            .with_totp(factor.for_relay(&relay.url))
            .revoke(info.workspace_id, device)?;
    }
    if store.membership()?.is_some_and(|m| m.device(device).is_some()) {
        store.revoke_device(device)?;
        push_membership(store)?;
    }
    // A new workspace key the revoked device never receives: nothing written from now on is
    // readable with what it holds.
    crate::rotation::rotate_with(store, &factor, false)
}

/// A data directory set up as a device of an existing workspace, and what its first sync did.
#[derive(Debug)]
pub struct SetUp {
    pub store: Store,
    /// `pending` (a joined device, until an owner or admin approves it) or `approved`.
    pub status: &'static str,
    pub report: RelayReport,
    /// The snapshot it started from, if the relay had one.
    pub snapshot: Option<crate::BootstrapReport>,
    /// Why the relay's snapshot could not be used, if it could not (the log was pulled instead).
    pub snapshot_error: Option<String>,
}

/// What a device's first sync did.
#[derive(Debug, Default)]
pub struct FirstSync {
    pub report: RelayReport,
    pub snapshot: Option<crate::BootstrapReport>,
    pub snapshot_error: Option<String>,
}

fn series_for(prefix: char, device: DeviceId) -> Result<Series, SyncError> {
    Series::for_device(prefix, device).map_err(|e| SyncError::Invalid(e.0))
}

/// Sets up `dir` as a new device of an existing workspace (nothing pulled yet).
fn init_device(
    dir: &Path,
    relay: &str,
    existing: ExistingWorkspace,
    series: Series,
    name: &str,
    key: KeyChoice,
) -> Result<Store, SyncError> {
    let (mut store, _) = Store::init(
        dir,
        InitOptions {
            seller: Default::default(),
            series: Some(series),
            key,
            device_name: name.into(),
            member: None,
            existing: Some(existing),
        },
        Arc::new(SystemClock),
    )?;
    store.add_relay(relay)?;
    Ok(store)
}

/// A new device's first sync: the newest snapshot, then the tail of the log, the workspace's
/// recovery material, enrolment on its other relays; then it lists itself.
fn first_sync(
    store: &mut Store,
    relay: &str,
    name: &str,
    enrol_further: impl Fn(&str) -> Result<(), SyncError>,
    list_in_membership: impl FnOnce(&mut Store) -> Result<(), SyncError>,
) -> Result<FirstSync, SyncError> {
    // The newest snapshot first, then the tail of the log; a snapshot that cannot be used
    // (tampered, replaced meanwhile) leaves the whole log to pull.
    let (snapshot, snapshot_error) = match crate::bootstrap(store) {
        Ok(report) => (report, None),
        Err(SyncError::Store(e)) => return Err(SyncError::Store(e)),
        Err(e) => (None, Some(e.to_string())),
    };
    let report = crate::sync_rounds(store)?.into_iter().next().unwrap_or_default();
    if let Some(error) = &report.error {
        return Err(SyncError::Invalid(format!(
            "this device is set up but its first sync failed ({error}); run `daftar sync` to try again"
        )));
    }
    // The workspace's own recovery material replaces the placeholder a joined device starts with.
    let info = store.info().clone();
    let (public, wrapped) =
        RelayClient::new(relay, info.device_id, &store.device_signing_key()?)?.recovery_material(info.workspace_id)?;
    store.set_recovery_material(&public, &wrapped)?;
    // The workspace's other relays (the round adopted them): enrol there too.
    for other in store.relays()?.into_iter().filter(|r| r.url != relay) {
        enrol_further(&other.url)?;
    }
    list_in_membership(store)?;
    // A viewer may not write: the relay refuses its pushes, so it does not list itself.
    if store.info().role > Role::Viewer {
        store.list_this_device(name)?;
        crate::sync_rounds(store)?;
    }
    Ok(FirstSync { report, snapshot, snapshot_error })
}

/// A new device's id, signing seed and key, and agreement seed.
type NewDevice = (Uuid, daftar_keys::Secret<32>, DeviceSigningKey, daftar_keys::Secret<32>);

fn new_device() -> Result<NewDevice, SyncError> {
    let seed = daftar_keys::generate_secret()?;
    let key = DeviceSigningKey::from_seed(&seed);
    Ok((Uuid::now_v7(), seed, key, daftar_keys::generate_secret()?))
}

/// Rebuilds a lost workspace into `dir` from a relay and the recovery key. `key` says where the
/// new data directory's database key goes.
pub fn recover(
    dir: &Path,
    relay: &str,
    workspace: WorkspaceId,
    recovery: RecoveryKey,
    key_choice: KeyChoice,
) -> Result<SetUp, SyncError> {
    let relay = normalise(relay);
    let (id, seed, key, agreement_seed) = new_device()?;
    let device = DeviceId::from_uuid(id);
    let client = RelayClient::new(&relay, device, &key)?;
    let (wrapped, epochs) = client
        .recover(workspace, &recovery.relay_signing_key())
        .map_err(|source| SyncError::SetUpRefused { what: "recovery", source })?;
    let workspace_key = recovery.unwrap_workspace_key(workspace, &wrapped)?;
    // Every later epoch's key: the recovery key opens its copy of each.
    let later = crate::recovery_epochs(&recovery, workspace, &epochs)?;
    let recovery_signer = recovery.relay_signing_key();
    // No one may be left to approve this device: the recovery key vouches for it.
    let vouch =
        recovery_signer.sign(&daftar_store::recovery_statement(workspace, device, &hex::encode(key.public_key())));
    // Recovery enrols an owner device.
    let existing = ExistingWorkspace {
        workspace_id: workspace,
        device_id: device,
        workspace_key,
        epoch: 1,
        agreement_seed,
        signing_seed: seed,
        recovery,
        role: Role::Owner,
    };
    let name = "recovered device";
    let mut store = init_device(dir, &relay, existing, series_for('R', device)?, name, key_choice)?;
    for (epoch, key) in &later {
        store.add_epoch_key(*epoch, key, true)?;
    }
    let first = first_sync(
        &mut store,
        &relay,
        name,
        |url| {
            // Not every relay may have survived: a relay that cannot be reached is skipped.
            match RelayClient::new(url, device, &key)?.recover(workspace, &recovery_signer) {
                Ok(_) | Err(RelayError::Unreachable { .. }) => Ok(()),
                Err(e) => Err(SyncError::SetUpRefused { what: "recovery", source: e }),
            }
        },
        |store| {
            if store.membership()?.is_some() {
                store.list_recovered_device("owner (recovered)", &vouch)?;
            }
            Ok(())
        },
    )?;
    Ok(SetUp {
        store,
        status: "approved",
        report: first.report,
        snapshot: first.snapshot,
        snapshot_error: first.snapshot_error,
    })
}

/// Joins the workspace an invite code names, as a new device in `dir`: enrolled with the
/// relay, which lets it in only once an owner or admin approves it (`daftar devices approve`);
/// the first sync after that brings the workspace ([`complete_join`]). `key` says where the new
/// data directory's database key goes.
pub fn join(dir: &Path, code: &InviteCode, key_choice: KeyChoice) -> Result<SetUp, SyncError> {
    let (id, seed, key, agreement_seed) = new_device()?;
    let device = DeviceId::from_uuid(id);
    let client = RelayClient::new(&code.relay, device, &key)?;
    let agreement = daftar_sync::AgreementKey::from_seed(&agreement_seed).public_key();
    let (role, wrapped) = client
        .enrol(code.workspace, code.token(), &agreement)
        .map_err(|source| SyncError::SetUpRefused { what: "invite", source })?;
    let role = Role::parse(&role)
        .ok_or_else(|| SyncError::Invalid(format!("the relay enrolled this device with an unknown role {role:?}")))?;
    let (epoch, workspace_key) = code.unwrap_workspace_key(&wrapped)?;
    // Proof, for the approver, that the keys the relay now lists for this device are its own.
    let claim = daftar_sync::invite::JoinClaim {
        workspace: code.workspace,
        device,
        signing_key: &key.public_key(),
        agreement_key: &agreement,
        epoch,
    };
    let proof = claim.proof(&workspace_key);
    client
        .put_join_proof(code.workspace, &format!("{epoch}:{}", hex::encode(proof)))
        .map_err(|source| SyncError::SetUpRefused { what: "invite", source })?;
    // Only the workspace's first device shows a recovery key. Set-up needs one, so a joined
    // device makes a placeholder; its material is replaced by the workspace's own at the first
    // sync, and the placeholder key itself is never kept.
    let recovery = RecoveryKey::generate()?;
    let existing = ExistingWorkspace {
        workspace_id: code.workspace,
        device_id: device,
        workspace_key,
        epoch,
        agreement_seed,
        signing_seed: seed,
        recovery,
        role,
    };
    let name = "joined device";
    let mut store = init_device(dir, &code.relay, existing, series_for('J', device)?, name, key_choice)?;
    store.set_pending_join(Some(&PendingJoin { token: hex::encode(code.token()), name: name.to_owned() }))?;
    // Approved already (an owner may have been quick)? Then this is the first sync.
    match complete_join(&mut store) {
        Ok(first) => {
            let first = first.unwrap_or_default();
            Ok(SetUp {
                store,
                status: "approved",
                report: first.report,
                snapshot: first.snapshot,
                snapshot_error: first.snapshot_error,
            })
        }
        Err(SyncError::AwaitingApproval { .. }) => {
            Ok(SetUp { store, status: "pending", report: RelayReport::default(), snapshot: None, snapshot_error: None })
        }
        Err(e) => Err(e),
    }
}

/// Finishes a joined device's set-up once it is approved: its first sync. `Ok(None)` when there
/// is nothing to finish; [`SyncError::AwaitingApproval`] while the relay still waits.
pub fn complete_join(store: &mut Store) -> Result<Option<FirstSync>, SyncError> {
    let Some(pending) = store.pending_join()? else { return Ok(None) };
    let info = store.info().clone();
    let key = store.device_signing_key()?;
    let relay = first_relay(store, None)?;
    let (_, status) = RelayClient::new(&relay, info.device_id, &key)?.own_status(info.workspace_id)?;
    if status != "approved" {
        return Err(SyncError::AwaitingApproval { device: info.device_id });
    }
    let token =
        hex::decode(&pending.token).map_err(|_| SyncError::Invalid("the pending invite token is not hex".into()))?;
    // The keys the approver handed over, to open the snapshot and the log with; checked against
    // the membership document once it has arrived (below).
    crate::rotation::take_in(store)?;
    let agreement = store.agreement_key()?.public_key();
    let first = first_sync(
        store,
        &relay,
        &pending.name,
        |url| match RelayClient::new(url, info.device_id, &key)?.enrol(info.workspace_id, &token, &agreement) {
            // Approved there already (the approver registered it), or not reachable now.
            Ok(_) | Err(RelayError::Unreachable { .. }) => Ok(()),
            Err(RelayError::Refused { code, .. }) if code == "device_exists" => Ok(()),
            Err(e) => Err(SyncError::SetUpRefused { what: "invite", source: e }),
        },
        |store| {
            // Now with the membership document: the keys are checked, and the newest seals.
            crate::rotation::take_in(store)?;
            Ok(())
        },
    )?;
    store.set_pending_join(None)?;
    Ok(Some(first))
}

/// A second factor just enrolled: shown once, kept nowhere on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MfaEnrolment {
    /// For the authenticator app (as a QR code).
    pub otpauth_uri: String,
    /// The same secret, to type in (base 32).
    pub secret: String,
    /// Ten single-use codes for when the authenticator is lost.
    pub recovery_codes: Vec<String>,
}

/// Enrols a second factor for this (owner or admin) device on every relay: one secret, so one
/// entry in the authenticator app. It counts once confirmed with a first code
/// ([`mfa_verify`]). Replacing a confirmed one needs a current code.
pub fn mfa_enroll(store: &Store, account: &str, totp: Option<&str>) -> Result<MfaEnrolment, SyncError> {
    let result = mfa_enroll_inner(store, account, totp);
    noting_factor(store, result)
}

fn mfa_enroll_inner(store: &Store, account: &str, totp: Option<&str>) -> Result<MfaEnrolment, SyncError> {
    store.permit(daftar_domain::Action::ManageDevices)?;
    let relays = store.relays()?;
    if relays.is_empty() {
        return Err(SyncError::NoRelay);
    }
    let secret = daftar_sync::mfa::TotpSecret::generate()?;
    let (codes, hashes) = daftar_sync::mfa::recovery_codes()?;
    let info = store.info().clone();
    let key = store.device_signing_key()?;
    for relay in &relays {
        RelayClient::new(&relay.url, info.device_id, &key)?.with_totp(totp).mfa_enroll(
            info.workspace_id,
            &secret.to_base32(),
            &hashes,
        )?;
    }
    Ok(MfaEnrolment { otpauth_uri: secret.otpauth_uri(account), secret: secret.to_base32(), recovery_codes: codes })
}

/// Whether a privileged command would be asked for a one-time code now: this device's member
/// has a confirmed second factor on some relay whose window is closed. The CLI asks its user
/// for one up front rather than fail half-way through a command of several requests.
pub fn code_needed(store: &Store) -> Result<bool, SyncError> {
    if store.info().role < Role::Admin {
        return Ok(false);
    }
    let info = store.info().clone();
    let key = store.device_signing_key()?;
    for relay in store.relays()? {
        let status = RelayClient::new(&relay.url, info.device_id, &key)?.mfa_status(info.workspace_id)?;
        if status.confirmed && !status.window_open {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Enrols the member's second factor with every relay that lacks it (one added later), taking
/// it from a relay that has it for a current `code` — so the authenticator app keeps one entry.
/// Each relay it reaches is then confirmed with a code computed from the secret, which this
/// device forgets again. Returns the relays it was carried to (none when all had it).
pub fn mfa_carry(store: &Store, code: &str) -> Result<Vec<String>, SyncError> {
    let result = mfa_carry_inner(store, code);
    noting_factor(store, result)
}

fn mfa_carry_inner(store: &Store, code: &str) -> Result<Vec<String>, SyncError> {
    store.permit(daftar_domain::Action::ManageDevices)?;
    let relays = store.relays()?;
    if relays.is_empty() {
        return Err(SyncError::NoRelay);
    }
    let info = store.info().clone();
    let key = store.device_signing_key()?;
    let (mut holders, mut lacking) = (Vec::new(), Vec::new());
    for relay in &relays {
        let client = RelayClient::new(&relay.url, info.device_id, &key)?;
        match client.mfa_status(info.workspace_id)?.confirmed {
            true => holders.push(relay.url.clone()),
            false => lacking.push(relay.url.clone()),
        }
    }
    if lacking.is_empty() {
        return Ok(Vec::new());
    }
    let Some(holder) = holders.first() else {
        return Err(SyncError::Invalid(
            "no relay holds a confirmed second factor for you yet: run `daftar mfa enroll`, then `daftar mfa verify CODE`"
                .into(),
        ));
    };
    let (secret, recovery) =
        RelayClient::new(holder, info.device_id, &key)?.with_totp(Some(code)).mfa_carry(info.workspace_id)?;
    let secret = daftar_sync::mfa::TotpSecret::from_base32(&secret)
        .ok_or_else(|| SyncError::Invalid(format!("the relay at {holder} handed out a malformed second factor")))?;
    for url in &lacking {
        let client = RelayClient::new(url, info.device_id, &key)?;
        client.mfa_enroll(info.workspace_id, &secret.to_base32(), &recovery)?;
        let step = (crate::now_ms() / 1000 / 30) as u64;
        client.mfa_verify(info.workspace_id, &format!("{:06}", secret.code_at(step)))?;
    }
    Ok(lacking)
}

/// Checks a one-time (or recovery) code with every relay: the first confirms the enrolment;
/// each opens a few minutes in which privileged requests need no further code. Returns until
/// when (milliseconds since the epoch).
pub fn mfa_verify(store: &Store, code: &str) -> Result<i64, SyncError> {
    let result = mfa_verify_inner(store, code);
    noting_factor(store, result)
}

fn mfa_verify_inner(store: &Store, code: &str) -> Result<i64, SyncError> {
    let relays = store.relays()?;
    if relays.is_empty() {
        return Err(SyncError::NoRelay);
    }
    let info = store.info().clone();
    let key = store.device_signing_key()?;
    let mut until = i64::MAX;
    for relay in &relays {
        until = until.min(RelayClient::new(&relay.url, info.device_id, &key)?.mfa_verify(info.workspace_id, code)?);
    }
    Ok(until)
}
