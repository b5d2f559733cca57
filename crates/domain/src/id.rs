//! One newtype per identifier, so an invoice id can never be passed where a customer id belongs.
//!
//! Identifiers are UUIDv7 (time-ordered, so new records sort last and index pages stay warm).
//! The domain never generates them itself: callers pass a fresh [`uuid::Uuid`] in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The text given was not an identifier of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} id must be a UUID such as 0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b (got {got:?})")]
pub struct IdParseError {
    pub kind: &'static str,
    pub got: String,
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
        #[serde(transparent)]
        pub struct $name(#[cfg_attr(feature = "ts", ts(type = "string"))] Uuid);

        impl $name {
            /// Human name of this kind of identifier, used in error messages.
            pub const KIND: &'static str = $kind;

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::try_parse(s.trim())
                    .map(Self)
                    .map_err(|_| IdParseError { kind: $kind, got: s.to_owned() })
            }
        }

        impl From<$name> for DocumentId {
            fn from(id: $name) -> DocumentId {
                DocumentId(id.0)
            }
        }
    };
}

/// Any stored document, whatever its kind. The store keys documents by this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(transparent)]
pub struct DocumentId(#[cfg_attr(feature = "ts", ts(type = "string"))] Uuid);

impl DocumentId {
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for DocumentId {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(s.trim()).map(Self).map_err(|_| IdParseError { kind: "document", got: s.to_owned() })
    }
}

identifier!(
    /// An invoice, credit note or debit note.
    InvoiceId, "invoice"
);
identifier!(
    /// A customer record.
    CustomerId, "customer"
);
identifier!(
    /// A catalogue item.
    ItemId, "item"
);
identifier!(
    /// One line of one invoice; stable across edits so concurrent edits merge per line.
    LineId, "line"
);
identifier!(
    /// One installation of Daftar (one data directory on one machine).
    DeviceId, "device"
);
identifier!(
    /// A set of devices sharing one set of invoices.
    WorkspaceId, "workspace"
);
identifier!(
    /// One recorded payment against an invoice.
    PaymentId, "payment"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_names_the_kind_and_the_input() {
        let err = "nope".parse::<InvoiceId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invoice id must be a UUID such as 0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b (got \"nope\")"
        );
    }

    #[test]
    fn display_round_trips() {
        let id = InvoiceId::from_uuid(Uuid::from_u128(0x0193_a1b2_7c3d_7e4f_8a9b_0c1d_2e3f_4a5b));
        assert_eq!(id.to_string().parse::<InvoiceId>().unwrap(), id);
    }
}
