//! Errors as they cross to the UI: a closed set of codes the UI branches on, a message that
//! says what happened and what to do, and for invalid input the problems per field.

use daftar_domain::Problems;
use daftar_store::StoreError;
use daftar_sync_driver::SyncError;
use serde::Serialize;
use ts_rs::TS;

/// What failed, for the UI to branch on. Closed: a new code is a new variant here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum ErrorCode {
    /// No workspace in this data directory yet: onboarding.
    NotInitialised,
    AlreadyInitialised,
    KeyringUnavailable,
    KeyMissing,
    WrongKey,
    KeyError,
    /// The data is damaged.
    Corrupt,
    SchemaTooNew,
    /// Another program is writing; try again.
    Busy,
    NotFound,
    Ambiguous,
    /// Input that cannot be accepted; `problems` says where.
    Invalid,
    /// The record's state forbids this (issued, in the trash, …).
    Conflict,
    Io,
    /// No relay could be reached.
    Offline,
    /// A relay refused this device or request.
    Refused,
    /// This device's role does not allow it; the message names the role it would need.
    Forbidden,
    /// A backup could not be made (before a schema update: the store was left as it was).
    BackupFailed,
    /// A bug: the message says what to report.
    Internal,
}

/// An error crossing to the UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS, thiserror::Error)]
#[error("{message}")]
#[ts(export)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// For `invalid`: each problem with the field it concerns.
    pub problems: Problems,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), problems: Problems::new() }
    }

    pub fn invalid(problems: Problems) -> Self {
        let message = problems.iter().map(|p| p.message.clone()).collect::<Vec<_>>().join("; ");
        ApiError { code: ErrorCode::Invalid, message, problems }
    }
}

impl From<daftar_backup::BackupError> for ApiError {
    fn from(error: daftar_backup::BackupError) -> Self {
        match error {
            daftar_backup::BackupError::Store(e) => e.into(),
            daftar_backup::BackupError::Sync(e) => e.into(),
            other => {
                let code = match other.code() {
                    "damaged_backup" | "not_a_backup" => ErrorCode::Corrupt,
                    "wrong_key" => ErrorCode::WrongKey,
                    "not_found" => ErrorCode::NotFound,
                    "io" => ErrorCode::Io,
                    _ => ErrorCode::Invalid,
                };
                ApiError::new(code, other.to_string())
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let code = match error.code() {
            "not_initialised" => ErrorCode::NotInitialised,
            "already_initialised" => ErrorCode::AlreadyInitialised,
            "keyring_unavailable" => ErrorCode::KeyringUnavailable,
            "key_missing" => ErrorCode::KeyMissing,
            "wrong_key" => ErrorCode::WrongKey,
            "key_error" => ErrorCode::KeyError,
            "corrupt" => ErrorCode::Corrupt,
            "schema_too_new" => ErrorCode::SchemaTooNew,
            "busy" => ErrorCode::Busy,
            "not_found" => ErrorCode::NotFound,
            "ambiguous" => ErrorCode::Ambiguous,
            "invalid" => ErrorCode::Invalid,
            "conflict" => ErrorCode::Conflict,
            "io" => ErrorCode::Io,
            "zatca" => ErrorCode::Invalid,
            "backup_failed" => ErrorCode::BackupFailed,
            "forbidden" => ErrorCode::Forbidden,
            _ => ErrorCode::Internal,
        };
        let problems = match &error {
            StoreError::Invalid(problems) | StoreError::NotIssuable(problems) => problems.clone(),
            _ => Problems::new(),
        };
        ApiError { code, message: error.to_string(), problems }
    }
}

impl From<SyncError> for ApiError {
    fn from(error: SyncError) -> Self {
        use daftar_relay_client::RelayError;
        match error {
            SyncError::Store(e) => e.into(),
            SyncError::NoRelayReached { .. } | SyncError::Relay(RelayError::Unreachable { .. }) => {
                ApiError::new(ErrorCode::Offline, error.to_string())
            }
            SyncError::Relay(RelayError::Refused { .. }) | SyncError::SetUpRefused { .. } => {
                ApiError::new(ErrorCode::Refused, error.to_string())
            }
            SyncError::NoRelay | SyncError::UnknownRelay { .. } => {
                ApiError::new(ErrorCode::NotFound, error.to_string())
            }
            _ => ApiError::new(ErrorCode::Invalid, error.to_string()),
        }
    }
}

impl From<daftar_einvoicing::EInvoicingError> for ApiError {
    fn from(error: daftar_einvoicing::EInvoicingError) -> Self {
        use daftar_einvoicing::EInvoicingError as E;
        match error {
            E::Store(e) => e.into(),
            E::Seller(problems) => {
                let message = format!("the seller profile is not complete enough for ZATCA:\n{problems}");
                ApiError { code: ErrorCode::Invalid, message, problems }
            }
            E::Api(ref api) if api.is_transient() => ApiError::new(ErrorCode::Offline, error.to_string()),
            E::Api(_) | E::ComplianceFailed { .. } => ApiError::new(ErrorCode::Refused, error.to_string()),
            other => ApiError::new(ErrorCode::Invalid, other.to_string()),
        }
    }
}
