//! Catalogue items: what a business sells, with its price and VAT treatment.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::ItemId;
use crate::money::Amount;
use crate::record::Tombstone;
use crate::tax::VatCategory;
use crate::validate::Problems;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Item {
    pub id: ItemId,
    pub name: String,
    #[serde(default)]
    pub name_ar: String,
    pub unit_price: Amount,
    pub vat: VatCategory,
    /// Unit of measure shown on invoices (`PCE`, `KGM`, `HUR` …); free text.
    #[serde(default)]
    pub unit: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub deleted: Option<Tombstone>,
}

impl Item {
    pub fn validate(&self) -> Problems {
        let mut problems = Problems::new();
        if self.name.trim().is_empty() {
            problems.push("name", "item name must not be empty");
        }
        if self.unit_price.is_negative() {
            problems.push("unit_price", format!("item unit price must not be negative (got {})", self.unit_price));
        }
        crate::invoice::check_vat(&self.vat, "item", "vat", &mut problems, false);
        problems
    }
}
