//! Workspace-key epochs: a new workspace key after a revocation (or on demand), wrapped for
//! each remaining device, so that a revoked device cannot read anything written after it.
//!
//! Every device has an X25519 *agreement key* (its public half is in the membership document).
//! To hand device D the key of epoch N, the rotating device makes a one-off X25519 key pair,
//! agrees a secret with D's public key, derives a wrapping key from it with HKDF-SHA256 (bound
//! to the workspace, the epoch, D and both public keys) and seals the epoch key with
//! AES-256-GCM. The recovery key has an agreement key of its own (derived from it), so every
//! epoch also gets a copy only the recovery key opens: backups and a rebuild from the relay
//! keep working after rotations.
//!
//! The sending side uses *ring*'s ephemeral X25519. *ring* deliberately offers no static X25519
//! private key (briansmith/ring#331), which the receiving side needs, so that one operation is
//! x25519-dalek's `StaticSecret`; HKDF and AES-GCM stay *ring*'s.
//!
//! A wrapped key is `version (1) ‖ ephemeral public key (32) ‖ nonce (12) ‖ sealed key (48)`.
//! Whoever wraps also signs [`statement`] with its device key, so a relay (which stores the
//! wrapped keys) cannot hand a device a key of its own making: the receiver checks the signer
//! against the membership document.

use daftar_domain::WorkspaceId;
use daftar_keys::Secret;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::agreement::{EphemeralPrivateKey, UnparsedPublicKey, X25519, agree_ephemeral};
use ring::rand::{SecureRandom, SystemRandom};

/// Format of a wrapped epoch key.
const VERSION: u8 = 1;
/// Length of a wrapped epoch key.
pub const WRAPPED_LEN: usize = 1 + 32 + 12 + 32 + 16;

/// Who an epoch key is wrapped for: a device (by id) or the recovery key.
pub const RECOVERY_HOLDER: &str = "recovery";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochError {
    #[error("the system random number generator failed")]
    Random,
    #[error("{0:?} is not an X25519 public key")]
    BadPublicKey(String),
    #[error("the wrapped key for epoch {epoch} is malformed ({len} bytes, expected {WRAPPED_LEN})")]
    Malformed { epoch: u32, len: usize },
    #[error("the key of epoch {epoch} was not wrapped for this device, or was altered")]
    WrongKey { epoch: u32 },
}

/// A device's (or the recovery key's) X25519 key for receiving epoch keys.
pub struct AgreementKey(x25519_dalek::StaticSecret);

impl std::fmt::Debug for AgreementKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AgreementKey").field(&hex::encode(self.public_key())).finish()
    }
}

impl AgreementKey {
    pub fn from_seed(seed: &Secret<32>) -> Self {
        AgreementKey(x25519_dalek::StaticSecret::from(*seed.expose_secret_bytes()))
    }

    pub fn public_key(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.0).to_bytes()
    }

    /// Opens the key of `epoch` wrapped for `holder` (this key's owner).
    pub fn open(
        &self,
        workspace: WorkspaceId,
        epoch: u32,
        holder: &str,
        wrapped: &[u8],
    ) -> Result<Secret<32>, EpochError> {
        if wrapped.len() != WRAPPED_LEN || wrapped[0] != VERSION {
            return Err(EpochError::Malformed { epoch, len: wrapped.len() });
        }
        let ephemeral: [u8; 32] = wrapped[1..33].try_into().expect("32 bytes");
        let shared = self.0.diffie_hellman(&x25519_dalek::PublicKey::from(ephemeral));
        let key = wrapping_key(shared.as_bytes(), workspace, epoch, holder, &ephemeral, &self.public_key());
        let nonce = Nonce::assume_unique_for_key(wrapped[33..45].try_into().expect("12 bytes"));
        let mut buffer = wrapped[45..].to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(aad(workspace, epoch, holder)), &mut buffer)
            .map_err(|_| EpochError::WrongKey { epoch })?;
        let out: [u8; 32] = plain.try_into().map_err(|_| EpochError::WrongKey { epoch })?;
        zeroize::Zeroize::zeroize(&mut buffer);
        Ok(Secret::new(out))
    }
}

/// Wraps `key`, the workspace key of `epoch`, for `holder` whose agreement public key is
/// `recipient`.
pub fn wrap(
    recipient: &[u8; 32],
    workspace: WorkspaceId,
    epoch: u32,
    holder: &str,
    key: &Secret<32>,
) -> Result<Vec<u8>, EpochError> {
    let random = SystemRandom::new();
    let ephemeral = EphemeralPrivateKey::generate(&X25519, &random).map_err(|_| EpochError::Random)?;
    let ephemeral_public: [u8; 32] = ephemeral
        .compute_public_key()
        .map_err(|_| EpochError::Random)?
        .as_ref()
        .try_into()
        .expect("X25519 public keys are 32 bytes");
    let peer = UnparsedPublicKey::new(&X25519, recipient);
    let sealing = agree_ephemeral(ephemeral, &peer, |shared| {
        wrapping_key(shared, workspace, epoch, holder, &ephemeral_public, recipient)
    })
    .map_err(|_| EpochError::BadPublicKey(hex::encode(recipient)))?;
    let mut nonce = [0u8; 12];
    random.fill(&mut nonce).map_err(|_| EpochError::Random)?;
    let mut sealed = key.expose_secret_bytes().to_vec();
    sealing
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(workspace, epoch, holder)),
            &mut sealed,
        )
        .map_err(|_| EpochError::Random)?;
    let mut out = Vec::with_capacity(WRAPPED_LEN);
    out.push(VERSION);
    out.extend_from_slice(&ephemeral_public);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// What the wrapping device signs: the workspace, the epoch, the holder and the wrapped key.
pub fn statement(workspace: WorkspaceId, epoch: u32, holder: &str, wrapped: &[u8]) -> Vec<u8> {
    let mut out = b"daftar epoch key v1\0".to_vec();
    out.extend_from_slice(workspace.as_bytes());
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(holder.as_bytes());
    out.push(0);
    out.extend_from_slice(wrapped);
    out
}

/// Checks an Ed25519 signature (hex) over [`statement`] with `signer`'s public key.
pub fn verify_statement(signer: &[u8; 32], statement: &[u8], signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex) else { return false };
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, signer).verify(statement, &signature).is_ok()
}

fn aad(workspace: WorkspaceId, epoch: u32, holder: &str) -> Vec<u8> {
    let mut out = workspace.as_bytes().to_vec();
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(holder.as_bytes());
    out
}

fn wrapping_key(
    shared: &[u8],
    workspace: WorkspaceId,
    epoch: u32,
    holder: &str,
    ephemeral: &[u8; 32],
    recipient: &[u8; 32],
) -> LessSafeKey {
    struct Len32;
    impl ring::hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"daftar epoch key wrap v1");
    let prk = salt.extract(shared);
    let context = [workspace.as_bytes().as_slice(), &epoch.to_be_bytes(), holder.as_bytes(), ephemeral, recipient];
    let okm = prk.expand(&context, Len32).expect("32 bytes is a valid HKDF-SHA256 length");
    let mut bytes = [0u8; 32];
    okm.fill(&mut bytes).expect("32 bytes fill");
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).expect("32-byte AES key"));
    zeroize::Zeroize::zeroize(&mut bytes);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> WorkspaceId {
        WorkspaceId::from_uuid(uuid::Uuid::from_u128(7))
    }

    #[test]
    fn only_the_holder_opens_its_key_and_only_for_that_workspace_epoch_and_name() {
        let device = AgreementKey::from_seed(&Secret::new([1; 32]));
        let other = AgreementKey::from_seed(&Secret::new([2; 32]));
        let key = Secret::new([9; 32]);
        let wrapped = wrap(&device.public_key(), workspace(), 3, "d", &key).unwrap();
        assert_eq!(wrapped.len(), WRAPPED_LEN);
        assert_eq!(device.open(workspace(), 3, "d", &wrapped).unwrap().expose_secret_bytes(), &[9; 32]);
        assert_eq!(other.open(workspace(), 3, "d", &wrapped).unwrap_err(), EpochError::WrongKey { epoch: 3 });
        assert!(device.open(workspace(), 4, "d", &wrapped).is_err(), "another epoch");
        assert!(device.open(workspace(), 3, "e", &wrapped).is_err(), "another holder");
        let elsewhere = WorkspaceId::from_uuid(uuid::Uuid::from_u128(8));
        assert!(device.open(elsewhere, 3, "d", &wrapped).is_err(), "another workspace");
        assert_ne!(wrapped, wrap(&device.public_key(), workspace(), 3, "d", &key).unwrap(), "fresh each time");
    }

    #[test]
    fn every_flipped_bit_and_truncation_is_refused() {
        let device = AgreementKey::from_seed(&Secret::new([1; 32]));
        let wrapped = wrap(&device.public_key(), workspace(), 2, "d", &Secret::new([5; 32])).unwrap();
        for i in 0..wrapped.len() * 8 {
            let mut bad = wrapped.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(device.open(workspace(), 2, "d", &bad).is_err(), "bit {i}");
        }
        for len in 0..wrapped.len() {
            assert!(device.open(workspace(), 2, "d", &wrapped[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn a_statement_verifies_only_unchanged_and_with_its_signer() {
        let signer = crate::DeviceSigningKey::from_seed(&Secret::new([3; 32]));
        let other = crate::DeviceSigningKey::from_seed(&Secret::new([4; 32]));
        let text = statement(workspace(), 2, "d", b"wrapped");
        let signature = hex::encode(signer.sign(&text));
        assert!(verify_statement(&signer.public_key(), &text, &signature));
        assert!(!verify_statement(&other.public_key(), &text, &signature));
        assert!(!verify_statement(&signer.public_key(), &statement(workspace(), 3, "d", b"wrapped"), &signature));
        assert!(!verify_statement(&signer.public_key(), &text, "zz"));
    }
}
