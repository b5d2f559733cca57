//! Sealed envelopes: the unit of sync.
//!
//! Format version 1 (frozen; a golden-bytes test guards it). All integers big-endian.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "DFTE"
//!      4     1  version = 1
//!      5     1  algorithm = 1 (AES-256-GCM data key wrapped by the epoch key, Ed25519 signature)
//!      6    16  sender device id
//!     22     4  key epoch
//!     26    12  nonce of the wrapped data key
//!     38    48  data key (32) sealed with the epoch key, plus its tag (16)
//!     86    12  nonce of the content
//!     98     4  n = length of the sealed content
//!    102     n  content sealed with the data key: document id (16) ‖ document kind (1) ‖
//!               Automerge change, plus tag
//!  102+n    64  Ed25519 signature by the sender over "daftar-envelope-v1 signature" ‖ workspace
//!               id ‖ bytes 0 .. 102+n
//! ```
//! Both AEADs take the associated data "daftar-envelope-v1" (plus " key" for the key wrap) ‖
//! workspace id ‖ sender ‖ epoch, so an envelope cannot be moved to another workspace, sender
//! or epoch. Each envelope has its own random data key, so the epoch key encrypts only 32-byte
//! keys and nonces never need coordinating between devices.

use daftar_domain::{DeviceId, DocumentId, WorkspaceId};
use daftar_keys::Secret;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use uuid::Uuid;

pub const MAGIC: [u8; 4] = *b"DFTE";
pub const VERSION: u8 = 1;
pub const ALGORITHM_AES256GCM_ED25519: u8 = 1;
/// Largest Automerge change one envelope carries (larger documents are sent as snapshots).
pub const MAX_CHANGE_BYTES: usize = 16 * 1024 * 1024;

const HEADER: usize = 102;
const SIGNATURE: usize = 64;
const TAG: usize = 16;

/// Why an envelope was refused. None of these change anything locally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the envelope is {0} bytes, too short to be a Daftar envelope")]
    TooShort(usize),
    #[error("the data is not a Daftar envelope (wrong magic bytes)")]
    BadMagic,
    #[error("the envelope has format version {0}; this Daftar reads version 1, upgrade Daftar")]
    UnsupportedVersion(u8),
    #[error("the envelope uses algorithm {0}, which this Daftar does not know; upgrade Daftar")]
    UnsupportedAlgorithm(u8),
    #[error("the envelope's length fields do not match its size (damaged in transit or storage)")]
    BadLength,
    #[error("the envelope is signed by device {0}, which is not a known device of this workspace")]
    UnknownSender(DeviceId),
    #[error("the signature of the envelope from device {0} does not verify: it was altered or forged")]
    BadSignature(DeviceId),
    #[error("the envelope from device {sender} uses key epoch {epoch}, which this device does not hold")]
    UnknownEpoch { sender: DeviceId, epoch: u32 },
    #[error("the envelope from device {0} does not decrypt with the workspace key: wrong key or tampered content")]
    Undecryptable(DeviceId),
    #[error("a change of {0} bytes is larger than an envelope carries ({MAX_CHANGE_BYTES} bytes)")]
    TooLarge(usize),
    #[error("the system random number generator failed")]
    Random,
}

/// A device's Ed25519 signing key. Built from the 32-byte seed kept in the OS keyring.
pub struct DeviceSigningKey(Ed25519KeyPair);

impl std::fmt::Debug for DeviceSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceSigningKey(public {})", hex::encode(self.public_key()))
    }
}

impl DeviceSigningKey {
    pub fn from_seed(seed: &Secret<32>) -> Self {
        // A 32-byte seed is always a valid Ed25519 private key.
        Self(Ed25519KeyPair::from_seed_unchecked(seed.expose_secret_bytes()).expect("32-byte Ed25519 seed"))
    }

    /// A new random seed for a new device.
    pub fn generate_seed() -> Result<Secret<32>, EnvelopeError> {
        let mut seed = [0u8; 32];
        SystemRandom::new().fill(&mut seed).map_err(|_| EnvelopeError::Random)?;
        Ok(Secret::new(seed))
    }

    /// Signs `message` (used for relay requests; envelopes sign themselves in [`Sealer::seal`]).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).as_ref().try_into().expect("Ed25519 signatures are 64 bytes")
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.0.public_key().as_ref().try_into().expect("Ed25519 public keys are 32 bytes")
    }
}

/// What is needed to seal envelopes as one device.
#[derive(Debug)]
pub struct Sealer<'a> {
    pub workspace: WorkspaceId,
    pub sender: DeviceId,
    pub epoch: u32,
    pub epoch_key: &'a Secret<32>,
    pub signing_key: &'a DeviceSigningKey,
}

struct Len(usize);

impl ring::hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The per-envelope key and nonces (derived in [`Sealer::seal`], fixed in the golden test).
struct Randomness {
    data_key: Secret<32>,
    wrap_nonce: [u8; 12],
    nonce: [u8; 12],
}

fn associated_data(label: &[u8], workspace: WorkspaceId, sender: DeviceId, epoch: u32) -> Vec<u8> {
    let mut ad = Vec::with_capacity(label.len() + 36);
    ad.extend_from_slice(label);
    ad.extend_from_slice(workspace.as_bytes());
    ad.extend_from_slice(sender.as_bytes());
    ad.extend_from_slice(&epoch.to_be_bytes());
    ad
}

fn aead(key: &Secret<32>) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.expose_secret_bytes()).expect("32-byte AES key"))
}

fn signed_message(workspace: WorkspaceId, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(45 + body.len());
    message.extend_from_slice(b"daftar-envelope-v1 signature");
    message.extend_from_slice(workspace.as_bytes());
    message.extend_from_slice(body);
    message
}

impl Sealer<'_> {
    /// Seals one change of one document.
    ///
    /// Sealing is deterministic: the data key and both nonces are derived (HKDF-SHA256) from the
    /// epoch key and a digest of the sender, document, kind and change. So a push retried after
    /// a lost answer carries byte-identical envelopes and the relay stores each once; and since
    /// the same derivation input always means the same plaintext, no key and nonce pair is ever
    /// used for two different messages. The cost is that equal changes give equal envelopes,
    /// which tells the relay nothing it does not see from the envelope id already.
    pub fn seal(&self, document: DocumentId, kind: u8, change: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let mut input = b"daftar-envelope-v1 derivation".to_vec();
        input.extend_from_slice(self.sender.as_bytes());
        input.extend_from_slice(document.as_uuid().as_bytes());
        input.push(kind);
        input.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, change).as_ref());
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &input).extract(self.epoch_key.expose_secret_bytes());
        let mut material = [0u8; 56];
        prk.expand(&[b"data key and nonces".as_slice()], Len(56))
            .and_then(|okm| okm.fill(&mut material))
            .map_err(|_| EnvelopeError::Random)?;
        let random = Randomness {
            data_key: Secret::new(material[..32].try_into().expect("32 bytes")),
            wrap_nonce: material[32..44].try_into().expect("12 bytes"),
            nonce: material[44..56].try_into().expect("12 bytes"),
        };
        zeroize::Zeroize::zeroize(&mut material);
        self.seal_with(document, kind, change, random)
    }

    fn seal_with(
        &self,
        document: DocumentId,
        kind: u8,
        change: &[u8],
        random: Randomness,
    ) -> Result<Vec<u8>, EnvelopeError> {
        if change.len() > MAX_CHANGE_BYTES {
            return Err(EnvelopeError::TooLarge(change.len()));
        }
        let (workspace, sender, epoch) = (self.workspace, self.sender, self.epoch);
        let mut wrapped = random.data_key.expose_secret_bytes().to_vec();
        aead(self.epoch_key)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(random.wrap_nonce),
                Aad::from(associated_data(b"daftar-envelope-v1 key", workspace, sender, epoch)),
                &mut wrapped,
            )
            .map_err(|_| EnvelopeError::Random)?;
        let mut out = assemble(workspace, sender, epoch, (document, kind, change), &wrapped, &random)?;
        let signature = self.signing_key.0.sign(&signed_message(workspace, &out));
        out.extend_from_slice(signature.as_ref());
        Ok(out)
    }
}

/// Everything of an envelope before its signature: the header and the content sealed with the
/// data key (whose wrapped form is `wrapped`).
fn assemble(
    workspace: WorkspaceId,
    sender: DeviceId,
    epoch: u32,
    (document, kind, change): (DocumentId, u8, &[u8]),
    wrapped: &[u8],
    random: &Randomness,
) -> Result<Vec<u8>, EnvelopeError> {
    let mut content = Vec::with_capacity(17 + change.len() + TAG);
    content.extend_from_slice(document.as_uuid().as_bytes());
    content.push(kind);
    content.extend_from_slice(change);
    aead(&random.data_key)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(random.nonce),
            Aad::from(associated_data(b"daftar-envelope-v1", workspace, sender, epoch)),
            &mut content,
        )
        .map_err(|_| EnvelopeError::Random)?;
    let mut out = Vec::with_capacity(HEADER + content.len() + SIGNATURE);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(ALGORITHM_AES256GCM_ED25519);
    out.extend_from_slice(sender.as_bytes());
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(&random.wrap_nonce);
    out.extend_from_slice(wrapped);
    out.extend_from_slice(&random.nonce);
    out.extend_from_slice(&(content.len() as u32).to_be_bytes());
    out.extend_from_slice(&content);
    Ok(out)
}

/// An envelope's readable header: what the relay (and a receiver, before decrypting) can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    bytes: &'a [u8],
    pub sender: DeviceId,
    pub epoch: u32,
}

/// A verified, decrypted envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedEnvelope {
    pub sender: DeviceId,
    pub epoch: u32,
    pub document: DocumentId,
    /// The kind of document, as the sender's store numbers them (opaque here).
    pub kind: u8,
    pub change: Vec<u8>,
}

impl<'a> Envelope<'a> {
    /// The envelope without its content: see [`SealProof`].
    pub fn proof(&self) -> SealProof {
        let mut proof = [0u8; PROOF_LEN];
        proof[..PROOF_LEN - SIGNATURE].copy_from_slice(&self.bytes[22..98]);
        proof[PROOF_LEN - SIGNATURE..].copy_from_slice(&self.bytes[self.bytes.len() - SIGNATURE..]);
        SealProof(proof)
    }

    /// Checks the framing and reads the header, without any key.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() < HEADER + TAG + 17 + SIGNATURE {
            return Err(EnvelopeError::TooShort(bytes.len()));
        }
        if bytes[..4] != MAGIC {
            return Err(EnvelopeError::BadMagic);
        }
        if bytes[4] != VERSION {
            return Err(EnvelopeError::UnsupportedVersion(bytes[4]));
        }
        if bytes[5] != ALGORITHM_AES256GCM_ED25519 {
            return Err(EnvelopeError::UnsupportedAlgorithm(bytes[5]));
        }
        let n = u32::from_be_bytes(bytes[98..102].try_into().expect("4 bytes")) as usize;
        if HEADER.checked_add(n).and_then(|v| v.checked_add(SIGNATURE)) != Some(bytes.len()) {
            return Err(EnvelopeError::BadLength);
        }
        let sender = DeviceId::from_uuid(Uuid::from_bytes(bytes[6..22].try_into().expect("16 bytes")));
        let epoch = u32::from_be_bytes(bytes[22..26].try_into().expect("4 bytes"));
        Ok(Envelope { bytes, sender, epoch })
    }

    /// Verifies the signature against the sender's public key (`public_key_of`), then decrypts
    /// with the epoch key (`epoch_key_of`).
    pub fn open<'k>(
        &self,
        workspace: WorkspaceId,
        public_key_of: impl FnOnce(DeviceId) -> Option<[u8; 32]>,
        epoch_key_of: impl FnOnce(u32) -> Option<&'k Secret<32>>,
    ) -> Result<OpenedEnvelope, EnvelopeError> {
        let (sender, epoch) = (self.sender, self.epoch);
        let public_key = public_key_of(sender).ok_or(EnvelopeError::UnknownSender(sender))?;
        let (body, signature) = self.bytes.split_at(self.bytes.len() - SIGNATURE);
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(&signed_message(workspace, body), signature)
            .map_err(|_| EnvelopeError::BadSignature(sender))?;
        let epoch_key = epoch_key_of(epoch).ok_or(EnvelopeError::UnknownEpoch { sender, epoch })?;
        let undecryptable = || EnvelopeError::Undecryptable(sender);
        let mut wrapped = body[38..86].to_vec();
        let data_key: [u8; 32] = aead(epoch_key)
            .open_in_place(
                Nonce::assume_unique_for_key(body[26..38].try_into().expect("12 bytes")),
                Aad::from(associated_data(b"daftar-envelope-v1 key", workspace, sender, epoch)),
                &mut wrapped,
            )
            .map_err(|_| undecryptable())?
            .try_into()
            .map_err(|_| undecryptable())?;
        let data_key = Secret::new(data_key);
        zeroize::Zeroize::zeroize(&mut wrapped);
        let mut content = body[HEADER..].to_vec();
        let plain = aead(&data_key)
            .open_in_place(
                Nonce::assume_unique_for_key(body[86..98].try_into().expect("12 bytes")),
                Aad::from(associated_data(b"daftar-envelope-v1", workspace, sender, epoch)),
                &mut content,
            )
            .map_err(|_| undecryptable())?;
        if plain.len() < 17 {
            return Err(undecryptable());
        }
        let document = DocumentId::from_uuid(Uuid::from_bytes(plain[..16].try_into().expect("16 bytes")));
        Ok(OpenedEnvelope { sender, epoch, document, kind: plain[16], change: plain[17..].to_vec() })
    }
}

/// What an opened envelope leaves besides its change: the epoch, the wrapped data key, both
/// nonces and the signature (140 bytes). With the change, the document id and kind it rebuilds
/// the envelope byte for byte, so the sender's signature can be checked again long after the
/// envelope itself is gone. Stores keep one per change, and snapshots carry them, so a device
/// bootstrapping from another's snapshot checks who made each change instead of trusting the
/// snapshot's maker to say so.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SealProof([u8; PROOF_LEN]);

/// The length of a [`SealProof`].
pub const PROOF_LEN: usize = 4 + 12 + 48 + 12 + SIGNATURE;

impl std::fmt::Debug for SealProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealProof(epoch {})", self.epoch())
    }
}

impl SealProof {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Ok(SealProof(bytes.try_into().map_err(|_| EnvelopeError::BadLength)?))
    }

    pub fn as_bytes(&self) -> &[u8; PROOF_LEN] {
        &self.0
    }

    pub fn epoch(&self) -> u32 {
        u32::from_be_bytes(self.0[..4].try_into().expect("4 bytes"))
    }

    /// Checks that `sender` (whose public key is `public_key`) sealed exactly this change of
    /// this document: rebuilds the envelope (unwrapping its data key with the epoch key and
    /// encrypting the change again with it) and verifies the signature over it.
    pub fn verify<'k>(
        &self,
        workspace: WorkspaceId,
        sender: DeviceId,
        public_key: [u8; 32],
        (document, kind, change): (DocumentId, u8, &[u8]),
        epoch_key_of: impl FnOnce(u32) -> Option<&'k Secret<32>>,
    ) -> Result<(), EnvelopeError> {
        let epoch = self.epoch();
        let epoch_key = epoch_key_of(epoch).ok_or(EnvelopeError::UnknownEpoch { sender, epoch })?;
        let (wrap_nonce, rest) = self.0[4..].split_at(12);
        let (wrapped, rest) = rest.split_at(48);
        let (nonce, signature) = rest.split_at(12);
        let forged = || EnvelopeError::BadSignature(sender);
        let mut key = wrapped.to_vec();
        let data_key: [u8; 32] = aead(epoch_key)
            .open_in_place(
                Nonce::assume_unique_for_key(wrap_nonce.try_into().expect("12 bytes")),
                Aad::from(associated_data(b"daftar-envelope-v1 key", workspace, sender, epoch)),
                &mut key,
            )
            .map_err(|_| forged())?
            .try_into()
            .map_err(|_| forged())?;
        zeroize::Zeroize::zeroize(&mut key);
        let random = Randomness {
            data_key: Secret::new(data_key),
            wrap_nonce: wrap_nonce.try_into().expect("12 bytes"),
            nonce: nonce.try_into().expect("12 bytes"),
        };
        let body = assemble(workspace, sender, epoch, (document, kind, change), wrapped, &random)?;
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(&signed_message(workspace, &body), signature)
            .map_err(|_| forged())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (WorkspaceId, DeviceId, Secret<32>, DeviceSigningKey) {
        (
            WorkspaceId::from_uuid(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001)),
            DeviceId::from_uuid(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0002)),
            Secret::new([0x11; 32]),
            DeviceSigningKey::from_seed(&Secret::new([0x22; 32])),
        )
    }

    fn golden() -> Vec<u8> {
        let (workspace, sender, epoch_key, signing_key) = fixture();
        let sealer = Sealer { workspace, sender, epoch: 3, epoch_key: &epoch_key, signing_key: &signing_key };
        let document = DocumentId::from_uuid(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0003));
        let random = Randomness { data_key: Secret::new([0x33; 32]), wrap_nonce: [0x44; 12], nonce: [0x55; 12] };
        sealer.seal_with(document, 2, b"automerge change bytes", random).unwrap()
    }

    #[test]
    fn golden_bytes_of_format_version_1() {
        let expected = include_str!("../tests/golden-envelope-v1.hex").trim();
        assert_eq!(hex::encode(golden()), expected, "envelope format v1 must not change; add a version instead");
    }

    #[test]
    fn round_trip_and_header() {
        let (workspace, sender, epoch_key, signing_key) = fixture();
        let sealer = Sealer { workspace, sender, epoch: 7, epoch_key: &epoch_key, signing_key: &signing_key };
        let document = DocumentId::from_uuid(Uuid::now_v7());
        let bytes = sealer.seal(document, 1, b"change").unwrap();
        let envelope = Envelope::parse(&bytes).unwrap();
        assert_eq!((envelope.sender, envelope.epoch), (sender, 7));
        let public = signing_key.public_key();
        let opened = envelope.open(workspace, |_| Some(public), |_| Some(&epoch_key)).unwrap();
        assert_eq!((opened.document, opened.kind, opened.change.as_slice()), (document, 1, &b"change"[..]));
        let again = sealer.seal(document, 1, b"change").unwrap();
        assert_eq!(bytes, again, "a retried push carries the same bytes");
        let other = sealer.seal(document, 1, b"another change").unwrap();
        assert_ne!(bytes[26..98], other[26..98], "another change has its own data key and nonces");
    }

    #[test]
    fn a_proof_rebuilds_the_envelope_and_checks_who_sealed_exactly_this_change() {
        let (workspace, sender, epoch_key, signing_key) = fixture();
        let sealer = Sealer { workspace, sender, epoch: 4, epoch_key: &epoch_key, signing_key: &signing_key };
        let document = DocumentId::from_uuid(Uuid::now_v7());
        let bytes = sealer.seal(document, 1, b"issue A-000001").unwrap();
        let proof = Envelope::parse(&bytes).unwrap().proof();
        assert_eq!(proof.epoch(), 4);
        let public = signing_key.public_key();
        let check = |proof: &SealProof, sender, public, what: (DocumentId, u8, &[u8]), workspace| {
            proof.verify(workspace, sender, public, what, |e| (e == 4).then_some(&epoch_key))
        };
        check(&proof, sender, public, (document, 1, b"issue A-000001"), workspace).unwrap();
        assert_eq!(SealProof::from_bytes(proof.as_bytes()).unwrap(), proof);
        assert!(SealProof::from_bytes(&proof.as_bytes()[1..]).is_err(), "a short proof is refused");

        let forged = Err(EnvelopeError::BadSignature(sender));
        assert_eq!(check(&proof, sender, public, (document, 1, b"issue A-000002"), workspace), forged, "other change");
        let elsewhere = DocumentId::from_uuid(Uuid::now_v7());
        assert_eq!(check(&proof, sender, public, (elsewhere, 1, b"issue A-000001"), workspace), forged);
        assert_eq!(check(&proof, sender, public, (document, 2, b"issue A-000001"), workspace), forged, "other kind");
        let other_workspace = WorkspaceId::from_uuid(Uuid::now_v7());
        assert_eq!(check(&proof, sender, public, (document, 1, b"issue A-000001"), other_workspace), forged);
        // Claimed for another device (with that device's key): refused.
        let clerk = DeviceId::from_uuid(Uuid::now_v7());
        let clerk_key = DeviceSigningKey::from_seed(&Secret::new([0x66; 32])).public_key();
        let claimed = check(&proof, clerk, clerk_key, (document, 1, b"issue A-000001"), workspace);
        assert_eq!(claimed, Err(EnvelopeError::BadSignature(clerk)));
        assert_eq!(check(&proof, sender, clerk_key, (document, 1, b"issue A-000001"), workspace), forged);
        // Every flipped bit of the proof is noticed.
        for bit in 0..PROOF_LEN * 8 {
            let mut bytes = *proof.as_bytes();
            bytes[bit / 8] ^= 1 << (bit % 8);
            let flipped = SealProof(bytes);
            assert!(check(&flipped, sender, public, (document, 1, b"issue A-000001"), workspace).is_err(), "bit {bit}");
        }
        // Without the epoch key nothing can be checked.
        let unknown = proof.verify(workspace, sender, public, (document, 1, b"issue A-000001"), |_| None);
        assert_eq!(unknown, Err(EnvelopeError::UnknownEpoch { sender, epoch: 4 }));
    }
}
