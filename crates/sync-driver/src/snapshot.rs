//! Snapshots on relays: making one from this device's store, and bootstrapping a new device
//! from the newest one plus the tail of the log.
//!
//! A snapshot claims to cover the relay's log up to the pull cursor of the device that made it:
//! that device holds every change up to there (and perhaps more, which is harmless). Parts are
//! made and taken in one at a time, so memory stays at one part (≤ 4 MiB) however large the
//! workspace.

use daftar_domain::{DocumentId, Role};
use daftar_relay_client::RelayClient;
use daftar_store::{PreparedSnapshot, ProofClaim, ProvenSealer, Store};
use daftar_sync::snapshot::{self, PartHeader, SNAPSHOT_KIND, SnapshotDocument, SnapshotProof};
use daftar_sync::{Envelope, SealProof, Sealer};
use serde::Serialize;

use crate::{Device, SyncError};

/// The plaintext size a part aims at (sealed, it stays well under the relay's 8 MiB body limit).
const PART_BYTES: usize = 4 << 20;
/// A new snapshot is made once the log has grown by this many envelopes since the last one...
const SNAPSHOT_AFTER: i64 = 2_000;
/// ...and by at least this fraction of what the last one covered, so that big workspaces do not
/// re-upload everything too often.
const SNAPSHOT_GROWTH_PERCENT: i64 = 25;

/// A snapshot this device made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotReport {
    pub url: String,
    /// The log position it covers.
    pub seq: i64,
    pub parts: u32,
    pub documents: usize,
    /// Sealed bytes uploaded.
    pub bytes: usize,
    /// Whether the relay now serves it (false if another device's newer one won).
    pub kept: bool,
}

/// What a bootstrap from a snapshot took in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BootstrapReport {
    pub seq: i64,
    pub parts: u32,
    pub documents: usize,
    pub bytes: usize,
}

/// Whether a snapshot is due, given the log position this device has pulled to and the one the
/// relay's current snapshot covers.
pub(crate) fn due(cursor: i64, current: Option<i64>) -> bool {
    let covered = current.unwrap_or(0);
    let grown = cursor - covered;
    grown >= SNAPSHOT_AFTER && grown * 100 >= covered * SNAPSHOT_GROWTH_PERCENT
}

impl Device {
    /// Seals this device's documents as a snapshot covering its pull cursor on `relay`, and
    /// uploads it part by part.
    pub(crate) fn make_snapshot(&mut self, store: &Store, relay: usize) -> Result<SnapshotReport, SyncError> {
        let url = self.urls[relay].clone();
        let seq = store.relays()?.into_iter().find(|r| r.url == url).map(|r| r.pull_cursor).unwrap_or(0);
        let plan = store.snapshot_plan()?;
        let sizes: Vec<usize> = plan.iter().map(|(_, size)| *size).collect();
        let ranges = snapshot::plan_parts(&sizes, PART_BYTES);
        let parts = ranges.len() as u32;
        let id = *uuid::Uuid::new_v4().as_bytes();
        let sealer = Sealer {
            workspace: self.info.workspace_id,
            sender: self.info.device_id,
            epoch: self.epoch,
            epoch_key: &self.epoch_key,
            signing_key: &self.key,
        };
        let client = RelayClient::new(&url, self.info.device_id, &self.key)?;
        let mut report = SnapshotReport { url: url.clone(), seq, parts, documents: 0, bytes: 0, kept: false };
        for (part, range) in ranges.into_iter().enumerate() {
            let ids: Vec<DocumentId> = plan[range].iter().map(|(id, _)| *id).collect();
            let mut documents = store.snapshot_documents(&ids)?;
            self.prove_own_changes(&sealer, &mut documents)?;
            let header = PartHeader { snapshot: id, seq, part: part as u32, parts };
            let plain = snapshot::encode_part(&header, &documents);
            let sealed = sealer.seal(DocumentId::from_uuid(uuid::Uuid::from_bytes(id)), SNAPSHOT_KIND, &plain)?;
            report.documents += documents.len();
            report.bytes += sealed.len();
            report.kept = client.put_snapshot_part(self.info.workspace_id, seq, part as u32, parts, sealed)?;
        }
        Ok(report)
    }

    /// Adds seal proofs for this device's own change rows that have none yet (made since its
    /// last push): sealing is deterministic, so the proof is the one a push would make.
    fn prove_own_changes(&self, sealer: &Sealer<'_>, documents: &mut [SnapshotDocument]) -> Result<(), SyncError> {
        for document in documents {
            let proven: std::collections::HashSet<[u8; 32]> = document.proofs.iter().map(|p| p.hash).collect();
            let mut missing = Vec::new();
            for change in document.changes.iter().filter(|c| c.device == self.info.device_id) {
                let hash = automerge::Change::from_bytes(change.bytes.clone())
                    .map_err(|e| SyncError::Invalid(format!("a stored change does not decode: {e}")))?
                    .hash()
                    .0;
                if !proven.contains(&hash) {
                    let sealed = sealer.seal(document.document, document.kind, &change.bytes)?;
                    let proof = *Envelope::parse(&sealed)?.proof().as_bytes();
                    missing.push(SnapshotProof { hash, device: self.info.device_id, proof });
                }
            }
            document.proofs.extend(missing);
        }
        Ok(())
    }

    /// Takes in the relay's newest snapshot, part by part, then moves the pull cursor to the
    /// position it covers, so only the tail of the log is pulled. `Ok(None)` when the relay has
    /// no snapshot. On any error the cursor stays where it was and a pull from there brings
    /// everything (what was taken in already merges harmlessly).
    ///
    /// Two threads: one fetches, opens and prepares the next part (Automerge loading and reading
    /// records) while the store takes in the current one.
    pub(crate) fn bootstrap(&mut self, store: &mut Store, relay: usize) -> Result<Option<BootstrapReport>, SyncError> {
        let url = self.urls[relay].clone();
        self.device_keys(relay, true)?;
        let workspace = self.info.workspace_id;
        let Some((seq, parts)) =
            RelayClient::new(&url, self.info.device_id, &self.key)?.snapshot_manifest(workspace)?
        else {
            return Ok(None);
        };
        let mut report = BootstrapReport { seq, parts, documents: 0, bytes: 0 };
        let this = &*self;
        std::thread::scope(|scope| -> Result<(), SyncError> {
            let (sender, receiver) = std::sync::mpsc::sync_channel::<Result<(usize, PreparedSnapshot), SyncError>>(1);
            scope.spawn(move || {
                let mut first: Option<PartHeader> = None;
                for part in 0..parts {
                    let prepared = this.fetch_part(&url, seq, parts, part, &mut first);
                    let failed = prepared.is_err();
                    if sender.send(prepared).is_err() || failed {
                        return;
                    }
                }
            });
            for prepared in receiver {
                let (bytes, prepared) = prepared?;
                report.bytes += bytes;
                report.documents += store.import_snapshot(prepared).map_err(|e| match e {
                    // A change that does not apply is the snapshot's fault, not the store's.
                    daftar_store::StoreError::Document { .. } => SyncError::Invalid(e.to_string()),
                    e => SyncError::Store(e),
                })?;
            }
            Ok(())
        })?;
        store.record_sync(&self.urls[relay], Some(seq), None)?;
        Ok(Some(report))
    }

    /// Fetches, opens, checks and prepares one part; returns its sealed size too.
    fn fetch_part(
        &self,
        url: &str,
        seq: i64,
        parts: u32,
        part: u32,
        first: &mut Option<PartHeader>,
    ) -> Result<(usize, PreparedSnapshot), SyncError> {
        let workspace = self.info.workspace_id;
        let relay = self.urls.iter().position(|u| u == url).expect("one of this device's relays");
        let keys = self.keys[relay].as_ref().expect("filled before the bootstrap");
        let sealed = RelayClient::new(url, self.info.device_id, &self.key)?.snapshot_part(workspace, seq, part)?;
        let opened = Envelope::parse(&sealed)?.open(
            workspace,
            |sender| keys.get(&sender).copied(),
            |epoch| self.opening.get(&epoch),
        )?;
        if opened.kind != SNAPSHOT_KIND {
            return Err(snapshot::SnapshotError::NotASnapshot.into());
        }
        // What is inside is taken without judging each change, so it must come from a device
        // trusted with the membership (the relay accepts snapshots only from those, too); any
        // other leaves the whole log to pull, every change of it judged.
        if self.roles.get(&opened.sender).is_none_or(|role| *role < daftar_domain::Role::Admin) {
            return Err(SyncError::Invalid(format!(
                "the snapshot was made by device {}, which is not an owner's or admin's",
                opened.sender
            )));
        }
        let (header, documents) = snapshot::unpack(&opened.change)?;
        let first = *first.get_or_insert(header);
        snapshot::check_part(&first, part, &header)?;
        if header.seq != seq || header.parts != parts || header.snapshot != *opened.document.as_uuid().as_bytes() {
            return Err(snapshot::SnapshotError::Mismatched(format!(
                "the relay says it covers {seq} in {parts} parts, the sealed part says {} in {}",
                header.seq, header.parts
            ))
            .into());
        }
        // Each change must have been sealed by the device named for it: the maker cannot put
        // words in anyone else's name. Roles are judged as the store takes the part in.
        let maker = opened.sender;
        let check = |claim: &ProofClaim<'_>| -> Result<ProvenSealer, String> {
            let device = claim.device;
            let key = keys.get(&device).copied().ok_or_else(|| format!("device {device} is unknown to the relay"))?;
            let relay_role = self.roles.get(&device).copied().unwrap_or(Role::Viewer);
            // The maker's own changes: the part is signed by the maker, which is all a proof
            // would show (and most of a single-office workspace, so this halves the work).
            if device == maker {
                return Ok(ProvenSealer { key, relay_role });
            }
            SealProof::from_bytes(claim.proof)
                .and_then(|proof| {
                    proof.verify(workspace, device, key, (claim.document, claim.kind, claim.change), |epoch| {
                        self.opening.get(&epoch)
                    })
                })
                .map_err(|e| e.to_string())?;
            Ok(ProvenSealer { key, relay_role })
        };
        // Preparing touches no database: whatever fails is the snapshot's content, which leaves
        // the log to pull.
        let prepared =
            daftar_store::prepare_snapshot(documents, Some(&check)).map_err(|e| SyncError::Invalid(e.to_string()))?;
        Ok((sealed.len(), prepared))
    }
}

#[cfg(test)]
mod tests {
    use super::due;

    #[test]
    fn snapshots_are_made_rarely_and_less_often_as_the_workspace_grows() {
        assert!(!due(1_999, None), "small logs bootstrap fine without one");
        assert!(due(2_000, None));
        assert!(!due(10_000, Some(9_000)));
        assert!(due(12_000, Some(9_000)), "3,000 new envelopes on 9,000: a third more");
        assert!(!due(110_000, Some(100_000)), "10% growth of a big log is not worth 100 MB");
        assert!(due(125_000, Some(100_000)));
    }
}
