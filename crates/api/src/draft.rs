//! Reading what the UI typed into domain values, with a problem per field that cannot be read
//! (`lines[2].unit_price: …`), so the editor can show each message beside its input.

use std::str::FromStr;

use chrono::NaiveDate;
use daftar_domain::{
    Amount, Currency, ExchangeRate, Invoice, InvoiceId, InvoiceKind, Problems, Quantity, compute_totals,
};
use daftar_store::{DraftContent, InvoiceQuery, LineInput, NewInvoice, Store};

use crate::{ApiError, DraftInput, DraftPreview, InvoiceListQuery, InvoiceView};

pub(crate) fn amount(text: &str, field: &str, problems: &mut Problems) -> Amount {
    let text = text.trim();
    if text.is_empty() {
        return Amount::ZERO;
    }
    Amount::from_str(text).unwrap_or_else(|e| {
        problems.push(field, e.to_string());
        Amount::ZERO
    })
}

fn quantity(text: &str, field: &str, problems: &mut Problems) -> Quantity {
    Quantity::from_str(text.trim()).unwrap_or_else(|e| {
        problems.push(field, e.to_string());
        Quantity::ZERO
    })
}

fn date(text: Option<&str>, field: &str, problems: &mut Problems) -> Option<NaiveDate> {
    let text = text.map(str::trim).filter(|t| !t.is_empty())?;
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| problems.push(field, format!("{text:?} is not a date (YYYY-MM-DD)")))
        .ok()
}

/// The parts of a draft every use shares, or the problems of reading them.
struct Read {
    lines: Vec<(Option<daftar_domain::LineId>, LineInput)>,
    currency: Option<Currency>,
    exchange_rate: Option<ExchangeRate>,
    supply_date: Option<NaiveDate>,
    due_date: Option<NaiveDate>,
}

fn read(draft: &DraftInput, problems: &mut Problems) -> Read {
    let lines = draft
        .lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let field = |name: &str| format!("lines[{}].{name}", i + 1);
            (
                line.id,
                LineInput {
                    description: line.description.trim().to_owned(),
                    quantity: quantity(&line.quantity, &field("quantity"), problems),
                    unit_price: amount(&line.unit_price, &field("unit_price"), problems),
                    discount: amount(&line.discount, &field("discount"), problems),
                    vat: line.vat.clone(),
                },
            )
        })
        .collect();
    let currency = Some(draft.currency.trim())
        .filter(|c| !c.is_empty())
        .and_then(|c| Currency::from_str(c).map_err(|e| problems.push("currency", e.to_string())).ok());
    let exchange_rate = draft
        .exchange_rate
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .and_then(|r| ExchangeRate::from_str(r).map_err(|e| problems.push("exchange_rate", e.to_string())).ok());
    Read {
        lines,
        currency,
        exchange_rate,
        supply_date: date(draft.supply_date.as_deref(), "supply_date", problems),
        due_date: date(draft.due_date.as_deref(), "due_date", problems),
    }
}

pub(crate) fn new_invoice(draft: &DraftInput) -> Result<NewInvoice, ApiError> {
    let mut problems = Problems::new();
    let read = read(draft, &mut problems);
    problems.into_result().map_err(ApiError::invalid)?;
    Ok(NewInvoice {
        kind: draft.kind,
        customer: draft.customer,
        lines: read.lines.into_iter().map(|(_, l)| l).collect(),
        currency: read.currency,
        exchange_rate: read.exchange_rate,
        supply_date: read.supply_date,
        due_date: read.due_date,
        notes: draft.notes.clone(),
        discount: None,
        original: draft.original.as_ref().map(|o| (o.invoice, o.reason.trim().to_owned())),
    })
}

pub(crate) fn content(draft: &DraftInput) -> Result<DraftContent, ApiError> {
    let mut problems = Problems::new();
    let read = read(draft, &mut problems);
    problems.into_result().map_err(ApiError::invalid)?;
    Ok(DraftContent {
        kind: draft.kind,
        customer: draft.customer,
        lines: read.lines,
        currency: read.currency,
        exchange_rate: read.exchange_rate,
        supply_date: read.supply_date,
        due_date: read.due_date,
        notes: draft.notes.clone(),
        discount: None,
    })
}

/// Totals of a draft as typed: unreadable input is reported per field and counted as zero.
pub(crate) fn preview(store: &Store, draft: &DraftInput) -> DraftPreview {
    let mut problems = Problems::new();
    let read = read(draft, &mut problems);
    let mut invoice = Invoice::draft(
        InvoiceId::from_uuid(uuid::Uuid::nil()),
        draft.kind.unwrap_or(InvoiceKind::Standard),
        chrono::Utc::now(),
    );
    invoice.customer = draft.customer.and_then(|id| store.customer(id).ok()).map(|c| c.snapshot());
    invoice.lines = read.lines.into_iter().map(|(id, l)| l.into_line_with(id)).collect();
    invoice.currency = read.currency.unwrap_or_default();
    invoice.exchange_rate = read.exchange_rate;
    let totals = compute_totals(&invoice).ok();
    if totals.is_none() {
        problems.push("lines", "the amounts are too large to add up");
    }
    DraftPreview { totals, problems }
}

pub(crate) fn view(invoice: Invoice) -> InvoiceView {
    let totals = compute_totals(&invoice).ok();
    let issue_problems = if invoice.is_issued() { Problems::new() } else { invoice.validate_for_issue() };
    InvoiceView { invoice, totals, issue_problems }
}

pub(crate) fn invoice_query(query: &InvoiceListQuery) -> Result<InvoiceQuery, ApiError> {
    let mut problems = Problems::new();
    let from = date(query.from.as_deref(), "from", &mut problems);
    let to = date(query.to.as_deref(), "to", &mut problems);
    problems.into_result().map_err(ApiError::invalid)?;
    Ok(InvoiceQuery {
        text: query.text.clone().filter(|t| !t.trim().is_empty()),
        status: query.status,
        deleted: query.deleted,
        customer: query.customer,
        from,
        to,
        limit: Some(query.limit.clamp(1, 500) as usize),
        offset: query.offset as usize,
        sort: query.sort,
        ascending: query.ascending,
    })
}
