//! Invoice operations: create, edit, issue (with gapless numbering), pay, trash, purge, list.

use chrono::NaiveDate;
use daftar_domain::invoice::{BillingReference, DocumentDiscount, PaymentMethod};
use daftar_domain::{
    Amount, Currency, Customer, CustomerId, DocumentId, ExchangeRate, Invoice, InvoiceId, InvoiceKind, InvoiceStatus,
    Line, LineId, Payment, PaymentId, Quantity, VatCategory,
};
use rusqlite::{Connection, params};
use serde::Serialize;
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::records::{DocKind, Record, SearchWrite};
use crate::store::{DocCache, Store, insert_record, load_record};
use daftar_domain::Action;

/// A line as a person enters it; the store gives it its id.
#[derive(Debug, Clone)]
pub struct LineInput {
    pub description: String,
    pub quantity: Quantity,
    pub unit_price: Amount,
    pub discount: Amount,
    pub vat: VatCategory,
}

impl LineInput {
    /// The line, keeping `id` when it is already on a draft (a new id otherwise).
    pub fn into_line_with(self, id: Option<LineId>) -> Line {
        match id {
            Some(id) => Line { id, ..self.into_line() },
            None => self.into_line(),
        }
    }

    fn into_line(self) -> Line {
        Line {
            id: LineId::from_uuid(Uuid::now_v7()),
            description: self.description,
            quantity: self.quantity,
            unit_price: self.unit_price,
            discount: self.discount,
            vat: self.vat,
        }
    }
}

/// A document discount as entered; with no category, the category of the invoice's lines
/// (which must then all share one).
#[derive(Debug, Clone)]
pub struct DiscountInput {
    pub amount: Amount,
    pub vat: Option<VatCategory>,
    pub reason: String,
}

/// Everything needed to create a draft.
#[derive(Debug, Clone, Default)]
pub struct NewInvoice {
    /// Defaults to standard for customers with a VAT number, simplified otherwise.
    pub kind: Option<InvoiceKind>,
    pub customer: Option<CustomerId>,
    pub lines: Vec<LineInput>,
    pub currency: Option<Currency>,
    pub exchange_rate: Option<ExchangeRate>,
    pub supply_date: Option<NaiveDate>,
    pub due_date: Option<NaiveDate>,
    pub notes: String,
    pub discount: Option<DiscountInput>,
    /// For credit and debit notes: the original invoice and the reason.
    pub original: Option<(InvoiceId, String)>,
}

/// A draft's whole content as an editor holds it: saved in one change that writes only what
/// differs, so concurrent edits of other fields or other lines still merge.
#[derive(Debug, Clone, Default)]
pub struct DraftContent {
    pub kind: Option<InvoiceKind>,
    pub customer: Option<CustomerId>,
    /// Each line with its id when it is already on the draft (kept, so edits merge by line).
    pub lines: Vec<(Option<LineId>, LineInput)>,
    pub currency: Option<Currency>,
    pub exchange_rate: Option<ExchangeRate>,
    pub supply_date: Option<NaiveDate>,
    pub due_date: Option<NaiveDate>,
    pub notes: String,
    pub discount: Option<DiscountInput>,
}

/// One change to a draft.
#[derive(Debug, Clone)]
pub enum InvoiceEdit {
    Kind(InvoiceKind),
    Customer(CustomerId),
    Notes(String),
    SupplyDate(Option<NaiveDate>),
    DueDate(Option<NaiveDate>),
    Currency(Currency),
    ExchangeRate(Option<ExchangeRate>),
    Discount(Option<DiscountInput>),
    AddLine(LineInput),
    /// Replaces line `n` (1-based), keeping its identity.
    SetLine(usize, LineInput),
    /// Removes line `n` (1-based).
    RemoveLine(usize),
}

/// The column an invoice list is sorted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum InvoiceSort {
    /// Creation order (the id's time): the index's own order, the fastest.
    #[default]
    Created,
    /// Invoice number; drafts (no number) come last.
    Number,
    Customer,
    /// Issue date, or creation date for drafts.
    Date,
    Total,
    Due,
}

/// Filters for [`Store::list_invoices`].
#[derive(Debug, Clone, Default)]
pub struct InvoiceQuery {
    /// The column to sort by, newest / largest / last first unless `ascending`.
    pub sort: InvoiceSort,
    pub ascending: bool,
    /// Words that must all appear (as word prefixes) in the number, customer, lines or notes.
    pub text: Option<String>,
    pub status: Option<InvoiceStatus>,
    /// List the trash instead of live invoices.
    pub deleted: bool,
    pub customer: Option<CustomerId>,
    /// Issue (or, for drafts, creation) date from / to, inclusive.
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub limit: Option<usize>,
    pub offset: usize,
}

/// One row of an invoice list, read from the index without loading documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct InvoiceSummary {
    pub id: String,
    pub number: Option<String>,
    pub kind: String,
    pub status: String,
    pub customer_id: Option<String>,
    pub customer: String,
    pub issued_at: Option<String>,
    pub due_date: Option<String>,
    pub created_at: String,
    pub currency: String,
    pub net: Amount,
    pub vat: Amount,
    pub gross: Amount,
    pub due: Amount,
    pub deleted: bool,
}

fn resolve_discount(input: DiscountInput, lines: &[Line]) -> Result<DocumentDiscount> {
    let vat = match input.vat {
        Some(vat) => vat,
        None => {
            let mut categories = lines.iter().map(|l| &l.vat);
            match (categories.next(), categories.all(|c| Some(c) == lines.first().map(|l| &l.vat))) {
                (Some(first), true) => first.clone(),
                (None, _) => VatCategory::standard(),
                _ => {
                    let mut problems = daftar_domain::Problems::new();
                    problems.push(
                        "discount.vat",
                        "the lines have several VAT categories; say which one the document discount belongs to",
                    );
                    return Err(problems.into());
                }
            }
        }
    };
    Ok(DocumentDiscount { amount: input.amount, vat, reason: input.reason })
}

fn line_index(invoice: &Invoice, n: usize) -> Result<usize> {
    if n == 0 || n > invoice.lines.len() {
        let mut problems = daftar_domain::Problems::new();
        problems.push("lines", format!("invoice has {} lines; there is no line {n}", invoice.lines.len()));
        return Err(problems.into());
    }
    Ok(n - 1)
}

fn live_customer(conn: &Connection, cache: &DocCache, id: CustomerId) -> Result<Customer> {
    let (doc, customer) = load_record::<Customer>(conn, cache, id.into())?;
    cache.put(id.into(), doc);
    if customer.deleted.is_some() {
        let mut problems = daftar_domain::Problems::new();
        problems.push(
            "customer",
            format!("customer {id} is in the trash; restore it first (daftar customer restore {id})"),
        );
        return Err(problems.into());
    }
    Ok(customer)
}

impl Store {
    /// Creates a draft invoice.
    pub fn create_invoice(&mut self, new: NewInvoice) -> Result<Invoice> {
        self.permit(if new.original.is_some() { Action::MakeNotes } else { Action::EditDrafts })?;
        let now = self.clock.now();
        self.write(|tx, ctx, cache| {
            let customer = new.customer.map(|id| live_customer(tx, cache, id)).transpose()?;
            let kind = new.kind.unwrap_or(match &customer {
                Some(c) if c.is_business() => InvoiceKind::Standard,
                _ => InvoiceKind::Simplified,
            });
            let mut invoice = Invoice::draft(InvoiceId::from_uuid(Uuid::now_v7()), kind, now);
            invoice.customer = customer.map(|c| c.snapshot());
            invoice.lines = new.lines.into_iter().map(LineInput::into_line).collect();
            invoice.currency = new.currency.unwrap_or_default();
            invoice.exchange_rate = new.exchange_rate;
            invoice.supply_date = new.supply_date;
            invoice.due_date = new.due_date;
            invoice.notes = new.notes;
            invoice.discount = new.discount.map(|d| resolve_discount(d, &invoice.lines)).transpose()?;
            if let Some((original_id, reason)) = new.original {
                let (_, original) = load_record::<Invoice>(tx, cache, original_id.into())?;
                let number = original.number.clone().filter(|_| original.is_issued()).ok_or_else(|| {
                    let mut problems = daftar_domain::Problems::new();
                    problems.push(
                        "original",
                        format!("invoice {original_id} is a draft; only issued invoices can be corrected with a note"),
                    );
                    StoreError::Invalid(problems)
                })?;
                invoice.original = Some(BillingReference { invoice_id: original_id, number, reason });
                if invoice.customer.is_none() {
                    invoice.customer = original.customer.clone();
                }
                invoice.currency = original.currency;
                invoice.exchange_rate = original.exchange_rate;
            }
            Record::validate(&invoice).into_result()?;
            insert_record(tx, &invoice, "create", ctx)?;
            Ok(invoice)
        })
    }

    /// The current state of an invoice.
    pub fn invoice(&self, id: InvoiceId) -> Result<Invoice> {
        self.get(id.into())
    }

    /// Applies edits to a draft, all or nothing.
    pub fn edit_invoice(&mut self, id: InvoiceId, edits: Vec<InvoiceEdit>) -> Result<Invoice> {
        self.permit(Action::EditDrafts)?;
        self.update(
            id.into(),
            |invoice: &mut Invoice, tx, _| {
                invoice.ensure_editable()?;
                for edit in edits {
                    match edit {
                        InvoiceEdit::Kind(kind) => invoice.kind = kind,
                        InvoiceEdit::Customer(customer) => {
                            invoice.customer = Some(live_customer(tx, &DocCache::default(), customer)?.snapshot())
                        }
                        InvoiceEdit::Notes(notes) => invoice.notes = notes,
                        InvoiceEdit::SupplyDate(date) => invoice.supply_date = date,
                        InvoiceEdit::DueDate(date) => invoice.due_date = date,
                        InvoiceEdit::Currency(currency) => invoice.currency = currency,
                        InvoiceEdit::ExchangeRate(rate) => invoice.exchange_rate = rate,
                        InvoiceEdit::Discount(discount) => {
                            invoice.discount = discount.map(|d| resolve_discount(d, &invoice.lines)).transpose()?;
                        }
                        InvoiceEdit::AddLine(line) => invoice.lines.push(line.into_line()),
                        InvoiceEdit::SetLine(n, input) => {
                            let index = line_index(invoice, n)?;
                            let id = invoice.lines[index].id;
                            invoice.lines[index] = Line { id, ..input.into_line() };
                        }
                        InvoiceEdit::RemoveLine(n) => {
                            let index = line_index(invoice, n)?;
                            invoice.lines.remove(index);
                        }
                    }
                }
                Ok(())
            },
            |_| "edit".to_owned(),
        )
        .map(|(invoice, ())| invoice)
    }

    /// Replaces a draft's content with what an editor holds.
    pub fn save_draft(&mut self, id: InvoiceId, content: DraftContent) -> Result<Invoice> {
        self.permit(Action::EditDrafts)?;
        self.update(
            id.into(),
            |invoice: &mut Invoice, tx, _| {
                invoice.ensure_editable()?;
                if invoice.deleted.is_some() {
                    return Err(StoreError::InTrash { kind: "invoice", id: id.to_string() });
                }
                if let Some(kind) = content.kind {
                    invoice.kind = kind;
                }
                let current = invoice.customer.as_ref().and_then(|c| c.id);
                invoice.customer = match content.customer {
                    None => None,
                    // The snapshot taken when the customer was picked stays as it was.
                    Some(customer) if Some(customer) == current => invoice.customer.take(),
                    Some(customer) => Some(live_customer(tx, &DocCache::default(), customer)?.snapshot()),
                };
                invoice.lines =
                    content.lines.into_iter().map(|(line_id, input)| input.into_line_with(line_id)).collect();
                invoice.currency = content.currency.unwrap_or_default();
                invoice.exchange_rate = content.exchange_rate;
                invoice.supply_date = content.supply_date;
                invoice.due_date = content.due_date;
                invoice.notes = content.notes;
                invoice.discount = content.discount.map(|d| resolve_discount(d, &invoice.lines)).transpose()?;
                Ok(())
            },
            |_| "edit".to_owned(),
        )
        .map(|(invoice, ())| invoice)
    }

    /// Issues a draft: freezes it and gives it the next number of this device's series, in the
    /// same transaction, so numbers are gapless and never reused.
    /// The invoice is stamped as a ZATCA e-invoice in the same transaction (see `einvoice`).
    pub fn issue_invoice(&mut self, id: InvoiceId) -> Result<Invoice> {
        self.permit(Action::IssueInvoices)?;
        let series = self.info.series.clone();
        let seller = self.settings()?.seller;
        let key = self.egs_key()?;
        self.update_with_cache(
            id.into(),
            |invoice: &mut Invoice, tx, ctx, cache| {
                // Check before taking a number, so a refused issue uses none.
                if invoice.is_issued() {
                    return Err(daftar_domain::invoice::InvoiceStateError::AlreadyIssued {
                        number: invoice.number.clone().unwrap_or_default(),
                    }
                    .into());
                }
                if invoice.deleted.is_some() {
                    return Err(daftar_domain::invoice::InvoiceStateError::Deleted { id }.into());
                }
                invoice.validate_for_issue().into_result().map_err(StoreError::NotIssuable)?;
                let next: i64 = tx.query_row(
                    "INSERT INTO series_counters (series, last) VALUES (?1, 1)
                     ON CONFLICT (series) DO UPDATE SET last = last + 1 RETURNING last",
                    [series.as_str()],
                    |r| r.get(0),
                )?;
                invoice.issue(series.number(next as u64), ctx.now, ctx.device)?;
                crate::einvoice::stamp_issued(tx, cache, invoice, &seller, &key, ctx.now)?;
                Ok(())
            },
            |invoice| format!("issue {}", invoice.number.as_deref().unwrap_or_default()),
        )
        .map(|(invoice, ())| invoice)
    }

    /// Records a payment against an invoice (drafts and issued invoices alike).
    pub fn record_payment(
        &mut self,
        id: InvoiceId,
        amount: Amount,
        date: NaiveDate,
        method: PaymentMethod,
        reference: String,
    ) -> Result<Invoice> {
        self.permit(Action::RecordPayments)?;
        self.update(
            id.into(),
            |invoice: &mut Invoice, _, _| {
                if invoice.deleted.is_some() {
                    return Err(daftar_domain::invoice::InvoiceStateError::Deleted { id }.into());
                }
                invoice.payments.push(Payment {
                    id: PaymentId::from_uuid(Uuid::now_v7()),
                    amount,
                    date,
                    method,
                    reference,
                });
                Ok(())
            },
            |_| "record payment".to_owned(),
        )
        .map(|(invoice, ())| invoice)
    }

    /// Moves a draft to the trash. Issued invoices are permanent.
    pub fn delete_invoice(&mut self, id: InvoiceId) -> Result<Invoice> {
        self.permit(Action::DeleteDrafts)?;
        self.delete(id.into(), |invoice: &Invoice| {
            if invoice.is_issued() {
                return Err(StoreError::IssuedIsPermanent { number: invoice.number.clone().unwrap_or_default() });
            }
            Ok(())
        })
    }

    /// Moves several drafts to the trash in one transaction: all of them, or — when one is
    /// issued, already deleted or unknown — none.
    pub fn delete_invoices(&mut self, ids: &[InvoiceId]) -> Result<Vec<Invoice>> {
        self.permit(Action::DeleteDrafts)?;
        self.write(|tx, ctx, cache| {
            let mut deleted = Vec::with_capacity(ids.len());
            for id in ids {
                let doc_id: DocumentId = (*id).into();
                let (mut doc, mut invoice) = load_record::<Invoice>(tx, cache, doc_id)?;
                if invoice.deleted.is_some() {
                    return Err(StoreError::AlreadyDeleted { kind: "invoice", id: id.to_string() });
                }
                if invoice.is_issued() {
                    return Err(StoreError::IssuedIsPermanent { number: invoice.number.clone().unwrap_or_default() });
                }
                invoice.deleted = Some(daftar_domain::Tombstone { by: ctx.device, at: ctx.now });
                let json = crate::document::to_json_value(&invoice);
                if crate::store::commit_json(tx, doc_id, &mut doc, &json, "delete", ctx)? {
                    invoice.index(tx, SearchWrite::Queue)?;
                }
                cache.put(doc_id, doc);
                deleted.push(invoice);
            }
            Ok(deleted)
        })
    }

    pub fn restore_invoice(&mut self, id: InvoiceId) -> Result<Invoice> {
        self.permit(Action::RestoreFromTrash)?;
        self.restore(id.into())
    }

    /// Makes a draft look as it did at `version`, as a new change.
    pub fn revert_invoice(&mut self, id: InvoiceId, version: usize) -> Result<Invoice> {
        self.permit(Action::EditDrafts)?;
        self.revert(id.into(), version, |invoice: &Invoice| Ok(invoice.ensure_editable()?))
    }

    /// Removes a deleted draft and its whole history for good, and records that it did.
    pub fn purge_invoice(&mut self, id: InvoiceId) -> Result<()> {
        self.permit(Action::PurgeDrafts)?;
        let doc_id: DocumentId = id.into();
        self.write(|tx, ctx, cache| {
            let (_, invoice) = load_record::<Invoice>(tx, cache, doc_id)?;
            if invoice.is_issued() {
                return Err(StoreError::IssuedIsPermanent { number: invoice.number.unwrap_or_default() });
            }
            if invoice.deleted.is_none() {
                return Err(StoreError::PurgeNeedsTrash { id: id.to_string() });
            }
            let key = doc_id.to_string();
            let summary = format!(
                "draft {} for {}, {} lines",
                key,
                invoice.customer.as_ref().map(|c| c.name.as_str()).unwrap_or("no customer"),
                invoice.lines.len()
            );
            Invoice::unindex(doc_id, tx)?;
            tx.execute("DELETE FROM changes WHERE doc_id = ?1", [&key])?;
            tx.execute("DELETE FROM seals WHERE doc_id = ?1", [&key])?;
            tx.execute("DELETE FROM snapshots WHERE doc_id = ?1", [&key])?;
            tx.execute("DELETE FROM documents WHERE id = ?1", [&key])?;
            tx.execute(
                "INSERT INTO purges (doc_id, kind, device, time, summary) VALUES (?1, 'invoice', ?2, ?3, ?4)",
                params![key, ctx.device.to_string(), ctx.now.timestamp_millis(), summary],
            )?;
            Ok(())
        })
    }

    /// Lists invoices from the index, newest first.
    pub fn list_invoices(&self, query: &InvoiceQuery) -> Result<Vec<InvoiceSummary>> {
        let (sql, args) = self.invoice_query(
            query,
            "i.id, i.number, i.kind, i.status, i.customer_id, i.customer_name, i.issued_at, i.due_date,
             i.created_at, i.currency, i.net, i.vat, i.gross, i.due, i.deleted",
            true,
        )?;
        let mut statement = self.conn.prepare_cached(&sql)?;
        let rows = statement.query_map(rusqlite::params_from_iter(args.iter().map(|a| a.as_ref())), |r| {
            Ok(InvoiceSummary {
                id: r.get(0)?,
                number: r.get(1)?,
                kind: r.get(2)?,
                status: r.get(3)?,
                customer_id: r.get(4)?,
                customer: r.get(5)?,
                issued_at: r.get(6)?,
                due_date: r.get(7)?,
                created_at: r.get(8)?,
                currency: r.get(9)?,
                net: Amount::from_raw(r.get(10)?),
                vat: Amount::from_raw(r.get(11)?),
                gross: Amount::from_raw(r.get(12)?),
                due: Amount::from_raw(r.get(13)?),
                deleted: r.get::<_, i64>(14)? != 0,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// How many invoices match `query` (its limit and offset aside): the height of a scrolled list.
    pub fn count_invoices(&self, query: &InvoiceQuery) -> Result<usize> {
        let (sql, args) = self.invoice_query(query, "count(*)", false)?;
        let count: i64 = self
            .conn
            .prepare_cached(&sql)?
            .query_row(rusqlite::params_from_iter(args.iter().map(|a| a.as_ref())), |r| r.get(0))?;
        Ok(count as usize)
    }

    /// The SQL and arguments of an invoice list query selecting `columns`, paged or not.
    #[allow(clippy::type_complexity)]
    fn invoice_query(
        &self,
        query: &InvoiceQuery,
        columns: &str,
        paged: bool,
    ) -> Result<(String, Vec<Box<dyn rusqlite::ToSql>>)> {
        // With search words, FTS5 drives the query in descending rowid (= creation) order and
        // the LIMIT stops it after one page; without, it is a walk down the primary key.
        let expression = query.text.as_deref().and_then(crate::search::match_expression);
        if expression.is_some() {
            self.flush_search()?;
        }
        let from = match expression {
            Some(_) => "invoice_search s JOIN invoice_index i ON i.rowid = s.rowid WHERE invoice_search MATCH ?1",
            None => "invoice_index i WHERE ?1 IS NULL",
        };
        let direction = if query.ascending { "ASC" } else { "DESC" };
        // Customer, total and date have indexes (schema step 4); number and due sort the
        // matches. Creation order breaks ties.
        let order = match (query.sort, expression.is_some()) {
            (InvoiceSort::Created, true) => format!(" ORDER BY s.rowid {direction}"),
            (InvoiceSort::Created, false) => format!(" ORDER BY i.rowid {direction}"),
            (InvoiceSort::Number, _) => {
                format!(" ORDER BY i.number IS NULL, i.number {direction}, i.rowid {direction}")
            }
            (InvoiceSort::Customer, _) => {
                format!(" ORDER BY i.customer_name COLLATE NOCASE {direction}, i.rowid {direction}")
            }
            (InvoiceSort::Date, _) => {
                format!(" ORDER BY coalesce(i.issued_at, i.created_at) {direction}, i.rowid {direction}")
            }
            (InvoiceSort::Total, _) => format!(" ORDER BY i.gross {direction}, i.rowid {direction}"),
            (InvoiceSort::Due, _) => format!(" ORDER BY i.due {direction}, i.rowid {direction}"),
        };
        // A literal, so the planner can use the partial trash index (and walk the primary key
        // for live invoices).
        let deleted = match (query.deleted, query.status) {
            (true, _) => "i.deleted = 1",
            (false, Some(_)) => "i.deleted = 0",
            // Sorted by a column: the planner walks that column's index.
            (false, None) if query.sort != InvoiceSort::Created => "i.deleted = 0",
            // `+` keeps the planner off the status index, so it walks the primary key backwards
            // and stops after one page instead of sorting every live invoice.
            (false, None) => "+i.deleted = 0",
        };
        let mut sql = format!("SELECT {columns} FROM {from} AND {deleted}");
        let mut args: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(expression)];
        let mut arg = |sql: &mut String, clause: &str, value: Box<dyn rusqlite::ToSql>| {
            args.push(value);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(status) = query.status {
            arg(&mut sql, " AND i.status = ?", Box::new(status.as_str()));
        }
        if let Some(customer) = query.customer {
            arg(&mut sql, " AND i.customer_id = ?", Box::new(customer.to_string()));
        }
        if let Some(from) = query.from {
            arg(&mut sql, " AND substr(coalesce(i.issued_at, i.created_at), 1, 10) >= ?", Box::new(from.to_string()));
        }
        if let Some(to) = query.to {
            arg(&mut sql, " AND substr(coalesce(i.issued_at, i.created_at), 1, 10) <= ?", Box::new(to.to_string()));
        }
        if paged {
            sql.push_str(&order);
            let limit = query.limit.map(|l| l as i64).unwrap_or(-1);
            arg(&mut sql, " LIMIT ?", Box::new(limit));
            arg(&mut sql, " OFFSET ?", Box::new(query.offset as i64));
        }
        Ok((sql, args))
    }

    /// Resolves what a person typed (id, id prefix, or number) to an invoice id.
    pub fn resolve_invoice(&self, text: &str) -> Result<InvoiceId> {
        Ok(InvoiceId::from_uuid(*self.resolve(DocKind::Invoice, text)?.as_uuid()))
    }
}
