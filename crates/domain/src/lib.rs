//! Daftar's domain: what an invoice *is*, independent of how it is stored, synced or shown.
//!
//! This crate does no I/O, reads no clock and draws no random numbers: callers pass identifiers
//! and timestamps in, so every rule here is deterministic and testable.
//!
//! # Concepts
//! - [`money::Amount`] is an integer count of minor units (halalas for SAR). There is no floating
//!   point anywhere in this crate; decimal text is parsed exactly and rejected when it has more
//!   precision than the type holds.
//! - [`tax::compute_totals`] is *the* function that turns lines into totals. Everything that shows
//!   or stores a total calls it; nothing re-implements rounding. Its one rounding rule is
//!   [`money::round_half_away`].
//! - [`invoice::Invoice`] is a document: drafts are freely editable, [`invoice::Invoice::issue`]
//!   freezes the content and assigns a number from the issuing device's own
//!   [`series::Series`], and later edits are refused ([`invoice::Invoice::ensure_editable`]).
//! - Deletion is data: a [`record::Tombstone`] that restore clears.
//! - Validation returns every problem at once as [`validate::Problems`], each with a message that
//!   names the field and the offending value.
//!
//! All types serialise with serde to the shape stored in the Automerge documents and printed by
//! `daftar --json`; amounts serialise as exact decimal strings (`"115.00"`), never as numbers.

pub mod id;
pub mod invoice;
pub mod item;
pub mod money;
pub mod party;
pub mod record;
pub mod role;
pub mod series;
pub mod tax;
pub mod validate;

pub use id::{CustomerId, DeviceId, DocumentId, IdParseError, InvoiceId, ItemId, LineId, PaymentId, WorkspaceId};
pub use invoice::{EInvoice, Invoice, InvoiceKind, InvoiceStatus, Line, Payment};
pub use item::Item;
pub use money::{Amount, Currency, ExchangeRate, Money, Quantity, Rate};
pub use party::{Address, Customer, CustomerSnapshot, SellerProfile, VatNumber};
pub use record::Tombstone;
pub use role::{Action, Forbidden, Role};
pub use series::Series;
pub use tax::{Totals, VatCategory, VatCode, compute_totals};
pub use validate::{Problem, Problems};
