//! Reading what people type: invoice lines, `--set FIELD=VALUE`, dates, CSV files.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use chrono::{NaiveDate, Utc};
use daftar_domain::{Address, Amount, Customer, CustomerId, Item, ItemId, Problems, VatCategory, VatCode};
use daftar_store::{DiscountInput, InvoiceEdit, LineInput, Store};
use uuid::Uuid;

/// Splits on `|`, honouring `\|` as a literal bar inside a field.
fn split_fields(text: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                fields.last_mut().expect("one field").push('|');
                chars.next();
            }
            '|' => fields.push(String::new()),
            other => fields.last_mut().expect("one field").push(other),
        }
    }
    fields
}

/// A VAT category from `S`, `Z`, `E` or `O`, with an optional exemption reason code.
pub fn vat_category(code: &str, exemption: Option<&str>) -> Result<VatCategory> {
    let code: VatCode = code.parse()?;
    Ok(match exemption.map(str::trim).filter(|e| !e.is_empty()) {
        Some(reason) => VatCategory::with_exemption(code, reason),
        None => VatCategory::of(code),
    })
}

/// Parses `DESCRIPTION|QTY|UNIT_PRICE[|VAT_CATEGORY[|DISCOUNT[|EXEMPTION_CODE]]]`.
pub fn line(text: &str, position: usize) -> Result<LineInput> {
    let fields = split_fields(text);
    let context = || format!("--line {position} ({text:?})");
    if !(3..=6).contains(&fields.len()) {
        bail!(
            "{}: expected DESCRIPTION|QTY|UNIT_PRICE[|VAT_CATEGORY[|DISCOUNT[|EXEMPTION_CODE]]], got {} fields",
            context(),
            fields.len()
        );
    }
    let field = |i: usize| fields.get(i).map(|s| s.trim()).filter(|s| !s.is_empty());
    Ok(LineInput {
        description: fields[0].trim().to_owned(),
        quantity: fields[1].parse().with_context(context)?,
        unit_price: fields[2].parse().with_context(context)?,
        vat: vat_category(field(3).unwrap_or("S"), field(5)).with_context(context)?,
        discount: field(4).map(str::parse::<Amount>).transpose().with_context(context)?.unwrap_or(Amount::ZERO),
    })
}

pub fn date(text: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| anyhow!("date must be written YYYY-MM-DD, such as 2026-11-24 (got {text:?})"))
}

fn optional<T>(value: &str, parse: impl FnOnce(&str) -> Result<T>) -> Result<Option<T>> {
    if value.trim().is_empty() { Ok(None) } else { parse(value).map(Some) }
}

/// `AMOUNT[|VAT_CATEGORY[|EXEMPTION_CODE]]` for a document discount.
pub fn discount(text: &str) -> Result<DiscountInput> {
    let fields = split_fields(text);
    let amount = fields[0].parse::<Amount>()?;
    let vat = match fields.get(1).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(code) => Some(vat_category(code, fields.get(2).map(String::as_str))?),
        None => None,
    };
    Ok(DiscountInput { amount, vat, reason: String::new() })
}

pub const SETTABLE: &str = "notes, supply_date, due_date, currency, exchange_rate, customer, kind, discount";

/// One `--set FIELD=VALUE` of `invoice edit`; an empty value clears optional fields.
pub fn invoice_edit(store: &Store, assignment: &str) -> Result<InvoiceEdit> {
    let (field, value) = assignment
        .split_once('=')
        .ok_or_else(|| anyhow!("--set expects FIELD=VALUE (got {assignment:?}); fields: {SETTABLE}"))?;
    let context = || format!("--set {assignment}");
    Ok(match field.trim() {
        "notes" => InvoiceEdit::Notes(value.to_owned()),
        "supply_date" => InvoiceEdit::SupplyDate(optional(value, date).with_context(context)?),
        "due_date" => InvoiceEdit::DueDate(optional(value, date).with_context(context)?),
        "currency" => InvoiceEdit::Currency(value.parse().with_context(context)?),
        "exchange_rate" => InvoiceEdit::ExchangeRate(optional(value, |v| Ok(v.parse()?)).with_context(context)?),
        "customer" => InvoiceEdit::Customer(store.resolve_customer(value).with_context(context)?),
        "kind" => InvoiceEdit::Kind(value.parse().with_context(context)?),
        "discount" => InvoiceEdit::Discount(optional(value, discount).with_context(context)?),
        other => bail!("cannot set {other:?}; settable fields: {SETTABLE}"),
    })
}

/// Problems of a record read from a CSV row, naming the file line and column.
fn row_problems(line: u64, problems: &Problems) -> Vec<String> {
    problems
        .iter()
        .map(|p| {
            let column = p.field.strip_prefix("address.").unwrap_or(&p.field);
            let column = if column.starts_with("vat.") { "vat_category" } else { column };
            format!("line {line}, column {column}: {}", p.message)
        })
        .collect()
}

struct CsvRows {
    headers: Vec<String>,
    rows: Vec<(u64, csv::StringRecord)>,
}

fn read_csv(path: &Path, known: &[&str], required: &[&str]) -> Result<CsvRows> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("could not read {}", path.display()))?;
    let headers: Vec<String> = reader
        .headers()
        .with_context(|| format!("{}: the header row is not valid CSV", path.display()))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    for header in &headers {
        if !known.contains(&header.as_str()) {
            bail!("{}: unknown column {header:?}; known columns: {}", path.display(), known.join(", "));
        }
    }
    for needed in required {
        if !headers.iter().any(|h| h == needed) {
            bail!("{}: the required column {needed:?} is missing", path.display());
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            match e.kind() {
                csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                    anyhow!(
                        "{} line {line}: expected {expected_len} columns, found {len}; nothing was imported",
                        path.display()
                    )
                }
                _ => anyhow!("{} line {line}: {e}; nothing was imported", path.display()),
            }
        })?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        rows.push((line, record));
    }
    Ok(CsvRows { headers, rows })
}

impl CsvRows {
    fn get<'a>(&self, record: &'a csv::StringRecord, column: &str) -> &'a str {
        self.headers.iter().position(|h| h == column).and_then(|i| record.get(i)).unwrap_or("")
    }
}

fn fail_if_any(path: &Path, errors: Vec<String>) -> Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    bail!("{}: {} problem(s), nothing was imported:\n{}", path.display(), errors.len(), errors.join("\n"))
}

const CUSTOMER_COLUMNS: &[&str] = &[
    "name",
    "vat_number",
    "email",
    "phone",
    "street",
    "building_number",
    "additional_number",
    "district",
    "city",
    "postal_code",
    "country",
];

/// Reads and validates every customer row; any problem refuses the whole file.
pub fn customers_csv(path: &Path) -> Result<Vec<Customer>> {
    let csv = read_csv(path, CUSTOMER_COLUMNS, &["name"])?;
    let now = Utc::now();
    let mut errors = Vec::new();
    let mut customers = Vec::new();
    for (line, record) in &csv.rows {
        let get = |c: &str| csv.get(record, c).to_owned();
        let vat = get("vat_number");
        let country = get("country");
        let customer = Customer {
            id: CustomerId::from_uuid(Uuid::now_v7()),
            name: get("name"),
            vat_number: if vat.is_empty() { None } else { Some(vat) },
            address: Address {
                street: get("street"),
                building_number: get("building_number"),
                additional_number: get("additional_number"),
                district: get("district"),
                city: get("city"),
                postal_code: get("postal_code"),
                country: if country.is_empty() { "SA".into() } else { country.to_ascii_uppercase() },
            },
            email: get("email"),
            phone: get("phone"),
            created_at: now,
            deleted: None,
        };
        errors.extend(row_problems(*line, &customer.validate()));
        customers.push(customer);
    }
    fail_if_any(path, errors)?;
    Ok(customers)
}

const ITEM_COLUMNS: &[&str] = &["name", "name_ar", "price", "unit_price", "vat_category", "exemption_code", "unit"];

/// Reads and validates every item row; any problem refuses the whole file.
pub fn items_csv(path: &Path) -> Result<Vec<Item>> {
    let csv = read_csv(path, ITEM_COLUMNS, &["name"])?;
    if !csv.headers.iter().any(|h| h == "price" || h == "unit_price") {
        bail!("{}: the required column \"price\" is missing", path.display());
    }
    let now = Utc::now();
    let mut errors = Vec::new();
    let mut items = Vec::new();
    for (line, record) in &csv.rows {
        let get = |c: &str| csv.get(record, c).to_owned();
        let price_text = if get("price").is_empty() { get("unit_price") } else { get("price") };
        let unit_price = match price_text.parse::<Amount>() {
            Ok(price) => price,
            Err(e) => {
                errors.push(format!("line {line}, column price: {e}"));
                continue;
            }
        };
        let code = get("vat_category");
        let vat = match vat_category(if code.is_empty() { "S" } else { &code }, Some(&get("exemption_code"))) {
            Ok(vat) => vat,
            Err(e) => {
                errors.push(format!("line {line}, column vat_category: {e}"));
                continue;
            }
        };
        let item = Item {
            id: ItemId::from_uuid(Uuid::now_v7()),
            name: get("name"),
            name_ar: get("name_ar"),
            unit_price,
            vat,
            unit: get("unit"),
            created_at: now,
            deleted: None,
        };
        errors.extend(row_problems(*line, &item.validate()));
        items.push(item);
    }
    fail_if_any(path, errors)?;
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_defaults_and_escapes() {
        let l = line("Bolts \\| nuts|2.5|10|Z|1|VATEX-SA-32", 1).unwrap();
        assert_eq!(l.description, "Bolts | nuts");
        assert_eq!(l.quantity.to_string(), "2.5");
        assert_eq!(l.discount.to_string(), "1.00");
        assert_eq!(l.vat.exemption_code.as_deref(), Some("VATEX-SA-32"));
        let plain = line("Tea|1|5", 1).unwrap();
        assert_eq!(plain.vat, VatCategory::standard());
    }

    #[test]
    fn malformed_lines_name_the_line_and_field() {
        let err = line("Tea|x|5|S", 2).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "--line 2 (\"Tea|x|5|S\"): quantity must be a decimal number such as 2.5 (got \"x\")"
        );
        assert!(line("Tea", 1).is_err());
    }
}
