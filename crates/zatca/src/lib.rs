//! ZATCA phase 2 ("integration") e-invoicing. Pure but for [`api`], the Fatoora API client.
//!
//! - [`hash`]: the invoice hash (extensions, signature and QR reference removed; C14N 1.1;
//!   SHA-256; base64), reproducing the hash of all 19 of ZATCA's SDK samples.
//! - [`ubl`]: the UBL 2.1 XML of an issued invoice, stamped ([`ubl::stamp`]).
//! - [`stamp`]: the ECDSA (secp256k1) stamp and its XAdES block.
//! - [`qr`]: the QR payload's TLV fields.
//! - [`cert`]: certificates: reading them, the self-signed one used before onboarding, the CSR.
//! - [`verify`]: checking any e-invoice (hash, digests, QR against the document, signature).
//! - [`api`]: the Fatoora API (compliance and production CSIDs, compliance checks, reporting,
//!   clearance).
//!
//! Why not `fatoora-core`: see ARCHITECTURE.md ("ZATCA").

pub mod api;
pub mod cert;
pub mod hash;
pub mod qr;
pub mod stamp;
pub mod ubl;
pub mod verify;
pub mod xml;

pub use hash::{HashError, canonical_for_hash, invoice_hash};

/// The previous-invoice hash of a device's first invoice: base64 of the hex SHA-256 of "0".
pub const FIRST_PIH: &str = "NWZlY2ViNjZmZmM4NmYzOGQ5NTI3ODZjNmQ2OTZjNzljMmRiYzIzOWRkNGU5MWI0NjcyOWQ3M2EyN2ZiNTdlOQ==";
