//! The kinds of document the store holds and how each is indexed.

use chrono::{DateTime, Utc};
use daftar_domain::{
    Customer, DeviceId, DocumentId, Invoice, Item, Problems, SellerProfile, Series, Tombstone, WorkspaceId,
    compute_totals,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Which kind of record a document holds; stored in `documents.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    Settings,
    Invoice,
    Customer,
    Item,
    /// Who belongs to the workspace (`membership`).
    Membership,
    /// One device's audit events (`events`).
    Events,
}

impl DocKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Settings => "settings",
            DocKind::Invoice => "invoice",
            DocKind::Customer => "customer",
            DocKind::Item => "item",
            DocKind::Membership => "membership",
            DocKind::Events => "events",
        }
    }

    pub fn parse(text: &str) -> Option<DocKind> {
        match text {
            "settings" => Some(DocKind::Settings),
            "invoice" => Some(DocKind::Invoice),
            "customer" => Some(DocKind::Customer),
            "item" => Some(DocKind::Item),
            "membership" => Some(DocKind::Membership),
            "events" => Some(DocKind::Events),
            _ => None,
        }
    }
}

/// What a device contributes to the workspace settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct DeviceEntry {
    pub id: DeviceId,
    pub series: Series,
    #[serde(default)]
    pub name: String,
    pub added_at: DateTime<Utc>,
}

/// The workspace settings document (one per workspace; its document id is the workspace id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct WorkspaceSettings {
    pub id: WorkspaceId,
    pub seller: SellerProfile,
    /// Every device and its invoice-number series, keyed by id so concurrent joins merge.
    pub devices: Vec<DeviceEntry>,
    pub created_at: DateTime<Utc>,
    /// The relays the workspace syncs through; every device adopts the ones it lacks.
    #[serde(default)]
    pub relays: Vec<String>,
}

/// How an index write reaches the full-text index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchWrite {
    /// Through `search_queue`, moved into FTS5 in batches (after a number of single writes,
    /// before every search, and by bulk writes before they commit, in one statement: FTS5
    /// flushes its pending terms at every statement that writes to it, so writing it row by
    /// row makes, and then merges, a segment per row).
    Queue,
}

/// A record stored as its own Automerge document.
///
/// The defaults suit the workspace-level documents (settings, membership, devices' events),
/// which are never moved to the trash and have no index rows.
pub trait Record: Serialize + DeserializeOwned + Clone {
    const KIND: DocKind;
    fn document_id(&self) -> DocumentId;
    fn tombstone(&self) -> Option<&Tombstone> {
        None
    }
    fn set_tombstone(&mut self, _tombstone: Option<Tombstone>) {}
    fn validate(&self) -> Problems {
        Problems::new()
    }
    /// Writes this record's rows in the index tables (replacing earlier ones).
    fn index(&self, _conn: &Connection, _search: SearchWrite) -> Result<()> {
        Ok(())
    }
    /// Removes this record's index rows.
    fn unindex(_id: DocumentId, _conn: &Connection) -> Result<()> {
        Ok(())
    }
    /// Whether the index holds exactly what [`Record::index`] would write.
    fn index_matches(&self, _conn: &Connection) -> Result<bool> {
        Ok(true)
    }
}

/// The `invoice_index` sort key of an id: a UUIDv7's 48-bit millisecond timestamp followed by
/// its 12 `rand_a` bits, so keys order like creation times. Other UUIDs use their first 60 bits.
fn sort_key(id: &uuid::Uuid) -> i64 {
    let bytes = id.as_bytes();
    let first = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
    let key = if id.get_version_num() == 7 {
        let millis = first >> 16;
        let rand_a = first & 0x0FFF;
        (millis << 12) | rand_a
    } else {
        first >> 4
    };
    key as i64
}

fn deleted_flag(t: Option<&Tombstone>) -> i64 {
    i64::from(t.is_some())
}

impl Record for WorkspaceSettings {
    const KIND: DocKind = DocKind::Settings;
    fn document_id(&self) -> DocumentId {
        (self.id).into()
    }
    fn validate(&self) -> Problems {
        self.seller.validate()
    }
}

/// The row `invoice_index` holds for an invoice, derived from its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvoiceRow {
    id: String,
    number: Option<String>,
    kind: String,
    status: String,
    customer_id: Option<String>,
    customer_name: String,
    issued_at: Option<String>,
    supply_date: Option<String>,
    due_date: Option<String>,
    currency: String,
    net: i64,
    vat: i64,
    gross: i64,
    due: i64,
    created_at: String,
    deleted: i64,
}

/// The text `invoice_search` indexes for an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InvoiceSearchText {
    number: String,
    customer: String,
    lines: String,
    notes: String,
}

impl InvoiceRow {
    fn of(invoice: &Invoice) -> InvoiceRow {
        // Validation bounds every amount, so a stored invoice always has totals; a document
        // that somehow does not is indexed with zeros and reported by `store verify`.
        let totals = compute_totals(invoice).ok();
        let figure = |f: fn(&daftar_domain::Totals) -> i64| totals.as_ref().map(f).unwrap_or(0);
        InvoiceRow {
            id: invoice.id.to_string(),
            number: invoice.number.clone(),
            kind: invoice.kind.as_str().to_owned(),
            status: invoice.status.as_str().to_owned(),
            customer_id: invoice.customer.as_ref().and_then(|c| c.id).map(|id| id.to_string()),
            customer_name: invoice.customer.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
            issued_at: invoice.issued_at.map(|t| t.to_rfc3339()),
            supply_date: invoice.supply_date.map(|d| d.to_string()),
            due_date: invoice.due_date.map(|d| d.to_string()),
            currency: invoice.currency.to_string(),
            net: figure(|t| t.net.raw()),
            vat: figure(|t| t.vat.raw()),
            gross: figure(|t| t.gross.raw()),
            due: figure(|t| t.due.raw()),
            created_at: invoice.created_at.to_rfc3339(),
            deleted: deleted_flag(invoice.deleted.as_ref()),
        }
    }

    fn read(conn: &Connection, id: &str) -> Result<Option<(i64, InvoiceRow)>> {
        Ok(conn
            .query_row(
                "SELECT rowid, id, number, kind, status, customer_id, customer_name, issued_at, supply_date,
                        due_date, currency, net, vat, gross, due, created_at, deleted
                 FROM invoice_index WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get(0)?,
                        InvoiceRow {
                            id: r.get(1)?,
                            number: r.get(2)?,
                            kind: r.get(3)?,
                            status: r.get(4)?,
                            customer_id: r.get(5)?,
                            customer_name: r.get(6)?,
                            issued_at: r.get(7)?,
                            supply_date: r.get(8)?,
                            due_date: r.get(9)?,
                            currency: r.get(10)?,
                            net: r.get(11)?,
                            vat: r.get(12)?,
                            gross: r.get(13)?,
                            due: r.get(14)?,
                            created_at: r.get(15)?,
                            deleted: r.get(16)?,
                        },
                    ))
                },
            )
            .optional()?)
    }
}

impl InvoiceSearchText {
    fn of(invoice: &Invoice) -> Self {
        let customer = invoice
            .customer
            .as_ref()
            .map(|c| format!("{} {}", c.name, c.vat_number.as_deref().unwrap_or_default()))
            .unwrap_or_default();
        let lines = invoice.lines.iter().map(|l| l.description.as_str()).collect::<Vec<_>>().join("\n");
        InvoiceSearchText {
            number: invoice.number.clone().unwrap_or_default(),
            customer,
            lines,
            notes: invoice.notes.clone(),
        }
    }
}

impl Record for Invoice {
    const KIND: DocKind = DocKind::Invoice;
    fn document_id(&self) -> DocumentId {
        self.id.into()
    }
    fn tombstone(&self) -> Option<&Tombstone> {
        self.deleted.as_ref()
    }
    fn set_tombstone(&mut self, tombstone: Option<Tombstone>) {
        self.deleted = tombstone;
    }
    fn validate(&self) -> Problems {
        if self.is_issued() { self.validate_for_issue() } else { Invoice::validate(self) }
    }
    fn index(&self, conn: &Connection, search: SearchWrite) -> Result<()> {
        let row = InvoiceRow::of(self);
        let existing: Option<i64> = conn
            .prepare_cached("SELECT rowid FROM invoice_index WHERE id = ?1")?
            .query_row([&row.id], |r| r.get(0))
            .optional()?;
        let values = params![
            row.id,
            row.number,
            row.kind,
            row.status,
            row.customer_id,
            row.customer_name,
            row.issued_at,
            row.supply_date,
            row.due_date,
            row.currency,
            row.net,
            row.vat,
            row.gross,
            row.due,
            row.created_at,
            row.deleted
        ];
        let replace = i64::from(existing.is_some());
        let rowid = match existing {
            Some(rowid) => {
                conn.prepare_cached(
                    "UPDATE invoice_index SET id = ?1, number = ?2, kind = ?3, status = ?4, customer_id = ?5,
                         customer_name = ?6, issued_at = ?7, supply_date = ?8, due_date = ?9, currency = ?10,
                         net = ?11, vat = ?12, gross = ?13, due = ?14, created_at = ?15, deleted = ?16
                     WHERE rowid = ?17",
                )?
                .execute(rusqlite::params_from_iter(values.iter().copied().chain([&rowid as &dyn rusqlite::ToSql])))?;
                rowid
            }
            None => {
                let mut insert = conn.prepare_cached(
                    "INSERT OR IGNORE INTO invoice_index (id, number, kind, status, customer_id, customer_name,
                         issued_at, supply_date, due_date, currency, net, vat, gross, due, created_at, deleted, rowid)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                )?;
                // Ids from the same millisecond share their first 12 counter bits (a UUIDv7
                // generator counts up in the low bits), so a burst of invoices made in one
                // millisecond wants one key: a later one takes the key after the highest one
                // taken in that millisecond's block (or, the block full, the next block's) —
                // one seek per block, where stepping key by key made a bulk import or a
                // bootstrap quadratic.
                let mut key = sort_key(self.id.as_uuid());
                while insert
                    .execute(rusqlite::params_from_iter(values.iter().copied().chain([&key as &dyn rusqlite::ToSql])))?
                    == 0
                {
                    key = conn
                        .prepare_cached("SELECT max(rowid) FROM invoice_index WHERE rowid BETWEEN ?1 AND ?2")?
                        .query_row(params![key, key | 0xFFF], |r| r.get::<_, Option<i64>>(0))?
                        .map_or(key + 1, |top| top + 1);
                }
                key
            }
        };
        let text = InvoiceSearchText::of(self);
        let SearchWrite::Queue = search;
        conn.prepare_cached(
            "INSERT INTO search_queue (rowid, number, customer, lines, notes, replace)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (rowid) DO UPDATE SET number = excluded.number, customer = excluded.customer,
                 lines = excluded.lines, notes = excluded.notes",
        )?
        .execute(params![rowid, text.number, text.customer, text.lines, text.notes, replace])?;
        Ok(())
    }
    fn unindex(id: DocumentId, conn: &Connection) -> Result<()> {
        if let Some((rowid, _)) = InvoiceRow::read(conn, &id.to_string())? {
            conn.execute("DELETE FROM search_queue WHERE rowid = ?1", [rowid])?;
            conn.execute("DELETE FROM invoice_search WHERE rowid = ?1", [rowid])?;
            conn.execute("DELETE FROM invoice_index WHERE rowid = ?1", [rowid])?;
        }
        Ok(())
    }
    fn index_matches(&self, conn: &Connection) -> Result<bool> {
        let Some((rowid, row)) = InvoiceRow::read(conn, &self.id.to_string())? else {
            return Ok(false);
        };
        // A contentless FTS table cannot return its text, so check that every term of the
        // expected text finds this row.
        let text = InvoiceSearchText::of(self);
        let queued: Option<(String, String, String, String)> = conn
            .query_row("SELECT number, customer, lines, notes FROM search_queue WHERE rowid = ?1", [rowid], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        if let Some(queued) = queued {
            return Ok(queued == (text.number, text.customer, text.lines, text.notes) && row == InvoiceRow::of(self));
        }
        let probe = [text.number, text.customer, text.lines, text.notes].join(" ");
        let found = match crate::search::prefix_expression(&probe) {
            None => true,
            Some(expression) => conn
                .query_row(
                    "SELECT count(*) FROM invoice_search WHERE invoice_search MATCH ?1 AND rowid = ?2",
                    params![expression, rowid],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n == 1)?,
        };
        Ok(found && row == InvoiceRow::of(self))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CustomerRow(String, String, Option<String>, String, String, String, i64);

impl CustomerRow {
    fn of(c: &Customer) -> Self {
        CustomerRow(
            c.id.to_string(),
            c.name.clone(),
            c.vat_number.clone(),
            c.email.clone(),
            c.phone.clone(),
            c.address.city.clone(),
            deleted_flag(c.deleted.as_ref()),
        )
    }
}

impl Record for Customer {
    const KIND: DocKind = DocKind::Customer;
    fn document_id(&self) -> DocumentId {
        self.id.into()
    }
    fn tombstone(&self) -> Option<&Tombstone> {
        self.deleted.as_ref()
    }
    fn set_tombstone(&mut self, tombstone: Option<Tombstone>) {
        self.deleted = tombstone;
    }
    fn validate(&self) -> Problems {
        Customer::validate(self)
    }
    fn index(&self, conn: &Connection, _: SearchWrite) -> Result<()> {
        let r = CustomerRow::of(self);
        conn.prepare_cached(
            "INSERT OR REPLACE INTO customer_index (id, name, vat_number, email, phone, city, deleted)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![r.0, r.1, r.2, r.3, r.4, r.5, r.6])?;
        Ok(())
    }
    fn unindex(id: DocumentId, conn: &Connection) -> Result<()> {
        conn.execute("DELETE FROM customer_index WHERE id = ?1", [id.to_string()])?;
        Ok(())
    }
    fn index_matches(&self, conn: &Connection) -> Result<bool> {
        let stored = conn
            .query_row(
                "SELECT id, name, vat_number, email, phone, city, deleted FROM customer_index WHERE id = ?1",
                [self.id.to_string()],
                |r| Ok(CustomerRow(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
            )
            .optional()?;
        Ok(stored == Some(CustomerRow::of(self)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ItemRow(String, String, i64, String, i64);

impl ItemRow {
    fn of(i: &Item) -> Self {
        ItemRow(
            i.id.to_string(),
            i.name.clone(),
            i.unit_price.raw(),
            i.vat.code.as_str().to_owned(),
            deleted_flag(i.deleted.as_ref()),
        )
    }
}

impl Record for Item {
    const KIND: DocKind = DocKind::Item;
    fn document_id(&self) -> DocumentId {
        self.id.into()
    }
    fn tombstone(&self) -> Option<&Tombstone> {
        self.deleted.as_ref()
    }
    fn set_tombstone(&mut self, tombstone: Option<Tombstone>) {
        self.deleted = tombstone;
    }
    fn validate(&self) -> Problems {
        Item::validate(self)
    }
    fn index(&self, conn: &Connection, _: SearchWrite) -> Result<()> {
        let r = ItemRow::of(self);
        conn.prepare_cached(
            "INSERT OR REPLACE INTO item_index (id, name, unit_price, vat_code, deleted) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![r.0, r.1, r.2, r.3, r.4])?;
        Ok(())
    }
    fn unindex(id: DocumentId, conn: &Connection) -> Result<()> {
        conn.execute("DELETE FROM item_index WHERE id = ?1", [id.to_string()])?;
        Ok(())
    }
    fn index_matches(&self, conn: &Connection) -> Result<bool> {
        let stored = conn
            .query_row(
                "SELECT id, name, unit_price, vat_code, deleted FROM item_index WHERE id = ?1",
                [self.id.to_string()],
                |r| Ok(ItemRow(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        Ok(stored == Some(ItemRow::of(self)))
    }
}
