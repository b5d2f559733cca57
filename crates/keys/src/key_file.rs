//! The opt-in alternative to the keyring: the database key wrapped with a passphrase.
//!
//! Format (JSON, versioned; frozen for version 1):
//! `{"format":"daftar-key-file","version":1,"kdf":"argon2id","m_cost_kib":…,"t_cost":…,
//!   "p_cost":…,"salt":hex,"aead":"aes-256-gcm","nonce":hex,"ciphertext":hex}`.
//! The wrapping key is argon2id(passphrase, salt); the AEAD's associated data is the literal
//! header string below, so a file relabelled to another version or algorithm fails to open.

use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::{DatabaseKey, KeyError, Secret};

const FORMAT: &str = "daftar-key-file";
const ASSOCIATED_DATA: &[u8] = b"daftar-key-file v1 argon2id aes-256-gcm";

/// argon2id cost parameters; the defaults follow OWASP's guidance for interactive logins.
#[derive(Debug, Clone, Copy)]
pub struct KdfCost {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl Default for KdfCost {
    fn default() -> Self {
        Self { m_cost_kib: 64 * 1024, t_cost: 3, p_cost: 1 }
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    format: String,
    version: u32,
    kdf: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
    aead: String,
    nonce: String,
    ciphertext: String,
}

fn derive(passphrase: &str, salt: &[u8], cost: KdfCost) -> Result<Secret<32>, String> {
    let params = argon2::Params::new(cost.m_cost_kib, cost.t_cost, cost.p_cost, Some(32))
        .map_err(|e| format!("bad argon2 parameters: {e}"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    argon.hash_password_into(passphrase.as_bytes(), salt, &mut out).map_err(|e| format!("argon2id failed: {e}"))?;
    Ok(Secret::new(out))
}

fn aead_key(wrapping: &Secret<32>) -> LessSafeKey {
    // AES-256-GCM accepts any 32-byte key, so this cannot fail.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, wrapping.expose_secret_bytes()).expect("32-byte AES key"))
}

/// Writes `key` to `path`, wrapped with `passphrase`. The file is written to a temporary name,
/// synced and renamed, so a crash never leaves a half-written key file.
pub fn create(path: &Path, passphrase: &str, key: &DatabaseKey, cost: KdfCost) -> Result<(), KeyError> {
    if passphrase.chars().count() < 8 {
        return Err(KeyError::WeakPassphrase);
    }
    let rng = SystemRandom::new();
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 12];
    rng.fill(&mut salt).map_err(|_| KeyError::Random)?;
    rng.fill(&mut nonce).map_err(|_| KeyError::Random)?;
    let text = seal(passphrase, key, cost, salt, nonce)
        .map_err(|detail| KeyError::KeyFileMalformed { path: path.display().to_string(), detail })?;
    let io = |action, source| KeyError::KeyFileIo { action, path: path.display().to_string(), source };
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
        file.write_all(text.as_bytes()).map_err(|e| io("write", e))?;
        file.sync_all().map_err(|e| io("sync", e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io("rename", e))?;
    Ok(())
}

fn seal(passphrase: &str, key: &DatabaseKey, cost: KdfCost, salt: [u8; 16], nonce: [u8; 12]) -> Result<String, String> {
    let wrapping = derive(passphrase, &salt, cost)?;
    let mut buffer = key.expose_secret_bytes().to_vec();
    aead_key(&wrapping)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(ASSOCIATED_DATA), &mut buffer)
        .map_err(|_| "encryption failed".to_owned())?;
    let file = KeyFile {
        format: FORMAT.into(),
        version: 1,
        kdf: "argon2id".into(),
        m_cost_kib: cost.m_cost_kib,
        t_cost: cost.t_cost,
        p_cost: cost.p_cost,
        salt: hex::encode(salt),
        aead: "aes-256-gcm".into(),
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(&buffer),
    };
    serde_json::to_string_pretty(&file).map_err(|e| e.to_string())
}

/// Reads the key from `path` with `passphrase`.
pub fn open(path: &Path, passphrase: &str) -> Result<DatabaseKey, KeyError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::KeyFileIo {
        action: "read",
        path: shown.clone(),
        source,
    })?;
    unseal(&text, passphrase).map_err(|e| match e {
        Unseal::Malformed(detail) => KeyError::KeyFileMalformed { path: shown.clone(), detail },
        Unseal::WrongPassphrase => KeyError::WrongPassphrase { path: shown.clone() },
    })
}

enum Unseal {
    Malformed(String),
    WrongPassphrase,
}

fn unseal(text: &str, passphrase: &str) -> Result<DatabaseKey, Unseal> {
    let file: KeyFile = serde_json::from_str(text).map_err(|e| Unseal::Malformed(e.to_string()))?;
    if file.format != FORMAT || file.version != 1 || file.kdf != "argon2id" || file.aead != "aes-256-gcm" {
        return Err(Unseal::Malformed(format!(
            "unsupported format {} version {} ({}, {})",
            file.format, file.version, file.kdf, file.aead
        )));
    }
    let bytes = |name: &str, hex_text: &str| {
        hex::decode(hex_text).map_err(|e| Unseal::Malformed(format!("{name} is not hex: {e}")))
    };
    let salt = bytes("salt", &file.salt)?;
    let nonce: [u8; 12] =
        bytes("nonce", &file.nonce)?.try_into().map_err(|_| Unseal::Malformed("nonce must be 12 bytes".into()))?;
    let mut buffer = bytes("ciphertext", &file.ciphertext)?;
    let cost = KdfCost { m_cost_kib: file.m_cost_kib, t_cost: file.t_cost, p_cost: file.p_cost };
    let wrapping = derive(passphrase, &salt, cost).map_err(Unseal::Malformed)?;
    let plain = aead_key(&wrapping)
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(ASSOCIATED_DATA), &mut buffer)
        .map_err(|_| Unseal::WrongPassphrase)?;
    let key: [u8; 32] = plain.try_into().map_err(|_| Unseal::Malformed("wrapped key is not 256 bits".into()))?;
    zeroize::Zeroize::zeroize(&mut buffer);
    Ok(DatabaseKey::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: KdfCost = KdfCost { m_cost_kib: 64, t_cost: 1, p_cost: 1 };

    #[test]
    fn golden_key_file_still_opens() {
        // Produced by `seal` with the fixed inputs below; if this fails, version 1 changed.
        let text = seal("correct horse", &DatabaseKey::new([7u8; 32]), CHEAP, [1u8; 16], [2u8; 12]).unwrap();
        let golden = include_str!("../tests/golden-key-file-v1.json");
        assert_eq!(text.trim(), golden.trim(), "key file format v1 must not change");
        let key = unseal(golden, "correct horse").ok().expect("golden file opens");
        assert_eq!(key.expose_secret_bytes(), &[7u8; 32]);
    }

    #[test]
    fn wrong_passphrase_and_tampering_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        create(&path, "correct horse", &DatabaseKey::new([9u8; 32]), CHEAP).unwrap();
        assert!(matches!(open(&path, "wrong horse!"), Err(KeyError::WrongPassphrase { .. })));
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(open(&path, "correct horse"), Err(KeyError::KeyFileMalformed { .. })));
    }

    #[test]
    fn short_passphrases_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = create(&dir.path().join("k"), "short", &DatabaseKey::new([0; 32]), CHEAP).unwrap_err();
        assert!(matches!(err, KeyError::WeakPassphrase));
    }
}
