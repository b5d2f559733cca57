//! Invoices and customers like those an office keeps, shared by the benchmarks.

#![allow(dead_code)]

use chrono::Utc;
use daftar_domain::{Amount, Customer, CustomerId, Invoice, InvoiceId, InvoiceKind, VatCategory};
use daftar_store::{InitOptions, KeyChoice, LineInput};
use uuid::Uuid;

pub const WORDS: &[&str] = &[
    "flour", "sugar", "saffron", "cardamom", "dates", "rice", "tea", "coffee", "oud", "amber", "cable", "pipe",
    "cement", "steel", "paint", "tiles", "lamp", "desk", "chair", "paper",
];

/// The passphrase of the benchmarks' key files (no keyring needed).
pub const PASSPHRASE: &str = "benchmark passphrase";

/// A new workspace of "Bench Co" on device `name`, its key in a passphrase key file.
pub fn init_options(name: &str) -> InitOptions {
    InitOptions {
        seller: daftar_domain::SellerProfile {
            name: "Bench Co".into(),
            vat_number: "300000000000003".into(),
            ..Default::default()
        },
        series: None,
        key: KeyChoice::Passphrase(PASSPHRASE.into()),
        device_name: name.into(),
        member: None,
        existing: None,
    }
}

pub fn customer(n: usize) -> Customer {
    Customer {
        id: CustomerId::from_uuid(Uuid::now_v7()),
        name: format!("Customer {n} {} Trading", WORDS[n % WORDS.len()]),
        vat_number: Some("311111111111113".into()),
        address: Default::default(),
        email: format!("buyer{n}@example.com"),
        phone: String::new(),
        created_at: Utc::now(),
        deleted: None,
    }
}

pub fn line_input(n: usize, i: usize) -> LineInput {
    LineInput {
        description: format!("{} {} grade {i}", WORDS[(n + i) % WORDS.len()], WORDS[(n * 7 + i) % WORDS.len()]),
        quantity: daftar_domain::Quantity::from_raw(((n + i) % 9 + 1) as i64 * 1000 + 250),
        unit_price: Amount::from_raw(((n * 31 + i * 17) % 50_000 + 100) as i64),
        discount: Amount::ZERO,
        vat: VatCategory::standard(),
    }
}

/// A 10-line draft like those the bulk import stores.
pub fn invoice(n: usize, customers: &[Customer]) -> Invoice {
    let mut invoice = Invoice::draft(InvoiceId::from_uuid(Uuid::now_v7()), InvoiceKind::Standard, Utc::now());
    invoice.customer = Some(customers[n % customers.len()].snapshot());
    invoice.notes = format!("order {n} by phone");
    invoice.lines = (0..10).map(|i| line_input(n, i).into_line_with(None)).collect();
    invoice
}
