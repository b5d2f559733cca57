//! Daftar's local store: every invoice, customer and item as an Automerge document, with its
//! whole change history, in one SQLCipher database; plus index tables for fast lists and search.
//!
//! # Invariants
//! - **Encrypted at rest as a whole.** SQLCipher encrypts every page of the database and its
//!   WAL; temporary tables stay in memory. The key is 256 random bits from the OS keyring or a
//!   passphrase key file ([`daftar_keys`]).
//! - **Documents are the truth; tables are views.** `changes` and `snapshots` hold the Automerge
//!   documents. `invoice_index`, `invoice_search`, `customer_index` and `item_index` are derived
//!   from them and [`Store::rebuild_index`] recreates them; [`Store::verify`] checks them.
//! - **A write is one transaction.** Loading the latest document, applying the edit, storing the
//!   new change rows, allocating an invoice number and updating the index happen inside one
//!   `BEGIN IMMEDIATE … COMMIT` with `synchronous = FULL`: acknowledged writes survive `kill -9`
//!   and power loss, and a refused edit leaves nothing behind.
//! - **Nothing is lost by deleting.** Deletion is a tombstone field; restore clears it; every
//!   version stays in history and can be shown, diffed and restored as a new change. Only a
//!   deleted draft can be purged, explicitly, and the purge is recorded.
//! - **Compaction loses nothing.** A document's change rows are replaced by one snapshot (the
//!   full history, saved by Automerge) in a single transaction.

mod audit;
mod backup;
mod bootstrap;
mod conflicts;
mod customers;
mod database;
mod document;
mod einvoice;
mod error;
mod events;
mod exchange;
mod history;
mod inflation;
mod invoices;
mod maintenance;
mod membership;
mod quarantine;
mod records;
mod schema;
mod search;
mod store;

use chrono::{DateTime, Utc};

pub use audit::{AuditCheck, AuditEntry, AuditQuery, BadEntry, audit_csv};
pub use backup::{
    BackupCounts, BackupRecord, BackupSettings, ConsistentRead, DrillRecord, HeadsDigest, Manifest, Retention,
    RevertFilter, RevertOutcome,
};
pub use bootstrap::{PreparedSnapshot, PreparedSummary, ProofCheck, ProofClaim, ProvenSealer, Taken, prepare_snapshot};
pub use conflicts::{Conflict, ConflictKind};
pub use customers::{CustomerSummary, ItemSummary, TrashEntry};
pub use database::{KEY_FILE, KeyLocation};
pub use einvoice::{CsidRecord, Due, EgsStage, Submission, SubmissionResult, ZatcaStatus, seller_rules};
pub use error::{Result, StoreError};
pub use events::{DeviceEvent, DeviceEvents, events_id};
pub use exchange::{IncomingChange, OutgoingChange, RefusedEnvelope, RelayStatus};
pub use history::FieldChange;
pub use inflation::{InflationError, MAX_COLUMN_ROWS, MAX_INFLATED_BYTES, MAX_PART_INFLATED_BYTES, inflated_size};
pub use invoices::{
    DiscountInput, DraftContent, InvoiceEdit, InvoiceQuery, InvoiceSort, InvoiceSummary, LineInput, NewInvoice,
};
pub use maintenance::{CompactReport, ExportReport, VerifyReport};
pub use membership::{MemberDevice, MemberStatus, Membership, membership_id, recovery_statement};
pub use quarantine::QuarantinedChange;
pub use records::{DeviceEntry, DocKind, Record, SearchWrite, WorkspaceSettings};
pub use schema::SCHEMA_VERSION;
pub use store::{
    BeforeMigration, ExistingWorkspace, InitOptions, KeyChoice, PendingJoin, Store, Unlock, Version, WorkspaceInfo,
};

/// Where the store gets the time. Passed in so tests can fix it.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock, truncated to milliseconds (the precision history keeps).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
    }
}
