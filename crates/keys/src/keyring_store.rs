//! Secrets in the OS keyring.
//!
//! Entries are named `service = "daftar"`, `user = "<secret name>:<namespace>"` — for example
//! `database-key:<namespace>` — where the namespace is chosen when the data directory is set up
//! and recorded beside the database, so two data directories (profiles) on one machine never
//! share or overwrite a secret.

use crate::{KeyError, Secret};

const SERVICE: &str = "daftar";

/// The database key's entry name.
pub const DATABASE_KEY: &str = "database-key";

fn account(name: &str, namespace: &str) -> String {
    format!("{name}:{namespace}")
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

/// Runs a keyring call, retrying for about three seconds when the Secret Service is briefly
/// unavailable, for example while D-Bus starts it again after it left the bus (gnome-keyring
/// aborts when a client dies in the middle of opening a session): on a loaded machine that has
/// been seen to outlast half a second. Missing entries and refusals are not retried.
fn with_retry<T>(mut call: impl FnMut() -> Result<T, KeyError>) -> Result<T, KeyError> {
    let mut delay = std::time::Duration::from_millis(100);
    for _ in 0..5 {
        match call() {
            Err(KeyError::KeyringUnavailable { .. }) => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            other => return other,
        }
    }
    call()
}

/// Stores the 256-bit secret `name` under `namespace`, failing if the keyring is unavailable.
/// Reads it back to prove the keyring really persisted it before anything depends on it.
pub fn store(name: &str, namespace: &str, secret: &Secret<32>) -> Result<(), KeyError> {
    let account = account(name, namespace);
    with_retry(|| entry(&account)?.set_secret(secret.expose_secret_bytes()).map_err(|e| map_error(e, &account)))?;
    let back = load(name, namespace)?;
    if back.expose_secret_bytes() != secret.expose_secret_bytes() {
        return Err(KeyError::Keyring("the keyring returned a different secret than was stored".into()));
    }
    Ok(())
}

/// Loads the secret `name` stored under `namespace`.
pub fn load(name: &str, namespace: &str) -> Result<Secret<32>, KeyError> {
    let account = account(name, namespace);
    let mut bytes = with_retry(|| entry(&account)?.get_secret().map_err(|e| map_error(e, &account)))?;
    let result = <[u8; 32]>::try_from(bytes.as_slice())
        .map(Secret::new)
        .map_err(|_| KeyError::Keyring(format!("the keyring entry {account} is not a 256-bit secret")));
    zeroize::Zeroize::zeroize(&mut bytes);
    result
}

/// Removes the secret `name` stored under `namespace` (used when set-up fails half-way).
pub fn delete(name: &str, namespace: &str) -> Result<(), KeyError> {
    let account = account(name, namespace);
    match entry(&account)?.delete_credential() {
        Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
        Err(e) => Err(map_error(e, &account)),
    }
}
