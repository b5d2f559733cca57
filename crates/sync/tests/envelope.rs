//! What a receiver must refuse: every altered bit, the wrong workspace, key, epoch or sender.

use daftar_domain::{DeviceId, DocumentId, WorkspaceId};
use daftar_keys::Secret;
use daftar_sync::{DeviceSigningKey, Envelope, EnvelopeError, Sealer};
use uuid::Uuid;

struct Device {
    workspace: WorkspaceId,
    id: DeviceId,
    key: Secret<32>,
    signing: DeviceSigningKey,
}

fn device() -> Device {
    Device {
        workspace: WorkspaceId::from_uuid(Uuid::now_v7()),
        id: DeviceId::from_uuid(Uuid::now_v7()),
        key: Secret::new([7; 32]),
        signing: DeviceSigningKey::from_seed(&DeviceSigningKey::generate_seed().unwrap()),
    }
}

fn seal(d: &Device, change: &[u8]) -> Vec<u8> {
    Sealer { workspace: d.workspace, sender: d.id, epoch: 1, epoch_key: &d.key, signing_key: &d.signing }
        .seal(DocumentId::from_uuid(Uuid::now_v7()), 2, change)
        .unwrap()
}

fn open(d: &Device, bytes: &[u8]) -> Result<daftar_sync::OpenedEnvelope, EnvelopeError> {
    let public = d.signing.public_key();
    let sender = d.id;
    Envelope::parse(bytes)?.open(d.workspace, |s| (s == sender).then_some(public), |e| (e == 1).then_some(&d.key))
}

#[test]
fn every_flipped_bit_is_refused() {
    let d = device();
    let bytes = seal(&d, b"a small automerge change");
    assert!(open(&d, &bytes).is_ok());
    for bit in 0..bytes.len() * 8 {
        let mut tampered = bytes.clone();
        tampered[bit / 8] ^= 1 << (bit % 8);
        let err = open(&d, &tampered).expect_err("a flipped bit must never open");
        assert!(
            matches!(
                err,
                EnvelopeError::BadSignature(_)
                    | EnvelopeError::BadMagic
                    | EnvelopeError::UnsupportedVersion(_)
                    | EnvelopeError::UnsupportedAlgorithm(_)
                    | EnvelopeError::BadLength
                    | EnvelopeError::UnknownSender(_)
                    | EnvelopeError::UnknownEpoch { .. }
            ),
            "bit {bit}: {err}"
        );
    }
}

#[test]
fn wrong_workspace_key_epoch_or_sender_is_refused() {
    let d = device();
    let bytes = seal(&d, b"change");
    let envelope = Envelope::parse(&bytes).unwrap();
    let public = d.signing.public_key();

    let other_workspace = WorkspaceId::from_uuid(Uuid::now_v7());
    assert_eq!(
        envelope.open(other_workspace, |_| Some(public), |_| Some(&d.key)).unwrap_err(),
        EnvelopeError::BadSignature(d.id),
        "an envelope replayed into another workspace does not verify"
    );
    let wrong_key = Secret::new([8; 32]);
    assert_eq!(
        envelope.open(d.workspace, |_| Some(public), |_| Some(&wrong_key)).unwrap_err(),
        EnvelopeError::Undecryptable(d.id)
    );
    assert_eq!(envelope.open(d.workspace, |_| None, |_| Some(&d.key)).unwrap_err(), EnvelopeError::UnknownSender(d.id));
    assert_eq!(
        envelope.open(d.workspace, |_| Some(public), |_| None).unwrap_err(),
        EnvelopeError::UnknownEpoch { sender: d.id, epoch: 1 }
    );
    let impostor = DeviceSigningKey::from_seed(&DeviceSigningKey::generate_seed().unwrap()).public_key();
    assert_eq!(
        envelope.open(d.workspace, |_| Some(impostor), |_| Some(&d.key)).unwrap_err(),
        EnvelopeError::BadSignature(d.id),
        "a relay cannot sign in a device's name"
    );
    assert_eq!(Envelope::parse(&bytes[..50]).unwrap_err(), EnvelopeError::TooShort(50));
    let message = EnvelopeError::BadSignature(d.id).to_string();
    assert!(message.contains("altered or forged"), "{message}");
}
