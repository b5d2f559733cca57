use daftar_relay_client::RelayError;
use daftar_store::StoreError;
use daftar_sync::{EnvelopeError, InviteError, RecoveryKeyError};

/// Syncing, joining or recovering failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("this device has no relay; add one with `daftar relay add URL`")]
    NoRelay,
    #[error("no relay could be reached; the changes stay queued and go out at the next sync ({})", reasons.join("; "))]
    NoRelayReached { reasons: Vec<String> },
    #[error("{url} is not one of this device's relays (daftar relay list)")]
    UnknownRelay { url: String },
    #[error("role must be one of owner, admin, accountant, clerk, viewer (got {0:?})")]
    UnknownRole(String),
    #[error("the relay refused the {what}: {source}")]
    SetUpRefused { what: &'static str, source: RelayError },
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Invite(#[from] InviteError),
    #[error(transparent)]
    RecoveryKey(#[from] RecoveryKeyError),
    #[error("could not make a key: {0}")]
    Keys(#[from] daftar_keys::KeyError),
    #[error(transparent)]
    Snapshot(#[from] daftar_sync::snapshot::SnapshotError),
    #[error(transparent)]
    Mfa(#[from] daftar_sync::mfa::MfaError),
    #[error(transparent)]
    Epoch(#[from] daftar_sync::EpochError),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "this device ({device}) has joined and waits for an owner or admin to approve it: `daftar devices approve {device}` on their device"
    )]
    AwaitingApproval { device: daftar_domain::DeviceId },
}
