//! Drives the sync engine ([`daftar_sync::engine`]) for one device: the store on one side,
//! relays over HTTP ([`daftar_relay_client`]) on the other. The engine decides; this crate seals,
//! opens, carries and reports. The CLI and the desktop app both sync through it.
//!
//! - [`sync_once`]: one push-and-pull round with every relay (`daftar sync`).
//! - [`watch`]: keep syncing live, for `daftar sync --watch` and the app's background sync.
//! - [`join`] and [`recover`]: set a new data directory up as a device of an existing workspace.
//! - [`add_relay`], [`invite`], [`devices`], [`revoke`]: the workspace on its relays.
//!
//! Envelopes are opened with the keys in the relay's device list; the store then checks each
//! sender, its key and its role against the signed membership document, which decides.

mod error;
mod rotation;
mod setup;
mod snapshot;

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

use daftar_domain::{DeviceId, Role};
use daftar_keys::Secret;
use daftar_relay_client::{Event, RelayClient, RelayError};
use daftar_store::{DocKind, IncomingChange, Store};
use daftar_sync::engine::{Engine, Failure, Options, Step};
use daftar_sync::{DeviceSigningKey, Envelope, Sealer};
use serde::Serialize;

pub use error::SyncError;
pub use rotation::{Rotation, rotate, take_in};
pub use setup::{
    AddedRelay, DeviceRecord, FirstSync, Invite, MfaEnrolment, SetUp, add_relay, add_relay_carrying_factor, approve,
    code_needed, complete_join, devices, invite, join, mfa_carry, mfa_enroll, mfa_verify, recover, remove_relay,
    revoke, set_role,
};
pub use snapshot::{BootstrapReport, SnapshotReport};

/// What one relay did in a round.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RelayReport {
    pub url: String,
    /// Local changes sent.
    pub pushed: usize,
    /// Envelopes received.
    pub pulled: usize,
    /// Their size, as sealed.
    pub pulled_bytes: usize,
    /// Received changes that were new here.
    pub applied: usize,
    /// Envelopes refused (forged, altered, from an unknown device), each with the reason.
    pub rejected: Vec<String>,
    /// Why the relay could not be synced with, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A snapshot made after the round because the log had grown enough since the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotReport>,
}

/// An envelope id derived from the change hash, so a retried push is recognised by the relay.
fn envelope_id(hash: &[u8; 32]) -> String {
    uuid::Uuid::from_bytes(hash[..16].try_into().expect("16 bytes")).hyphenated().to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn random() -> u64 {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// Takes in new epochs' keys before a round, so what this device sends uses the newest; a
/// relay that cannot be asked now is asked again at the next round.
fn take_in_epochs(store: &mut Store) -> Result<(), SyncError> {
    match rotation::take_in(store) {
        Ok(_) => Ok(()),
        Err(SyncError::Store(e)) => Err(SyncError::Store(e)),
        Err(_) => Ok(()),
    }
}

/// Every epoch key `store` holds.
fn held_keys(store: &Store) -> Result<HashMap<u32, Secret<32>>, SyncError> {
    store.epochs()?.into_iter().map(|epoch| Ok((epoch, store.workspace_key(epoch)?))).collect()
}

fn failure(error: &SyncError) -> Failure {
    match error {
        SyncError::Relay(RelayError::Refused { code, message, .. }) if code == "revoked" || code == "not_a_member" => {
            Failure::Refused(message.clone())
        }
        other => Failure::Transient(other.to_string()),
    }
}

/// One device's side of sync: its keys and a client per relay.
struct Device {
    info: daftar_store::WorkspaceInfo,
    key: DeviceSigningKey,
    /// The epoch new envelopes are sealed with, and its key.
    epoch: u32,
    epoch_key: Secret<32>,
    /// Every epoch key this device holds, to open what it receives.
    opening: HashMap<u32, Secret<32>>,
    /// Whether keys of epochs it lacks may be fetched from the relay (not in a drill, which
    /// opens only with what the recovery key unlocks).
    fetch_epochs: bool,
    urls: Vec<String>,
    /// Public keys of the workspace's devices, per relay (from its device list).
    keys: Vec<Option<HashMap<DeviceId, [u8; 32]>>>,
    /// Each device's role as the relays list it: incoming changes are judged by it only until
    /// this device holds the membership document (which then decides).
    roles: HashMap<DeviceId, Role>,
    reports: Vec<RelayReport>,
    /// The relay and error of the step that just failed, for [`watch`] to report.
    just_failed: Option<(usize, String)>,
}

impl Device {
    fn new(store: &Store) -> Result<(Device, Engine), SyncError> {
        let relays = store.relays()?;
        if relays.is_empty() {
            return Err(SyncError::NoRelay);
        }
        let epoch = store.current_epoch()?;
        let device = Device {
            info: store.info().clone(),
            key: store.device_signing_key()?,
            epoch,
            epoch_key: store.workspace_key(epoch)?,
            opening: held_keys(store)?,
            fetch_epochs: true,
            urls: relays.iter().map(|r| r.url.clone()).collect(),
            keys: vec![None; relays.len()],
            roles: HashMap::new(),
            reports: relays.iter().map(|r| RelayReport { url: r.url.clone(), ..RelayReport::default() }).collect(),
            just_failed: None,
        };
        let engine = Engine::new(Options::default(), relays.iter().map(|r| r.pull_cursor));
        Ok((device, engine))
    }

    /// Picks up epoch keys the store has gained (a rotation here or one taken in).
    fn reload_keys(&mut self, store: &Store) -> Result<(), SyncError> {
        let epoch = store.current_epoch()?;
        if epoch != self.epoch {
            self.epoch_key = store.workspace_key(epoch)?;
            self.epoch = epoch;
        }
        self.opening = held_keys(store)?;
        Ok(())
    }

    fn client(&self, relay: usize) -> Result<RelayClient<'_>, SyncError> {
        Ok(RelayClient::new(&self.urls[relay], self.info.device_id, &self.key)?)
    }

    /// Sends up to `limit` unacknowledged local changes; returns whether a full batch went.
    fn push(&mut self, store: &mut Store, relay: usize, limit: u32) -> Result<bool, SyncError> {
        let url = self.urls[relay].clone();
        let outbox = store.outbox(&url, limit)?;
        let Some(last) = outbox.last().map(|c| c.seq) else { return Ok(false) };
        // Always the newest epoch this device holds (a rotation may have happened meanwhile).
        if store.current_epoch()? != self.epoch {
            self.reload_keys(store)?;
        }
        let sealer = Sealer {
            workspace: self.info.workspace_id,
            sender: self.info.device_id,
            epoch: self.epoch,
            epoch_key: &self.epoch_key,
            signing_key: &self.key,
        };
        let envelopes = outbox
            .iter()
            .map(|c| Ok((envelope_id(&c.hash), sealer.seal(c.document, c.kind.code(), &c.bytes)?)))
            .collect::<Result<Vec<_>, SyncError>>()?;
        // Kept so that a snapshot made here can show this device sealed them.
        let seals = outbox
            .iter()
            .zip(&envelopes)
            .map(|(c, (_, sealed))| Ok((c.document, c.hash, *Envelope::parse(sealed)?.proof().as_bytes())))
            .collect::<Result<Vec<_>, SyncError>>()?;
        self.client(relay)?.push(self.info.workspace_id, &envelopes)?;
        store.mark_pushed_with_seals(&url, last, &seals)?;
        self.reports[relay].pushed += envelopes.len();
        Ok(outbox.len() == limit as usize)
    }

    fn device_keys(&mut self, relay: usize, refresh: bool) -> Result<&HashMap<DeviceId, [u8; 32]>, SyncError> {
        if refresh || self.keys[relay].is_none() {
            let members = self.client(relay)?.members(self.info.workspace_id)?;
            let mut keys = HashMap::new();
            // Revoked devices too: the relay takes nothing from them since their revocation,
            // so what of theirs is in the log was sent before it, and is judged as of then.
            for member in members {
                let Some(key) = hex::decode(&member.public_key).ok().and_then(|k| <[u8; 32]>::try_from(k).ok()) else {
                    continue;
                };
                keys.insert(member.device_id, key);
                // A role this build does not know is judged as the least one.
                self.roles.insert(member.device_id, Role::parse(&member.role).unwrap_or(Role::Viewer));
            }
            keys.insert(self.info.device_id, self.key.public_key());
            self.roles.insert(self.info.device_id, self.info.role);
            self.keys[relay] = Some(keys);
        }
        Ok(self.keys[relay].as_ref().expect("just filled"))
    }

    /// Fetches and applies up to `limit` envelopes after `after`, in one transaction; returns
    /// the last sequence number seen and whether the page was full.
    fn pull(&mut self, store: &mut Store, relay: usize, after: i64, limit: u32) -> Result<(i64, bool), SyncError> {
        let workspace = self.info.workspace_id;
        let page = self.client(relay)?.pull(workspace, after, limit)?;
        let Some(through) = page.last().map(|e| e.seq) else { return Ok((after, false)) };
        // Sealed with an epoch this device does not hold yet: a rotation it has not taken in.
        let unknown_epoch = page
            .iter()
            .filter_map(|e| Envelope::parse(&e.bytes).ok())
            .any(|envelope| !self.opening.contains_key(&envelope.epoch));
        if unknown_epoch && self.fetch_epochs {
            rotation::take_in(store)?;
            self.reload_keys(store)?;
        }
        // A sender not in the cached device list may have joined since: look once more.
        let senders_known = {
            let keys = self.device_keys(relay, false)?;
            page.iter().all(|e| Envelope::parse(&e.bytes).map(|env| keys.contains_key(&env.sender)).unwrap_or(true))
        };
        if !senders_known {
            self.device_keys(relay, true)?;
        }
        let keys = self.keys[relay].as_ref().expect("filled above");
        let mut opened = Vec::with_capacity(page.len());
        let mut rejected = Vec::new();
        for remote in &page {
            let result = Envelope::parse(&remote.bytes)
                .and_then(|envelope| {
                    let o = envelope.open(
                        workspace,
                        |sender| keys.get(&sender).copied(),
                        |epoch| self.opening.get(&epoch),
                    )?;
                    Ok((o, *envelope.proof().as_bytes()))
                })
                .map_err(|e| e.to_string())
                .and_then(|(o, proof)| {
                    let kind = DocKind::from_code(o.kind).ok_or_else(|| format!("unknown document kind {}", o.kind))?;
                    Ok((kind, o, proof))
                });
            match result {
                Ok(ok) => opened.push((remote, ok)),
                // A refused envelope changes nothing; it is reported, and the cursor moves on.
                Err(e) => rejected.push((remote.seq, remote.id.clone(), e)),
            }
        }
        let incoming: Vec<IncomingChange<'_>> = opened
            .iter()
            .map(|(_, (kind, o, proof))| IncomingChange {
                document: o.document,
                kind: *kind,
                sender: o.sender,
                bytes: &o.change,
                role: Some(self.roles.get(&o.sender).copied().unwrap_or(Role::Viewer)),
                sender_key: self.keys[relay].as_ref().and_then(|k| k.get(&o.sender).copied()),
                proof: Some(proof),
            })
            .collect();
        let outcomes = store.apply_remote_many(&incoming)?;
        let report = &mut self.reports[relay];
        for ((remote, _), outcome) in opened.iter().zip(outcomes) {
            match outcome {
                Ok(true) => report.applied += 1,
                Ok(false) => {}
                Err(e) => rejected.push((remote.seq, remote.id.clone(), e.to_string())),
            }
        }
        store.record_refused(&self.urls[relay], &rejected)?;
        let report = &mut self.reports[relay];
        report.pulled += page.len();
        report.pulled_bytes += page.iter().map(|e| e.bytes.len()).sum::<usize>();
        report.rejected.extend(rejected.into_iter().map(|(seq, id, e)| format!("envelope {id} (seq {seq}): {e}")));
        store.record_sync(&self.urls[relay], Some(through), None)?;
        Ok((through, page.len() == limit as usize))
    }

    /// Carries out one push or pull step and tells the engine how it went.
    fn snapshot_if_due(&mut self, store: &Store, relay: usize) -> Result<Option<SnapshotReport>, SyncError> {
        // Snapshots are made by owners' and admins' devices only (the relay refuses others').
        if store.info().role < Role::Admin {
            return Ok(None);
        }
        let cursor =
            store.relays()?.into_iter().find(|r| r.url == self.urls[relay]).map(|r| r.pull_cursor).unwrap_or(0);
        let current = self.client(relay)?.snapshot_manifest(self.info.workspace_id)?.map(|(seq, _)| seq);
        if !snapshot::due(cursor, current) {
            return Ok(None);
        }
        self.make_snapshot(store, relay).map(Some)
    }

    fn step(&mut self, store: &mut Store, engine: &mut Engine, step: &Step) -> Result<(), SyncError> {
        match *step {
            Step::Push { relay, limit } => match self.push(store, relay, limit) {
                Ok(more) => engine.pushed(relay, more),
                Err(e) => self.failed(store, engine, relay, e)?,
            },
            Step::Pull { relay, after, limit } => match self.pull(store, relay, after, limit) {
                Ok((through, more)) => engine.pulled(relay, through, more, now_ms()),
                Err(e) => self.failed(store, engine, relay, e)?,
            },
            Step::Subscribe { .. } | Step::Wait { .. } => {}
        }
        Ok(())
    }

    fn failed(&mut self, store: &mut Store, engine: &mut Engine, relay: usize, e: SyncError) -> Result<(), SyncError> {
        // The store itself failing is not the relay's fault: stop.
        if let SyncError::Store(_) = e {
            return Err(e);
        }
        let message = e.to_string();
        store.record_sync(&self.urls[relay], None, Some(&message))?;
        engine.failed(relay, failure(&e), now_ms(), random());
        self.reports[relay].error = Some(message.clone());
        self.just_failed = Some((relay, message));
        Ok(())
    }
}

/// One push-and-pull round with every relay: each gets every local change it lacks, and every
/// relay's new envelopes are applied. A relay that cannot be reached is reported and skipped;
/// if none can be, the round fails and the changes stay queued.
pub fn sync_once(store: &mut Store) -> Result<Vec<RelayReport>, SyncError> {
    // A joined device's first sync, once it is approved.
    setup::complete_join(store)?;
    sync_rounds(store)
}

/// [`sync_once`] without finishing a join first.
pub(crate) fn sync_rounds(store: &mut Store) -> Result<Vec<RelayReport>, SyncError> {
    setup::adopt_relays(store)?;
    take_in_epochs(store)?;
    let mut reports = round(store)?;
    // The round may have brought news of a relay this device lacks: sync with it at once.
    if setup::adopt_relays(store)? > 0 {
        reports = round(store)?;
    }
    Ok(reports)
}

fn round(store: &mut Store) -> Result<Vec<RelayReport>, SyncError> {
    let (mut device, mut engine) = Device::new(store)?;
    engine.request_round();
    loop {
        match engine.next(now_ms()) {
            Step::Wait { .. } => break,
            step => device.step(store, &mut engine, &step)?,
        }
    }
    // Snapshots for fast bootstrap, when the log has grown enough; a failure here is only
    // reported, the round itself went through.
    for relay in 0..device.urls.len() {
        if device.reports[relay].error.is_none() && device.reports[relay].pushed + device.reports[relay].pulled > 0 {
            match device.snapshot_if_due(store, relay) {
                Ok(made) => device.reports[relay].snapshot = made,
                Err(SyncError::Store(e)) => return Err(SyncError::Store(e)),
                Err(e) => device.reports[relay].rejected.push(format!("snapshot not made: {e}")),
            }
        }
    }
    if device.reports.iter().all(|r| r.error.is_some()) {
        return Err(SyncError::NoRelayReached {
            reasons: device
                .reports
                .iter()
                .map(|r| format!("{}: {}", r.url, r.error.as_deref().unwrap_or("")))
                .collect(),
        });
    }
    Ok(device.reports)
}

/// Test support, in debug builds only: seals `bytes` as a change of `document` (of `kind`),
/// signed by this device under the current epoch, and pushes it to every relay, without
/// decoding, storing or checking it: what a modified client can send. Tests use it to show that
/// receiving devices refuse what no honest client makes (a compression bomb, a forged change).
/// Returns the envelope's id.
#[cfg(debug_assertions)]
pub fn push_crafted(
    store: &Store,
    document: daftar_domain::DocumentId,
    kind: DocKind,
    bytes: &[u8],
) -> Result<String, SyncError> {
    let (device, _) = Device::new(store)?;
    let sealer = Sealer {
        workspace: device.info.workspace_id,
        sender: device.info.device_id,
        epoch: device.epoch,
        epoch_key: &device.epoch_key,
        signing_key: &device.key,
    };
    let id = uuid::Uuid::new_v4().hyphenated().to_string();
    let sealed = sealer.seal(document, kind.code(), bytes)?;
    for relay in 0..device.urls.len() {
        device.client(relay)?.push(device.info.workspace_id, &[(id.clone(), sealed.clone())])?;
    }
    Ok(id)
}

/// Makes a snapshot for every relay now (`daftar sync snapshot`), after a round so that it
/// covers as much of the log as possible.
pub fn make_snapshots(store: &mut Store) -> Result<Vec<SnapshotReport>, SyncError> {
    sync_once(store)?;
    let (mut device, _) = Device::new(store)?;
    (0..device.urls.len()).map(|relay| device.make_snapshot(store, relay)).collect()
}

/// A new device's first step: the newest snapshot of its relay, if there is one.
pub(crate) fn bootstrap(store: &mut Store) -> Result<Option<BootstrapReport>, SyncError> {
    let (mut device, _) = Device::new(store)?;
    device.bootstrap(store, 0)
}

/// What [`watch`] reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WatchEvent {
    /// A round finished; what each relay did in it.
    Synced { relays: Vec<RelayReport> },
    /// The live subscription to a relay is open.
    Live { url: String },
    /// A relay could not be reached; the engine retries (backoff with jitter).
    Offline { url: String, error: String },
    /// This joined device waits for an owner or admin to approve it.
    AwaitingApproval { device: DeviceId },
}

enum Heard {
    Head(i64),
    Tick,
    Lost(String),
}

/// Keeps syncing live until every relay refuses this device: a round at once, then whenever a
/// relay announces a new head, whenever local changes appear (this process's or another's,
/// noticed within a second), and retries with backoff and jitter when a relay is away.
pub fn watch(store: &mut Store, mut observe: impl FnMut(&WatchEvent)) -> Result<(), SyncError> {
    // A joined device waits for its approval, asking every few seconds.
    loop {
        match setup::complete_join(store) {
            Ok(_) => break,
            Err(SyncError::AwaitingApproval { device }) => {
                observe(&WatchEvent::AwaitingApproval { device });
                std::thread::sleep(Duration::from_secs(3));
            }
            Err(e @ SyncError::Store(_)) => return Err(e),
            Err(e) => {
                observe(&WatchEvent::Offline { url: String::new(), error: e.to_string() });
                std::thread::sleep(Duration::from_secs(3));
            }
        }
    }
    setup::adopt_relays(store)?;
    take_in_epochs(store)?;
    let (mut device, mut engine) = Device::new(store)?;
    let (tx, rx) = mpsc::channel::<(usize, Heard)>();
    engine.go_live();
    engine.request_round();
    let mut data_version = store.data_version()?;
    let mut round_open = true;
    loop {
        let now = now_ms();
        match engine.next(now) {
            Step::Subscribe { relay } => {
                match device.client(relay).and_then(|c| Ok(c.subscribe(device.info.workspace_id)?)) {
                    Ok(events) => {
                        engine.subscribed(relay);
                        round_open = true;
                        observe(&WatchEvent::Live { url: device.urls[relay].clone() });
                        let tx = tx.clone();
                        std::thread::spawn(move || {
                            for event in events {
                                let heard = match event {
                                    Ok(Event::Head(head)) => Heard::Head(head),
                                    Ok(Event::Tick) => Heard::Tick,
                                    Err(e) => Heard::Lost(e.to_string()),
                                };
                                let lost = matches!(heard, Heard::Lost(_));
                                if tx.send((relay, heard)).is_err() || lost {
                                    return;
                                }
                            }
                            let _ = tx.send((relay, Heard::Lost("the relay closed the subscription".into())));
                        });
                    }
                    Err(e) => {
                        let error = e.to_string();
                        engine.subscription_lost(relay, failure(&e), now, random());
                        observe(&WatchEvent::Offline { url: device.urls[relay].clone(), error });
                    }
                }
            }
            Step::Wait { until } => {
                if round_open {
                    round_open = false;
                    let relays = std::mem::take(&mut device.reports);
                    device.reports =
                        relays.iter().map(|r| RelayReport { url: r.url.clone(), ..RelayReport::default() }).collect();
                    observe(&WatchEvent::Synced { relays });
                }
                if (0..engine.relay_count()).all(|r| engine.state(r).refused) {
                    let reasons = (0..engine.relay_count())
                        .map(|r| format!("{}: {}", device.urls[r], engine.state(r).last_error.unwrap_or_default()))
                        .collect();
                    return Err(SyncError::NoRelayReached { reasons });
                }
                // Wake at least every second to notice writes by other processes.
                let timeout = until.map_or(1_000, |u| (u - now).clamp(0, 1_000));
                match rx.recv_timeout(Duration::from_millis(timeout as u64)) {
                    Ok((relay, Heard::Head(head))) => {
                        engine.announced(relay, head);
                    }
                    Ok((relay, Heard::Lost(error))) => {
                        engine.subscription_lost(relay, Failure::Transient(error.clone()), now_ms(), random());
                        observe(&WatchEvent::Offline { url: device.urls[relay].clone(), error });
                    }
                    Ok((_, Heard::Tick)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => {}
                }
                let version = store.data_version()?;
                if version != data_version {
                    data_version = version;
                    if store.relays()?.iter().any(|r| r.pending > 0) {
                        engine.local_changes();
                    }
                }
                if !engine.settled() {
                    round_open = true;
                }
            }
            step => {
                round_open = true;
                device.step(store, &mut engine, &step)?;
                if let Some((relay, error)) = device.just_failed.take() {
                    observe(&WatchEvent::Offline { url: device.urls[relay].clone(), error });
                }
            }
        }
    }
}

/// Opens the recovery key's copies of later epochs' keys.
pub(crate) fn recovery_epochs(
    recovery: &daftar_sync::RecoveryKey,
    workspace: daftar_domain::WorkspaceId,
    copies: &[daftar_relay_client::EpochKey],
) -> Result<Vec<(u32, Secret<32>)>, SyncError> {
    let agreement = recovery.agreement_key();
    copies
        .iter()
        .filter(|k| k.holder == daftar_sync::epoch::RECOVERY_HOLDER)
        .map(|k| {
            let key = agreement.open(workspace, k.epoch, daftar_sync::epoch::RECOVERY_HOLDER, &k.wrapped_bytes()?)?;
            Ok((k.epoch, key))
        })
        .collect()
}

/// Rebuilds the workspace from this device's first relay into the new data directory `dir`,
/// the way [`recover`] would — the relay's recovery-wrapped workspace key opened with the
/// typed recovery key, the newest snapshot, then the log — but without enrolling a device or
/// pushing anything, so a disaster-recovery drill leaves the workspace as it was. Requests are
/// signed with this device's key (reading is all they do); envelopes are opened only with the
/// workspace key the recovery key unwrapped. `dir`'s database key goes in a key file under
/// `passphrase`, so the drill leaves nothing in the keyring.
pub fn rehearse_recovery(
    live: &Store,
    dir: &std::path::Path,
    recovery: &daftar_sync::RecoveryKey,
    passphrase: String,
) -> Result<Store, SyncError> {
    let url = live.relays()?.into_iter().next().ok_or(SyncError::NoRelay)?.url;
    let info = live.info().clone();
    let key = live.device_signing_key()?;
    let client = RelayClient::new(&url, info.device_id, &key)?;
    let (public, wrapped) = client.recovery_material(info.workspace_id)?;
    if public != recovery.relay_signing_key().public_key() {
        return Err(SyncError::RecoveryKey(daftar_sync::RecoveryKeyError::WrongKey));
    }
    let workspace_key = recovery.unwrap_workspace_key(info.workspace_id, &wrapped)?;
    // Every later epoch, as only the recovery key opens it.
    let later = recovery_epochs(recovery, info.workspace_id, &client.recovery_epochs(info.workspace_id)?)?;
    let device = DeviceId::from_uuid(uuid::Uuid::now_v7());
    let (mut target, _) = Store::init(
        dir,
        daftar_store::InitOptions {
            seller: Default::default(),
            series: Some(daftar_domain::Series::for_device('D', device).map_err(|e| SyncError::Invalid(e.0))?),
            key: daftar_store::KeyChoice::Passphrase(passphrase),
            device_name: "recovery drill".into(),
            member: None,
            existing: Some(daftar_store::ExistingWorkspace {
                workspace_id: info.workspace_id,
                device_id: device,
                workspace_key,
                epoch: 1,
                agreement_seed: daftar_keys::generate_secret()?,
                signing_seed: daftar_keys::generate_secret()?,
                recovery: daftar_sync::RecoveryKey::generate()?,
                role: daftar_domain::Role::Owner,
            }),
        },
        std::sync::Arc::new(daftar_store::SystemClock),
    )?;
    target.add_relay(&url)?;
    for (epoch, key) in &later {
        target.add_epoch_key(*epoch, key, true)?;
    }
    let epoch = target.current_epoch()?;
    let mut reader = Device {
        info,
        key,
        epoch,
        epoch_key: target.workspace_key(epoch)?,
        opening: held_keys(&target)?,
        fetch_epochs: false,
        urls: vec![url.clone()],
        keys: vec![None],
        roles: HashMap::new(),
        reports: vec![RelayReport { url, ..RelayReport::default() }],
        just_failed: None,
    };
    reader.bootstrap(&mut target, 0)?;
    let mut cursor = target.relays()?.first().map(|r| r.pull_cursor).unwrap_or(0);
    loop {
        let (through, more) = reader.pull(&mut target, 0, cursor, 1000)?;
        cursor = through;
        if !more {
            break;
        }
    }
    if let Some(refused) = reader.reports[0].rejected.first() {
        return Err(SyncError::Invalid(format!("the relay served an envelope that was refused: {refused}")));
    }
    Ok(target)
}
