use std::path::PathBuf;

use daftar_domain::invoice::{InvoiceStateError, IssueError};
use daftar_domain::{DocumentId, Problems};
use daftar_keys::KeyError;

/// Something the store could not do, said so that the person reading it knows what to do next.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "there is no Daftar workspace in {dir}; create one with `daftar init` (or point --data-dir / DAFTAR_DATA_DIR at an existing one)"
    )]
    NotInitialised { dir: PathBuf },
    #[error("{dir} already holds a Daftar workspace; use another --data-dir to create a second one")]
    AlreadyInitialised { dir: PathBuf },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the data directory {dir} is protected by a passphrase; set DAFTAR_PASSPHRASE or enter it when asked")]
    PassphraseNeeded { dir: PathBuf },
    #[error(
        "the database key does not match the database in {dir}; it belongs to another data directory. Check --data-dir, or restore this directory from a backup"
    )]
    WrongKey { dir: PathBuf },
    #[error(
        "the database {path} is damaged ({detail}); nothing was changed. Restore it from a backup or recover the workspace from the relay"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error("the data directory file {path} is damaged or unreadable: {detail}")]
    BadProfile { path: PathBuf, detail: String },
    #[error(
        "the database in {dir} was written by a newer Daftar (schema {found}, this build knows up to {supported}); upgrade Daftar"
    )]
    SchemaTooNew { dir: PathBuf, found: i64, supported: i64 },
    #[error(transparent)]
    Forbidden(#[from] daftar_domain::Forbidden),
    #[error(
        "{dir} needs its schema updated (version {from} to {to}), but the backup made first failed ({detail}); nothing was changed. Make room or reconnect the backup folder, then open it again"
    )]
    MigrationBackupFailed { dir: PathBuf, from: i64, to: i64, detail: String },
    #[error(
        "another Daftar process is writing to {dir} and has not finished within {seconds} s; wait for it or close it, then try again"
    )]
    Busy { dir: PathBuf, seconds: u64 },
    #[error("no {kind} with id {id}")]
    NotFound { kind: &'static str, id: String },
    #[error("no {kind} matches {prefix:?} uniquely; {count} do, give more characters of the id")]
    Ambiguous { kind: &'static str, prefix: String, count: usize },
    #[error("{0}")]
    Invalid(Problems),
    /// A membership change that no role may make (a revoked device back, a second key).
    #[error("device {device}: {reason}")]
    Membership { device: String, reason: String },
    #[error("the invoice cannot be issued yet:\n{0}")]
    NotIssuable(Problems),
    #[error("ZATCA e-invoicing failed: {0}")]
    Zatca(String),
    #[error(transparent)]
    State(#[from] InvoiceStateError),
    #[error("{kind} {id} is in the trash; restore it first (daftar {kind} restore {id})")]
    InTrash { kind: &'static str, id: String },
    #[error("{kind} {id} is not in the trash")]
    NotDeleted { kind: &'static str, id: String },
    #[error("{kind} {id} is already in the trash")]
    AlreadyDeleted { kind: &'static str, id: String },
    #[error("issued invoice {number} can never be deleted or purged; cancel it with a credit note")]
    IssuedIsPermanent { number: String },
    #[error("only drafts in the trash can be purged; delete invoice {id} first (daftar invoice delete {id})")]
    PurgeNeedsTrash { id: String },
    #[error("{kind} {id} has {count} versions; version {version} does not exist")]
    NoSuchVersion { kind: &'static str, id: String, version: usize, count: usize },
    #[error("document {id} could not be read: {detail}")]
    Document { id: DocumentId, detail: String },
    #[error("a change of document {id} cannot be shown to come from the device named for it: {detail}")]
    UnprovenChange { id: DocumentId, detail: String },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<Problems> for StoreError {
    fn from(problems: Problems) -> Self {
        StoreError::Invalid(problems)
    }
}

impl From<IssueError> for StoreError {
    fn from(err: IssueError) -> Self {
        match err {
            IssueError::State(state) => StoreError::State(state),
            IssueError::Invalid(problems) => StoreError::NotIssuable(problems),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// A stable, closed code for programs (the CLI's `--json` errors, the app's IPC errors).
    pub fn code(&self) -> &'static str {
        use daftar_keys::KeyError as K;
        match self {
            StoreError::NotInitialised { .. } => "not_initialised",
            StoreError::AlreadyInitialised { .. } => "already_initialised",
            StoreError::Key(K::KeyringUnavailable { .. }) => "keyring_unavailable",
            StoreError::Key(K::KeyMissing { .. }) => "key_missing",
            StoreError::Key(K::WrongPassphrase { .. }) | StoreError::WrongKey { .. } => "wrong_key",
            StoreError::Key(_) | StoreError::PassphraseNeeded { .. } => "key_error",
            StoreError::Corrupt { .. } | StoreError::BadProfile { .. } | StoreError::Document { .. } => "corrupt",
            StoreError::UnprovenChange { .. } => "unproven",
            StoreError::SchemaTooNew { .. } => "schema_too_new",
            StoreError::MigrationBackupFailed { .. } => "backup_failed",
            StoreError::Forbidden(_) => "forbidden",
            StoreError::Busy { .. } => "busy",
            StoreError::NotFound { .. } | StoreError::NoSuchVersion { .. } => "not_found",
            StoreError::Ambiguous { .. } => "ambiguous",
            StoreError::Invalid(_) | StoreError::NotIssuable(_) => "invalid",
            StoreError::State(_)
            | StoreError::NotDeleted { .. }
            | StoreError::InTrash { .. }
            | StoreError::AlreadyDeleted { .. }
            | StoreError::IssuedIsPermanent { .. }
            | StoreError::PurgeNeedsTrash { .. }
            | StoreError::Membership { .. } => "conflict",
            StoreError::Sqlite(_) | StoreError::Io { .. } => "io",
            StoreError::Zatca(_) => "zatca",
        }
    }
}
