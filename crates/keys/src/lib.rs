//! Daftar's secrets and where they live.
//!
//! `../shared/KEYS.md` (mirrored in ARCHITECTURE.md) draws the whole hierarchy. This crate holds
//! the part the local store needs today: the **database key**, 256 random bits that encrypt the
//! SQLCipher file at rest. It lives in one of two places, chosen when a data directory is set up:
//!
//! - the OS keyring ([`keyring_store`]: Secret Service on Linux, Keychain on macOS, Credential
//!   Manager on Windows), namespaced by data directory so several profiles coexist; or
//! - an explicit, opt-in key file ([`key_file`]) wrapped with a key derived from a passphrase by
//!   argon2id, for machines without a keyring.
//!
//! There is no third place: with neither available, opening fails with an error naming the cause
//! and the fix. Never plaintext, never an in-memory stand-in (keyring's mock backend is not
//! compiled in: the crate is built with explicit platform features only).
//!
//! Secrets are [`Secret`]s: not `Clone`, not `Serialize`, redacted in `Debug`, zeroed on drop.

pub mod key_file;
pub mod keyring_store;
mod secret;

pub use secret::{DatabaseKey, Secret};

/// A key could not be obtained or stored.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "no OS keyring is available ({detail}); on Linux, run inside a desktop session with a Secret Service such as gnome-keyring or KeePassXC, or set the data directory up with a passphrase key file instead (daftar init --key-file)"
    )]
    KeyringUnavailable { detail: String },
    #[error(
        "the OS keyring holds no database key for this data directory ({account}); it was set up under another user account or machine, or the keyring entry was removed. Restore the data directory from a backup or recover the workspace from the relay"
    )]
    KeyMissing { account: String },
    #[error("the OS keyring refused the operation: {0}")]
    Keyring(String),
    #[error("the passphrase does not unlock the key file {path}; check the passphrase (DAFTAR_PASSPHRASE)")]
    WrongPassphrase { path: String },
    #[error("the key file {path} is damaged or not a Daftar key file: {detail}")]
    KeyFileMalformed { path: String, detail: String },
    #[error("could not {action} the key file {path}: {source}")]
    KeyFileIo {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the passphrase must be at least 8 characters long")]
    WeakPassphrase,
    #[error("the system random number generator failed")]
    Random,
}

/// Fills a new 256-bit key from the operating system's random source.
pub fn generate_database_key() -> Result<DatabaseKey, KeyError> {
    generate_secret()
}

/// 256 fresh random bits (keys, signing-key seeds).
pub fn generate_secret() -> Result<Secret<32>, KeyError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| KeyError::Random)?;
    Ok(Secret::new(bytes))
}

/// A short public fingerprint of a database key, stored beside the database so that opening it
/// with the wrong key can be told apart from a damaged file. It is an HMAC, so it reveals nothing
/// about the key.
pub fn key_check(key: &DatabaseKey) -> String {
    let mac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.expose_secret_bytes());
    let tag = ring::hmac::sign(&mac_key, b"daftar database key check v1");
    hex::encode(&tag.as_ref()[..16])
}
