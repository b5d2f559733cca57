//! The database key in the OS keyring.
//!
//! Entries are named `service = "daftar"`, `user = "database-key:<namespace>"`, where the
//! namespace is chosen when the data directory is set up and recorded beside the database, so
//! two data directories (profiles) on one machine never share or overwrite a key.

use crate::{DatabaseKey, KeyError};

const SERVICE: &str = "daftar";

fn account(namespace: &str) -> String {
    format!("database-key:{namespace}")
}

fn map_error(err: keyring::Error, account: &str) -> KeyError {
    match err {
        keyring::Error::NoEntry => KeyError::KeyMissing { account: account.to_owned() },
        keyring::Error::PlatformFailure(inner) | keyring::Error::NoStorageAccess(inner) => {
            KeyError::KeyringUnavailable { detail: inner.to_string() }
        }
        other => KeyError::Keyring(other.to_string()),
    }
}

fn entry(account: &str) -> Result<keyring::Entry, KeyError> {
    keyring::Entry::new(SERVICE, account).map_err(|e| map_error(e, account))
}

/// Stores `key` under `namespace`, failing if the keyring is unavailable. Reads it back to prove
/// the keyring really persisted it before anything is encrypted with it.
pub fn store(namespace: &str, key: &DatabaseKey) -> Result<(), KeyError> {
    let account = account(namespace);
    let entry = entry(&account)?;
    entry.set_secret(key.expose_secret_bytes()).map_err(|e| map_error(e, &account))?;
    let back = load(namespace)?;
    if back.expose_secret_bytes() != key.expose_secret_bytes() {
        return Err(KeyError::Keyring("the keyring returned a different key than was stored".into()));
    }
    Ok(())
}

/// Loads the key stored under `namespace`.
pub fn load(namespace: &str) -> Result<DatabaseKey, KeyError> {
    let account = account(namespace);
    let mut bytes = entry(&account)?.get_secret().map_err(|e| map_error(e, &account))?;
    let result = <[u8; 32]>::try_from(bytes.as_slice())
        .map(DatabaseKey::new)
        .map_err(|_| KeyError::Keyring(format!("the keyring entry {account} is not a 256-bit key")));
    zeroize::Zeroize::zeroize(&mut bytes);
    result
}

/// Removes the key stored under `namespace` (used when set-up fails half-way).
pub fn delete(namespace: &str) -> Result<(), KeyError> {
    let account = account(namespace);
    match entry(&account)?.delete_credential() {
        Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
        Err(e) => Err(map_error(e, &account)),
    }
}
