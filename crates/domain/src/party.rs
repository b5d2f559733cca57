//! The parties to an invoice: the seller (this workspace) and its customers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::CustomerId;
use crate::record::Tombstone;
use crate::validate::Problems;

/// Checks of a Saudi VAT registration number (TIN): 15 digits, first and last digit 3.
#[derive(Debug)]
pub struct VatNumber;

impl VatNumber {
    pub fn is_valid(text: &str) -> bool {
        let bytes = text.as_bytes();
        bytes.len() == 15 && bytes.iter().all(u8::is_ascii_digit) && bytes[0] == b'3' && bytes[14] == b'3'
    }

    /// Adds a problem naming `who` (`customer`, `seller`) when `text` is not a VAT number.
    pub fn check(text: &str, who: &str, field: &str, problems: &mut Problems) {
        if !Self::is_valid(text) {
            problems.push(field, format!("{who} VAT number must be 15 digits starting and ending with 3 (got {text})"));
        }
    }
}

/// A postal address; for Saudi addresses, the "national address" fields ZATCA requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Address {
    #[serde(default)]
    pub street: String,
    #[serde(default)]
    pub building_number: String,
    /// Saudi national address additional number (4 digits), optional.
    #[serde(default)]
    pub additional_number: String,
    #[serde(default)]
    pub district: String,
    #[serde(default)]
    pub city: String,
    #[serde(default)]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code.
    #[serde(default = "default_country")]
    pub country: String,
}

fn default_country() -> String {
    "SA".to_owned()
}

impl Default for Address {
    fn default() -> Self {
        Address {
            street: String::new(),
            building_number: String::new(),
            additional_number: String::new(),
            district: String::new(),
            city: String::new(),
            postal_code: String::new(),
            country: default_country(),
        }
    }
}

impl Address {
    pub fn is_empty(&self) -> bool {
        self.street.is_empty()
            && self.building_number.is_empty()
            && self.district.is_empty()
            && self.city.is_empty()
            && self.postal_code.is_empty()
    }

    /// Checks the fields that are filled in. With `complete`, Saudi addresses must have every
    /// national-address field (ZATCA requires them of the seller, and of B2B buyers in Saudi).
    pub fn check(&self, who: &str, complete: bool, problems: &mut Problems) {
        let country_ok = self.country.len() == 2 && self.country.bytes().all(|b| b.is_ascii_uppercase());
        if !country_ok {
            problems.push(
                "address.country",
                format!("{who} country must be a two-letter code such as SA (got {})", self.country),
            );
        }
        let saudi = self.country == "SA";
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if saudi && !self.building_number.is_empty() && !digits(&self.building_number, 4) {
            problems.push(
                "address.building_number",
                format!("{who} building number must be 4 digits (got {})", self.building_number),
            );
        }
        if saudi && !self.postal_code.is_empty() && !digits(&self.postal_code, 5) {
            problems
                .push("address.postal_code", format!("{who} postal code must be 5 digits (got {})", self.postal_code));
        }
        if saudi && !self.additional_number.is_empty() && !digits(&self.additional_number, 4) {
            problems.push(
                "address.additional_number",
                format!("{who} additional number must be 4 digits (got {})", self.additional_number),
            );
        }
        if complete {
            for (field, value) in [
                ("street", &self.street),
                ("building_number", &self.building_number),
                ("district", &self.district),
                ("city", &self.city),
                ("postal_code", &self.postal_code),
            ] {
                if value.trim().is_empty() {
                    problems
                        .push(format!("address.{field}"), format!("{who} address needs a {}", field.replace('_', " ")));
                }
            }
        }
    }
}

/// The business issuing invoices, stored in the workspace settings document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct SellerProfile {
    /// Legal name in Latin script.
    pub name: String,
    /// Legal name in Arabic; ZATCA's `RegistrationName` and QR tag 1 use it when set.
    #[serde(default)]
    pub name_ar: String,
    pub vat_number: String,
    /// Commercial registration number (10 digits).
    #[serde(default)]
    pub cr_number: String,
    #[serde(default)]
    pub address: Address,
}

impl SellerProfile {
    /// Checks what is filled in; the national address is complete-checked only at issue time
    /// (see [`SellerProfile::validate_for_issue`]) so that a workspace can be set up quickly.
    pub fn validate(&self) -> Problems {
        let mut problems = Problems::new();
        if self.name.trim().is_empty() && self.name_ar.trim().is_empty() {
            problems.push("name", "seller legal name must not be empty");
        }
        VatNumber::check(&self.vat_number, "seller", "vat_number", &mut problems);
        let cr_ok = self.cr_number.is_empty()
            || (self.cr_number.len() == 10 && self.cr_number.bytes().all(|b| b.is_ascii_digit()));
        if !cr_ok {
            problems.push(
                "cr_number",
                format!("seller commercial registration number must be 10 digits (got {})", self.cr_number),
            );
        }
        self.address.check("seller", false, &mut problems);
        problems
    }

    /// Everything an issued tax invoice needs from the seller.
    pub fn validate_for_issue(&self) -> Problems {
        let mut problems = self.validate();
        let mut address = Problems::new();
        self.address.check("seller", true, &mut address);
        // `validate` already reported format problems; keep only the missing-field ones.
        for p in address.iter() {
            if p.message.contains(" needs a ") {
                problems.push(p.field.clone(), p.message.clone());
            }
        }
        problems
    }
}

/// A customer record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Customer {
    pub id: CustomerId,
    pub name: String,
    /// Present for VAT-registered (B2B) customers.
    #[serde(default)]
    pub vat_number: Option<String>,
    #[serde(default)]
    pub address: Address,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub phone: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub deleted: Option<Tombstone>,
}

impl Customer {
    /// A new customer with only a name; the other fields are filled in by the caller.
    pub fn new(id: CustomerId, name: impl Into<String>, created_at: DateTime<Utc>) -> Customer {
        Customer {
            id,
            name: name.into(),
            vat_number: None,
            address: Address::default(),
            email: String::new(),
            phone: String::new(),
            created_at,
            deleted: None,
        }
    }
}

impl Customer {
    pub fn is_business(&self) -> bool {
        self.vat_number.is_some()
    }

    pub fn validate(&self) -> Problems {
        let mut problems = Problems::new();
        if self.name.trim().is_empty() {
            problems.push("name", "customer name must not be empty");
        }
        if let Some(vat) = &self.vat_number {
            VatNumber::check(vat, "customer", "vat_number", &mut problems);
        }
        if !self.email.is_empty() && !looks_like_email(&self.email) {
            problems.push("email", format!("customer email must look like name@example.com (got {})", self.email));
        }
        if !self.phone.is_empty() && !self.phone.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c)) {
            problems.push(
                "phone",
                format!("customer phone may contain only digits, spaces and + - ( ) (got {})", self.phone),
            );
        }
        self.address.check("customer", false, &mut problems);
        problems
    }

    /// The copy of this customer an invoice keeps, so later edits to the customer do not
    /// rewrite issued invoices.
    pub fn snapshot(&self) -> CustomerSnapshot {
        CustomerSnapshot {
            id: Some(self.id),
            name: self.name.clone(),
            vat_number: self.vat_number.clone(),
            address: self.address.clone(),
            email: self.email.clone(),
            phone: self.phone.clone(),
        }
    }
}

fn looks_like_email(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !text.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// The customer as it was when the invoice was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct CustomerSnapshot {
    #[serde(default)]
    pub id: Option<CustomerId>,
    pub name: String,
    #[serde(default)]
    pub vat_number: Option<String>,
    #[serde(default)]
    pub address: Address,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub phone: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vat_number_message_matches_the_specification() {
        let mut problems = Problems::new();
        VatNumber::check("31234", "customer", "vat_number", &mut problems);
        assert_eq!(
            problems.to_string(),
            "customer VAT number must be 15 digits starting and ending with 3 (got 31234)"
        );
        assert!(VatNumber::is_valid("300000000000003"));
        assert!(!VatNumber::is_valid("310000000000002"));
        assert!(!VatNumber::is_valid("30000000000000a"));
    }
}
