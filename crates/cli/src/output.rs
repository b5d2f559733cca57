//! Printing results: JSON views (the contract other tools rely on) and short human text.

use std::io::Write;

use daftar_domain::{Invoice, compute_totals};
use daftar_store::StoreError;
use serde::Serialize;
use serde_json::{Value, json};

/// Prints `value` as one JSON document on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) {
    let text = serde_json::to_string_pretty(value).expect("output serialises");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// Replaces a record's `deleted` tombstone with `deleted: bool`, `deleted_at` and `deleted_by`.
pub fn with_trash_state(mut value: Value) -> Value {
    if let Some(map) = value.as_object_mut() {
        let tombstone = map.remove("deleted").unwrap_or(Value::Null);
        map.insert("deleted".into(), Value::Bool(!tombstone.is_null()));
        map.insert("deleted_at".into(), tombstone.get("at").cloned().unwrap_or(Value::Null));
        map.insert("deleted_by".into(), tombstone.get("by").cloned().unwrap_or(Value::Null));
    }
    value
}

/// The `--json` view of an invoice: the document plus its computed totals.
pub fn invoice_json(invoice: &Invoice) -> Value {
    let mut value = with_trash_state(serde_json::to_value(invoice).expect("invoice serialises"));
    let totals = match compute_totals(invoice) {
        Ok(t) => json!({
            "currency": t.currency,
            "lines_net": t.lines_net,
            "discount": t.discount,
            "net": t.net,
            "vat": t.vat,
            "gross": t.gross,
            "paid": t.paid,
            "due": t.due,
            "vat_sar": t.vat_sar,
            "breakdown": t.breakdown,
            "lines": t.lines,
        }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    value["totals"] = totals;
    // The signed XML is `daftar invoice xml ID`'s; the JSON view keeps the rest of the e-invoice.
    if let Some(einvoice) = value.get_mut("einvoice").and_then(Value::as_object_mut) {
        einvoice.remove("xml");
    }
    value
}

pub fn record_json<T: Serialize>(record: &T) -> Value {
    with_trash_state(serde_json::to_value(record).expect("record serialises"))
}

/// Human-readable invoice.
pub fn print_invoice(invoice: &Invoice) {
    let totals = compute_totals(invoice).ok();
    let number = invoice.number.as_deref().unwrap_or("(draft)");
    println!("{number}  {}  {}  {}", invoice.kind, invoice.status, invoice.id);
    if invoice.deleted.is_some() {
        println!("IN THE TRASH (daftar invoice restore {})", invoice.id);
    }
    if let Some(customer) = &invoice.customer {
        let vat = customer.vat_number.as_deref().map(|v| format!(" (VAT {v})")).unwrap_or_default();
        println!("Customer: {}{vat}", customer.name);
    }
    if let Some(original) = &invoice.original {
        println!("Corrects: {} ({})", original.number, original.reason);
    }
    for (i, line) in invoice.lines.iter().enumerate() {
        let net = totals.as_ref().map(|t| t.lines[i].net.to_string()).unwrap_or_default();
        println!(
            "{:>3}. {}  {} × {}{}  [{} {}%]  {}",
            i + 1,
            line.description,
            line.quantity,
            line.unit_price,
            if line.discount.is_zero() { String::new() } else { format!(" − {}", line.discount) },
            line.vat.code,
            line.vat.rate,
            net
        );
    }
    if let Some(t) = totals {
        println!("Net {}  VAT {}  Total {} {}", t.net, t.vat, t.gross, t.currency);
        if !t.paid.is_zero() {
            println!("Paid {}  Due {}", t.paid, t.due);
        }
    }
    if !invoice.notes.is_empty() {
        println!("Notes: {}", invoice.notes);
    }
}

/// Prints an error on stderr: `error: …` lines, or one JSON object with `--json`.
pub fn error(error: &anyhow::Error, json: bool) {
    if let Some(e) = error.downcast_ref::<daftar_backup::BackupError>() {
        return print_error(e.code(), &format!("{error:#}"), json);
    }
    if let Some(daftar_sync_driver::SyncError::AwaitingApproval { .. }) = error.downcast_ref() {
        return print_error("pending_approval", &format!("{error:#}"), json);
    }
    let code = error
        .downcast_ref::<StoreError>()
        .or_else(|| match error.downcast_ref::<daftar_sync_driver::SyncError>() {
            Some(daftar_sync_driver::SyncError::Store(e)) => Some(e),
            _ => None,
        })
        .map(StoreError::code)
        .unwrap_or_else(|| if error.downcast_ref::<std::io::Error>().is_some() { "io" } else { "invalid" });
    print_error(code, &format!("{error:#}"), json);
}

fn print_error(code: &str, message: &str, json: bool) {
    let mut err = std::io::stderr().lock();
    if json {
        let _ = writeln!(err, "{}", json!({ "error": { "code": code, "message": message } }));
    } else {
        let _ = writeln!(err, "error: {message}");
    }
}
