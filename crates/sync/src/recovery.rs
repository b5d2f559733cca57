//! The recovery key: the one secret that rebuilds a workspace when every device is lost.
//!
//! It is 160 random bits plus a 16-bit checksum, written as 36 Crockford base-32 characters in
//! six groups (`7QK2M9-…`): easy to copy by hand, tolerant of case, spaces, `I`/`L` for `1` and
//! `O` for `0`, and a typo is caught by the checksum (1 in 65,536 slips through) instead of
//! producing a wrong key. 160 bits is far beyond guessing, so keys derived from it use HKDF;
//! no slow password hash is needed.

use daftar_domain::WorkspaceId;
use daftar_keys::Secret;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

fn wrap_aead(key: &Secret<32>) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.expose_secret_bytes()).expect("32-byte AES key"))
}

fn wrap_ad(workspace: WorkspaceId) -> Aad<Vec<u8>> {
    let mut ad = b"daftar recovery wrap v1".to_vec();
    ad.extend_from_slice(workspace.as_bytes());
    Aad::from(ad)
}

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const SECRET_BYTES: usize = 20;
const CHARS: usize = 36;

/// A typed recovery key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryKeyError {
    #[error("a recovery key has 36 letters and digits in six groups (got {0}); check that none is missing")]
    WrongLength(usize),
    #[error(
        "{character:?} (position {position}) cannot be part of a recovery key; it uses digits and the letters A–Z without U"
    )]
    InvalidCharacter { character: char, position: usize },
    #[error("the recovery key has a typo: its checksum does not match. Compare each group with the printed key")]
    Checksum,
    #[error("the system random number generator failed")]
    Random,
    #[error(
        "this recovery key does not unlock the workspace key: it belongs to another workspace, or the stored copy is damaged"
    )]
    WrongKey,
}

/// What a key derived from the recovery key is for; each purpose gets an independent key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Wraps the copy of the workspace key kept on the relay.
    WorkspaceKeyWrap,
    /// Encrypts backup files.
    Backup,
    /// Seeds the Ed25519 key that proves knowledge of the recovery key to the relay.
    RelayRecovery,
    /// Seeds the X25519 key that receives each new epoch's workspace key.
    EpochKeys,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::WorkspaceKeyWrap => b"daftar recovery v1 workspace-key-wrap",
            Purpose::Backup => b"daftar recovery v1 backup",
            Purpose::RelayRecovery => b"daftar recovery v1 relay-recovery",
            Purpose::EpochKeys => b"daftar recovery v1 epoch-keys",
        }
    }
}

/// The recovery key. Not `Clone`; its `Debug` never shows it.
pub struct RecoveryKey(Secret<SECRET_BYTES>);

impl std::fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryKey([redacted])")
    }
}

fn checksum(secret: &[u8; SECRET_BYTES]) -> [u8; 2] {
    let mut input = b"daftar recovery key checksum".to_vec();
    input.extend_from_slice(secret);
    let digest = ring::digest::digest(&ring::digest::SHA256, &input);
    [digest.as_ref()[0], digest.as_ref()[1]]
}

struct Len32;

impl ring::hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

impl RecoveryKey {
    pub fn generate() -> Result<Self, RecoveryKeyError> {
        let mut bytes = [0u8; SECRET_BYTES];
        SystemRandom::new().fill(&mut bytes).map_err(|_| RecoveryKeyError::Random)?;
        Ok(Self(Secret::new(bytes)))
    }

    /// The printable form, `XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX`. Show it once.
    pub fn expose_printable(&self) -> String {
        let secret = self.0.expose_secret_bytes();
        let mut bits: Vec<u8> = secret.iter().chain(checksum(secret).iter()).copied().collect();
        bits.push(0); // padding for the last 4 bits
        let mut out = String::with_capacity(CHARS + 5);
        for i in 0..CHARS {
            let bit = i * 5;
            let window = (u16::from(bits[bit / 8]) << 8) | u16::from(bits[bit / 8 + 1]);
            let value = (window >> (11 - bit % 8)) & 0x1F;
            if i > 0 && i % 6 == 0 {
                out.push('-');
            }
            out.push(char::from(ALPHABET[usize::from(value)]));
        }
        out
    }

    /// Reads a typed recovery key.
    pub fn parse(text: &str) -> Result<Self, RecoveryKeyError> {
        let mut values = Vec::with_capacity(CHARS);
        for (position, character) in text.chars().enumerate() {
            if character.is_whitespace() || character == '-' {
                continue;
            }
            let normal = match character.to_ascii_uppercase() {
                'I' | 'L' => '1',
                'O' => '0',
                c => c,
            };
            let value = ALPHABET
                .iter()
                .position(|&a| char::from(a) == normal)
                .ok_or(RecoveryKeyError::InvalidCharacter { character, position: position + 1 })?;
            values.push(value as u8);
        }
        if values.len() != CHARS {
            return Err(RecoveryKeyError::WrongLength(values.len()));
        }
        let mut bytes = [0u8; SECRET_BYTES + 3];
        for (i, value) in values.iter().enumerate() {
            let bit = i * 5;
            let shifted = u16::from(*value) << (11 - bit % 8);
            bytes[bit / 8] |= (shifted >> 8) as u8;
            bytes[bit / 8 + 1] |= shifted as u8;
        }
        let secret: [u8; SECRET_BYTES] = bytes[..SECRET_BYTES].try_into().expect("20 bytes");
        if bytes[SECRET_BYTES..SECRET_BYTES + 2] != checksum(&secret) || bytes[SECRET_BYTES + 2] != 0 {
            return Err(RecoveryKeyError::Checksum);
        }
        Ok(Self(Secret::new(secret)))
    }

    /// The key that signs recovery requests to the relay. The relay holds only its public half,
    /// so it can check that a request comes from someone holding the recovery key.
    pub fn relay_signing_key(&self) -> crate::DeviceSigningKey {
        crate::DeviceSigningKey::from_seed(&self.derive(Purpose::RelayRecovery))
    }

    /// The key that receives every new epoch's workspace key (see [`crate::epoch`]): its
    /// public half is in the membership document, so any owner or admin rotating the key
    /// leaves a copy that only the recovery key opens.
    pub fn agreement_key(&self) -> crate::AgreementKey {
        crate::AgreementKey::from_seed(&self.derive(Purpose::EpochKeys))
    }

    /// Wraps the workspace key for safekeeping on the relay: `nonce (12) ‖ AES-256-GCM(key)`,
    /// bound to the workspace id.
    pub fn wrap_workspace_key(&self, workspace: WorkspaceId, key: &Secret<32>) -> Result<Vec<u8>, RecoveryKeyError> {
        let mut nonce = [0u8; 12];
        SystemRandom::new().fill(&mut nonce).map_err(|_| RecoveryKeyError::Random)?;
        let mut sealed = key.expose_secret_bytes().to_vec();
        wrap_aead(&self.derive(Purpose::WorkspaceKeyWrap))
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), wrap_ad(workspace), &mut sealed)
            .map_err(|_| RecoveryKeyError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Unwraps what [`RecoveryKey::wrap_workspace_key`] produced.
    pub fn unwrap_workspace_key(&self, workspace: WorkspaceId, wrapped: &[u8]) -> Result<Secret<32>, RecoveryKeyError> {
        if wrapped.len() != 12 + 32 + 16 {
            return Err(RecoveryKeyError::WrongKey);
        }
        let (nonce, sealed) = wrapped.split_at(12);
        let mut buffer = sealed.to_vec();
        let plain = wrap_aead(&self.derive(Purpose::WorkspaceKeyWrap))
            .open_in_place(
                Nonce::assume_unique_for_key(nonce.try_into().expect("12 bytes")),
                wrap_ad(workspace),
                &mut buffer,
            )
            .map_err(|_| RecoveryKeyError::WrongKey)?;
        let key: [u8; 32] = plain.try_into().map_err(|_| RecoveryKeyError::WrongKey)?;
        zeroize::Zeroize::zeroize(&mut buffer);
        Ok(Secret::new(key))
    }

    /// An independent 256-bit key for `purpose` (HKDF-SHA256).
    pub fn derive(&self, purpose: Purpose) -> Secret<32> {
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"daftar recovery v1");
        let prk = salt.extract(self.0.expose_secret_bytes());
        let label = [purpose.label()];
        let okm = prk.expand(&label, Len32).expect("32 bytes is a valid HKDF-SHA256 length");
        let mut out = [0u8; 32];
        okm.fill(&mut out).expect("32 bytes fill");
        Secret::new(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_form_round_trips_and_tolerates_how_people_type() {
        let key = RecoveryKey(Secret::new([0xA5; SECRET_BYTES]));
        let printed = key.expose_printable();
        assert_eq!(printed.len(), 41);
        assert_eq!(printed.split('-').count(), 6);
        let sloppy = printed.to_lowercase().replace('-', " ").replace('1', "l").replace('0', "o");
        let back = RecoveryKey::parse(&sloppy).unwrap();
        assert_eq!(back.0.expose_secret_bytes(), key.0.expose_secret_bytes());
        assert_eq!(
            back.derive(Purpose::Backup).expose_secret_bytes(),
            key.derive(Purpose::Backup).expose_secret_bytes()
        );
        assert_ne!(
            key.derive(Purpose::Backup).expose_secret_bytes(),
            key.derive(Purpose::WorkspaceKeyWrap).expose_secret_bytes(),
            "each purpose has its own key"
        );
    }

    #[test]
    fn the_workspace_key_unwraps_only_with_its_recovery_key_and_workspace() {
        let recovery = RecoveryKey::generate().unwrap();
        let workspace = WorkspaceId::from_uuid(uuid::Uuid::now_v7());
        let wrapped = recovery.wrap_workspace_key(workspace, &Secret::new([4; 32])).unwrap();
        assert_eq!(recovery.unwrap_workspace_key(workspace, &wrapped).unwrap().expose_secret_bytes(), &[4; 32]);
        let other = RecoveryKey::generate().unwrap();
        assert_eq!(other.unwrap_workspace_key(workspace, &wrapped).unwrap_err(), RecoveryKeyError::WrongKey);
        let elsewhere = WorkspaceId::from_uuid(uuid::Uuid::now_v7());
        assert_eq!(recovery.unwrap_workspace_key(elsewhere, &wrapped).unwrap_err(), RecoveryKeyError::WrongKey);
    }

    #[test]
    fn typos_are_caught() {
        let printed = RecoveryKey::generate().unwrap().expose_printable();
        let mut chars: Vec<char> = printed.chars().collect();
        chars[3] = if chars[3] == 'X' { 'Y' } else { 'X' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(RecoveryKey::parse(&typo).unwrap_err(), RecoveryKeyError::Checksum);
        assert_eq!(RecoveryKey::parse(&printed[..30]).unwrap_err(), RecoveryKeyError::WrongLength(26));
        assert!(matches!(
            RecoveryKey::parse(&printed.replacen(&printed[..1], "U", 1)),
            Err(RecoveryKeyError::InvalidCharacter { character: 'U', position: 1 })
        ));
    }
}
