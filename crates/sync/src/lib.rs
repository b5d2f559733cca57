//! End-to-end encryption for Daftar's sync: what leaves a device, and how a lost workspace is
//! unlocked again. No I/O: callers pass keys and bytes in, and get bytes or typed errors out.
//!
//! - [`envelope`]: one Automerge change of one document, sealed for the relay. The relay sees the
//!   sender's device id, the key epoch and the size; never the document id or the change. Every
//!   envelope is signed with the sender's Ed25519 device key, so the relay cannot forge one, and
//!   its associated data binds the workspace, sender and epoch, so it cannot be replayed into
//!   another workspace or attributed to another device.
//! - [`recovery`]: the human-typable recovery key printed once at `daftar init`, with a checksum
//!   that catches typos, and the keys derived from it.
//!
//! - [`relay_auth`]: how a device signs its requests to the relay, and how the relay checks them.
//!
//! - [`engine`]: the sync decisions as a state machine without I/O (what to push and pull, when
//!   to retry, when to subscribe), driven by `daftar-sync-driver`.
//!
//! - [`snapshot`]: every document of a workspace in sealed parts, for fast bootstrap.
//!
//! - [`epoch`]: new workspace keys after a revocation, wrapped for each remaining device.
//!
//! The relay (`daftar-relay`) is built on these.

pub mod engine;
pub mod envelope;
pub mod epoch;
pub mod invite;
pub mod mfa;
pub mod recovery;
pub mod relay_auth;
pub mod snapshot;

pub use envelope::{DeviceSigningKey, Envelope, EnvelopeError, OpenedEnvelope, PROOF_LEN, SealProof, Sealer};
pub use epoch::{AgreementKey, EpochError};
pub use invite::{InviteCode, InviteError};
pub use recovery::{RecoveryKey, RecoveryKeyError};
