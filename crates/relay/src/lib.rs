//! `daftar-relay`: a minimal server that stores and forwards sealed envelopes.
//!
//! A workspace on the relay is an append-only log of envelopes, each given a sequence number
//! when accepted, plus the devices enrolled in it and their public keys. The relay authenticates
//! every request by the device's Ed25519 signature and authorises it for that workspace only; it
//! sees workspace ids, device ids, envelope sizes and times, never a key, a document id or any
//! invoice content (envelopes are sealed by the devices, `daftar_sync::envelope`).
//!
//! Storage sits behind [`storage::RelayStorage`]; [`storage::SqliteStorage`] is the embedded
//! default.

pub mod config;
mod routes;
pub mod storage;

pub use routes::{ApiError, Limits, router};
