//! Invite codes: how a new device gets into a workspace without the relay ever seeing the
//! workspace key.
//!
//! The code carries the relay's address, the workspace id, a one-time token (the relay keeps only
//! its hash) and a secret. The inviting device wraps the workspace key with a key derived from the
//! secret and leaves the wrapped copy with the relay; the new device presents the token, receives
//! the wrapped copy, and unwraps it with the secret from the code.
//!
//! Format: `daftar-invite-1.` followed by unpadded base64url of
//! `workspace (16) ‖ token (16) ‖ secret (32) ‖ relay URL (UTF-8)`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use daftar_domain::WorkspaceId;
use daftar_keys::Secret;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "daftar-invite-1.";

/// An invite code could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error("this is not a Daftar invite code (it should start with {PREFIX}); copy the whole code")]
    NotAnInvite,
    #[error("the invite code is damaged or incomplete; copy the whole code again")]
    Damaged,
    #[error("the invite's secret does not unlock the key the relay returned; ask for a new invite")]
    WrongSecret,
    #[error("the system random number generator failed")]
    Random,
}

/// A parsed invite code. Not `Clone`; its `Debug` hides the token and secret.
pub struct InviteCode {
    pub relay: String,
    pub workspace: WorkspaceId,
    token: [u8; 16],
    secret: Secret<32>,
}

impl std::fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InviteCode")
            .field("relay", &self.relay)
            .field("workspace", &self.workspace)
            .finish_non_exhaustive()
    }
}

fn wrap_key(secret: &Secret<32>) -> LessSafeKey {
    struct Len32;
    impl ring::hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"daftar invite v1").extract(secret.expose_secret_bytes());
    let info = [b"workspace-key-wrap".as_slice()];
    let mut key = [0u8; 32];
    prk.expand(&info, Len32).expect("valid length").fill(&mut key).expect("32 bytes");
    let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("32-byte key"));
    zeroize::Zeroize::zeroize(&mut key);
    aead
}

fn associated_data(workspace: WorkspaceId) -> Aad<Vec<u8>> {
    let mut ad = b"daftar invite wrap v1".to_vec();
    ad.extend_from_slice(workspace.as_bytes());
    Aad::from(ad)
}

impl InviteCode {
    /// A new invite for `workspace` through the relay at `relay`.
    pub fn generate(relay: &str, workspace: WorkspaceId) -> Result<Self, InviteError> {
        let rng = SystemRandom::new();
        let mut token = [0u8; 16];
        let mut secret = [0u8; 32];
        rng.fill(&mut token).map_err(|_| InviteError::Random)?;
        rng.fill(&mut secret).map_err(|_| InviteError::Random)?;
        Ok(Self { relay: relay.to_owned(), workspace, token, secret: Secret::new(secret) })
    }

    /// The code to give the new device's user (it contains the secret: share it privately).
    pub fn expose_code(&self) -> String {
        let mut bytes = Vec::with_capacity(64 + self.relay.len());
        bytes.extend_from_slice(self.workspace.as_bytes());
        bytes.extend_from_slice(&self.token);
        bytes.extend_from_slice(self.secret.expose_secret_bytes());
        bytes.extend_from_slice(self.relay.as_bytes());
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn parse(code: &str) -> Result<Self, InviteError> {
        let body = code.trim().strip_prefix(PREFIX).ok_or(InviteError::NotAnInvite)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| InviteError::Damaged)?;
        if bytes.len() <= 64 {
            return Err(InviteError::Damaged);
        }
        let relay = String::from_utf8(bytes[64..].to_vec()).map_err(|_| InviteError::Damaged)?;
        if !(relay.starts_with("http://") || relay.starts_with("https://")) {
            return Err(InviteError::Damaged);
        }
        Ok(Self {
            relay,
            workspace: WorkspaceId::from_uuid(uuid::Uuid::from_bytes(bytes[..16].try_into().expect("16 bytes"))),
            token: bytes[16..32].try_into().expect("16 bytes"),
            secret: Secret::new(bytes[32..64].try_into().expect("32 bytes")),
        })
    }

    /// The one-time token the new device presents to the relay.
    pub fn token(&self) -> &[u8; 16] {
        &self.token
    }

    /// The current workspace key and its epoch, wrapped for the new device:
    /// `nonce (12) ‖ AES-256-GCM(epoch (4, big-endian) ‖ key)`.
    pub fn wrap_workspace_key(&self, epoch: u32, key: &Secret<32>) -> Result<Vec<u8>, InviteError> {
        let mut nonce = [0u8; 12];
        SystemRandom::new().fill(&mut nonce).map_err(|_| InviteError::Random)?;
        let mut sealed = epoch.to_be_bytes().to_vec();
        sealed.extend_from_slice(key.expose_secret_bytes());
        wrap_key(&self.secret)
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), associated_data(self.workspace), &mut sealed)
            .map_err(|_| InviteError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The epoch and workspace key [`InviteCode::wrap_workspace_key`] wrapped (an invite made
    /// before epochs existed carries the key alone: epoch 1).
    pub fn unwrap_workspace_key(&self, wrapped: &[u8]) -> Result<(u32, Secret<32>), InviteError> {
        if wrapped.len() != 12 + 32 + 16 && wrapped.len() != 12 + 4 + 32 + 16 {
            return Err(InviteError::WrongSecret);
        }
        let (nonce, sealed) = wrapped.split_at(12);
        let mut buffer = sealed.to_vec();
        let plain = wrap_key(&self.secret)
            .open_in_place(
                Nonce::assume_unique_for_key(nonce.try_into().expect("12 bytes")),
                associated_data(self.workspace),
                &mut buffer,
            )
            .map_err(|_| InviteError::WrongSecret)?;
        let (epoch, key) = match plain.len() {
            32 => (1, &plain[..]),
            _ => (u32::from_be_bytes(plain[..4].try_into().expect("4 bytes")), &plain[4..]),
        };
        let key: [u8; 32] = key.try_into().map_err(|_| InviteError::WrongSecret)?;
        zeroize::Zeroize::zeroize(&mut buffer);
        Ok((epoch, Secret::new(key)))
    }
}

/// What a joining device claims about itself: a joining device's proof that the keys a relay
/// lists for it are the ones it enrolled with is HMAC-SHA256 over this, keyed from the
/// workspace key of `epoch` (which the device has only from the invite code, and a relay never
/// has). The approver checks it before it writes those keys into the membership document and
/// wraps the workspace key for them, so a relay that swapped them for its own gets neither.
#[derive(Debug, Clone, Copy)]
pub struct JoinClaim<'a> {
    pub workspace: WorkspaceId,
    pub device: daftar_domain::DeviceId,
    pub signing_key: &'a [u8; 32],
    pub agreement_key: &'a [u8; 32],
    pub epoch: u32,
}

impl JoinClaim<'_> {
    /// The proof, made with the workspace key of the claim's epoch.
    pub fn proof(&self, epoch_key: &Secret<32>) -> [u8; 32] {
        let tag = ring::hmac::sign(&self.key(epoch_key), &self.message());
        tag.as_ref().try_into().expect("HMAC-SHA256 is 32 bytes")
    }

    /// Whether `proof` is this claim's (compared in constant time).
    pub fn verify(&self, epoch_key: &Secret<32>, proof: &[u8]) -> bool {
        ring::hmac::verify(&self.key(epoch_key), &self.message(), proof).is_ok()
    }

    fn key(&self, epoch_key: &Secret<32>) -> ring::hmac::Key {
        struct Len;
        impl ring::hkdf::KeyType for Len {
            fn len(&self) -> usize {
                32
            }
        }
        let mut key = [0u8; 32];
        ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"daftar join proof v1")
            .extract(epoch_key.expose_secret_bytes())
            .expand(&[self.workspace.as_bytes().as_slice()], Len)
            .and_then(|okm| okm.fill(&mut key))
            .expect("32 bytes is a valid HKDF-SHA256 length");
        let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
        zeroize::Zeroize::zeroize(&mut key);
        hmac
    }

    fn message(&self) -> Vec<u8> {
        let mut message = Vec::with_capacity(84);
        message.extend_from_slice(self.device.as_bytes());
        message.extend_from_slice(self.signing_key);
        message.extend_from_slice(self.agreement_key);
        message.extend_from_slice(&self.epoch.to_be_bytes());
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_carry_the_key_only_for_their_holder() {
        let workspace = WorkspaceId::from_uuid(uuid::Uuid::now_v7());
        let invite = InviteCode::generate("https://relay.example", workspace).unwrap();
        let parsed = InviteCode::parse(&invite.expose_code()).unwrap();
        assert_eq!(
            (parsed.relay.as_str(), parsed.workspace, parsed.token()),
            ("https://relay.example", workspace, invite.token())
        );
        let wrapped = invite.wrap_workspace_key(3, &Secret::new([6; 32])).unwrap();
        let (epoch, key) = parsed.unwrap_workspace_key(&wrapped).unwrap();
        assert_eq!((epoch, key.expose_secret_bytes()), (3, &[6; 32]));
        let other = InviteCode::generate("https://relay.example", workspace).unwrap();
        assert_eq!(other.unwrap_workspace_key(&wrapped).unwrap_err(), InviteError::WrongSecret);
        assert_eq!(InviteCode::parse("hello").unwrap_err(), InviteError::NotAnInvite);
        let code = invite.expose_code();
        assert_eq!(InviteCode::parse(&code[..40]).unwrap_err(), InviteError::Damaged);
    }

    #[test]
    fn a_join_proof_binds_the_device_and_both_keys_to_the_workspace_key() {
        let workspace = WorkspaceId::from_uuid(uuid::Uuid::now_v7());
        let device = daftar_domain::DeviceId::from_uuid(uuid::Uuid::now_v7());
        let key = Secret::new([7; 32]);
        let claim = JoinClaim { workspace, device, signing_key: &[1; 32], agreement_key: &[2; 32], epoch: 3 };
        let proof = claim.proof(&key);
        assert!(claim.verify(&key, &proof));
        let other = daftar_domain::DeviceId::from_uuid(uuid::Uuid::now_v7());
        assert!(!JoinClaim { device: other, ..claim }.verify(&key, &proof));
        assert!(!JoinClaim { signing_key: &[9; 32], ..claim }.verify(&key, &proof), "a swapped signing key");
        assert!(!JoinClaim { agreement_key: &[9; 32], ..claim }.verify(&key, &proof), "a swapped agreement key");
        assert!(!JoinClaim { epoch: 4, ..claim }.verify(&key, &proof), "another epoch");
        assert!(!claim.verify(&Secret::new([8; 32]), &proof), "another workspace key");
        let elsewhere = WorkspaceId::from_uuid(uuid::Uuid::now_v7());
        assert!(!JoinClaim { workspace: elsewhere, ..claim }.verify(&key, &proof));
        assert!(!claim.verify(&key, &proof[..31]), "a cut proof");
    }
}
