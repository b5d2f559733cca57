//! Customers and catalogue items: the same list / edit / trash patterns as invoices.

use daftar_domain::{Amount, Customer, CustomerId, Item, ItemId};
use serde::Serialize;

use crate::error::Result;
use crate::records::DocKind;
use crate::store::Store;

/// A customer row in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct CustomerSummary {
    pub id: String,
    pub name: String,
    pub vat_number: Option<String>,
    pub email: String,
    pub phone: String,
    pub city: String,
    pub deleted: bool,
}

/// An item row in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ItemSummary {
    pub id: String,
    pub name: String,
    pub unit_price: daftar_domain::Amount,
    pub vat_category: String,
    pub deleted: bool,
}

/// Something in the trash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct TrashEntry {
    pub kind: DocKind,
    pub id: String,
    /// One line for people, in English: the number (or "draft") and customer of an invoice, or
    /// the name of a customer or item.
    pub label: String,
    /// For invoices: the number, none for a draft.
    pub number: Option<String>,
    /// The customer's name (invoices) or the record's name (customers, items).
    pub name: String,
    /// For invoices: the total.
    pub gross: Option<Amount>,
    /// For invoices: the currency of the total.
    pub currency: Option<String>,
}

fn like_pattern(text: Option<&str>) -> String {
    let escaped = text.unwrap_or_default().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

impl Store {
    pub fn customer(&self, id: CustomerId) -> Result<Customer> {
        self.get(id.into())
    }

    /// Customers whose name, VAT number, email or phone contains `text`, by name.
    pub fn list_customers(
        &self,
        text: Option<&str>,
        deleted: bool,
        limit: Option<usize>,
    ) -> Result<Vec<CustomerSummary>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id, name, vat_number, email, phone, city, deleted FROM customer_index
             WHERE deleted = ?1 AND (name LIKE ?2 ESCAPE '\\' OR coalesce(vat_number, '') LIKE ?2 ESCAPE '\\'
                                     OR email LIKE ?2 ESCAPE '\\' OR phone LIKE ?2 ESCAPE '\\')
             ORDER BY name COLLATE NOCASE, id LIMIT ?3",
        )?;
        let rows = statement.query_map(
            rusqlite::params![i64::from(deleted), like_pattern(text), limit.map(|l| l as i64).unwrap_or(-1)],
            |r| {
                Ok(CustomerSummary {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    vat_number: r.get(2)?,
                    email: r.get(3)?,
                    phone: r.get(4)?,
                    city: r.get(5)?,
                    deleted: r.get::<_, i64>(6)? != 0,
                })
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn resolve_customer(&self, text: &str) -> Result<CustomerId> {
        Ok(CustomerId::from_uuid(*self.resolve(DocKind::Customer, text)?.as_uuid()))
    }

    pub fn item(&self, id: ItemId) -> Result<Item> {
        self.get(id.into())
    }

    pub fn list_items(&self, text: Option<&str>, deleted: bool, limit: Option<usize>) -> Result<Vec<ItemSummary>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id, name, unit_price, vat_code, deleted FROM item_index
             WHERE deleted = ?1 AND name LIKE ?2 ESCAPE '\\' ORDER BY name COLLATE NOCASE, id LIMIT ?3",
        )?;
        let rows = statement.query_map(
            rusqlite::params![i64::from(deleted), like_pattern(text), limit.map(|l| l as i64).unwrap_or(-1)],
            |r| {
                Ok(ItemSummary {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    unit_price: daftar_domain::Amount::from_raw(r.get(2)?),
                    vat_category: r.get(3)?,
                    deleted: r.get::<_, i64>(4)? != 0,
                })
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn resolve_item(&self, text: &str) -> Result<ItemId> {
        Ok(ItemId::from_uuid(*self.resolve(DocKind::Item, text)?.as_uuid()))
    }

    /// Everything in the trash: invoices, customers and items.
    pub fn trash(&self) -> Result<Vec<TrashEntry>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT 'invoice', id, coalesce(number, 'draft') || ' ' || customer_name, number, customer_name, gross, currency
               FROM invoice_index WHERE deleted = 1
             UNION ALL SELECT 'customer', id, name, NULL, name, NULL, NULL FROM customer_index WHERE deleted = 1
             UNION ALL SELECT 'item', id, name, NULL, name, NULL, NULL FROM item_index WHERE deleted = 1",
        )?;
        let rows = statement.query_map([], |r| {
            let kind: String = r.get(0)?;
            Ok(TrashEntry {
                kind: DocKind::parse(&kind).unwrap_or(DocKind::Invoice),
                id: r.get(1)?,
                label: r.get(2)?,
                number: r.get(3)?,
                name: r.get(4)?,
                gross: r.get::<_, Option<i64>>(5)?.map(Amount::from_raw),
                currency: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
