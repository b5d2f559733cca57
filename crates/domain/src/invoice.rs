//! Invoices, credit notes and debit notes: their content, validation and the issue rule.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{DeviceId, InvoiceId, LineId, PaymentId};
use crate::money::{Amount, Currency, ExchangeRate, Quantity, Rate};
use crate::party::{CustomerSnapshot, VatNumber};
use crate::record::Tombstone;
use crate::tax::{VatCategory, VatCode, compute_totals, exemption_text};
use crate::validate::Problems;

/// What kind of document an invoice is (ZATCA invoice type codes 388, 381, 383).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum InvoiceKind {
    /// Standard tax invoice (B2B): cleared by ZATCA before it is shared.
    Standard,
    /// Simplified tax invoice (B2C): reported to ZATCA within 24 hours.
    Simplified,
    /// Credit note against an earlier invoice.
    CreditNote,
    /// Debit note against an earlier invoice.
    DebitNote,
}

impl InvoiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceKind::Standard => "standard",
            InvoiceKind::Simplified => "simplified",
            InvoiceKind::CreditNote => "credit_note",
            InvoiceKind::DebitNote => "debit_note",
        }
    }

    pub fn is_note(self) -> bool {
        matches!(self, InvoiceKind::CreditNote | InvoiceKind::DebitNote)
    }
}

impl fmt::Display for InvoiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text given is not an invoice kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invoice kind must be standard, simplified, credit_note or debit_note (got {0:?})")]
pub struct InvoiceKindError(pub String);

impl FromStr for InvoiceKind {
    type Err = InvoiceKindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "standard" => Ok(InvoiceKind::Standard),
            "simplified" => Ok(InvoiceKind::Simplified),
            "credit_note" | "credit" => Ok(InvoiceKind::CreditNote),
            "debit_note" | "debit" => Ok(InvoiceKind::DebitNote),
            _ => Err(InvoiceKindError(s.to_owned())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Draft,
    Issued,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Issued => "issued",
        }
    }
}

impl fmt::Display for InvoiceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InvoiceStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "draft" => Ok(InvoiceStatus::Draft),
            "issued" => Ok(InvoiceStatus::Issued),
            _ => Err(format!("status must be draft or issued (got {s:?})")),
        }
    }
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Line {
    /// Stable identity so that concurrent edits to different lines merge.
    pub id: LineId,
    pub description: String,
    pub quantity: Quantity,
    pub unit_price: Amount,
    /// Discount on this line, in money.
    #[serde(default)]
    pub discount: Amount,
    pub vat: VatCategory,
}

/// A document-level discount (UBL `AllowanceCharge`), which belongs to one VAT category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct DocumentDiscount {
    pub amount: Amount,
    pub vat: VatCategory,
    #[serde(default)]
    pub reason: String,
}

/// How a payment was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Cash,
    Card,
    BankTransfer,
    Cheque,
    Other,
}

impl FromStr for PaymentMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "cash" => Ok(PaymentMethod::Cash),
            "card" => Ok(PaymentMethod::Card),
            "bank_transfer" | "transfer" | "bank" => Ok(PaymentMethod::BankTransfer),
            "cheque" | "check" => Ok(PaymentMethod::Cheque),
            "other" => Ok(PaymentMethod::Other),
            _ => Err(format!("payment method must be cash, card, bank_transfer, cheque or other (got {s:?})")),
        }
    }
}

/// A payment recorded against an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Payment {
    pub id: PaymentId,
    pub amount: Amount,
    pub date: NaiveDate,
    pub method: PaymentMethod,
    #[serde(default)]
    pub reference: String,
}

/// The invoice a credit or debit note corrects, and why (UBL `BillingReference`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct BillingReference {
    pub invoice_id: InvoiceId,
    /// The original's number, copied so the note prints it even if the original is not synced.
    pub number: String,
    pub reason: String,
}

/// An invoice, credit note or debit note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Invoice {
    pub id: InvoiceId,
    pub kind: InvoiceKind,
    pub status: InvoiceStatus,
    /// Assigned from the issuing device's series when issued; `None` for drafts.
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub issued_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub issued_by: Option<DeviceId>,
    #[serde(default)]
    pub supply_date: Option<NaiveDate>,
    #[serde(default)]
    pub due_date: Option<NaiveDate>,
    #[serde(default)]
    pub currency: Currency,
    /// SAR per unit of `currency`; required when the currency is not SAR.
    #[serde(default)]
    pub exchange_rate: Option<ExchangeRate>,
    #[serde(default)]
    pub customer: Option<CustomerSnapshot>,
    #[serde(default)]
    pub lines: Vec<Line>,
    #[serde(default)]
    pub discount: Option<DocumentDiscount>,
    #[serde(default)]
    pub notes: String,
    #[serde(default)]
    pub payments: Vec<Payment>,
    /// For credit and debit notes: the invoice they correct.
    #[serde(default)]
    pub original: Option<BillingReference>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub deleted: Option<Tombstone>,
    /// The ZATCA e-invoice this invoice was stamped as when issued (absent on drafts and on
    /// invoices issued before Daftar stamped them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub einvoice: Option<EInvoice>,
}

/// An issued invoice's ZATCA phase 2 e-invoice, written once by the issuing device (its EGS
/// unit) and synced with the invoice, so every device can print, export and verify it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct EInvoice {
    /// The issuing device's invoice counter value (ICV).
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub icv: u64,
    /// The invoice hash (base64); the issuing device's next invoice carries it as its PIH.
    pub hash: String,
    /// The previous invoice hash this one is chained to.
    pub pih: String,
    /// The QR payload (base64 TLV) printed on the invoice.
    pub qr: String,
    /// `standard` (cleared by ZATCA) or `simplified` (reported).
    pub subtype: String,
    /// True when stamped with the device's self-signed test certificate, before onboarding:
    /// such e-invoices are valid documents but ZATCA will not accept them.
    pub self_signed: bool,
    /// The signed UBL 2.1 XML, byte for byte as it was hashed and signed.
    pub xml: String,
}

/// An edit or issue was refused because of the invoice's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceStateError {
    #[error(
        "invoice {number} is issued and cannot be edited; correct it with a credit or debit note (daftar invoice create --kind credit_note --original {id} --reason ...)"
    )]
    Frozen { number: String, id: InvoiceId },
    #[error("invoice {number} is already issued")]
    AlreadyIssued { number: String },
    #[error("invoice {id} is in the trash; restore it first (daftar invoice restore {id})")]
    Deleted { id: InvoiceId },
}

/// Largest quantity accepted on a line (one billion units).
const MAX_QUANTITY: Quantity = Quantity::from_raw(1_000_000_000_000);
/// Largest unit price accepted (ten billion in the document currency).
const MAX_UNIT_PRICE: Amount = Amount::from_raw(1_000_000_000_000);

/// Checks a VAT category; with `for_issue`, also that Z/E/O carry their exemption reason.
pub(crate) fn check_vat(vat: &VatCategory, who: &str, field: &str, problems: &mut Problems, for_issue: bool) {
    match vat.code {
        VatCode::S => {
            if vat.rate <= Rate::ZERO || vat.rate > Rate::from_raw(10_000) {
                problems.push(
                    format!("{field}.rate"),
                    format!("{who}: standard-rated VAT must have a rate above 0% and at most 100% (got {}%)", vat.rate),
                );
            }
        }
        code => {
            if !vat.rate.is_zero() {
                problems.push(
                    format!("{field}.rate"),
                    format!("{who}: VAT category {code} must have a 0% rate (got {}%)", vat.rate),
                );
            }
            match &vat.exemption_code {
                Some(reason) if code != VatCode::O && exemption_text(code, reason).is_none() => {
                    problems.push(
                        format!("{field}.exemption_code"),
                        format!(
                            "{who}: {reason} is not a ZATCA exemption reason for VAT category {code} (for example {})",
                            example_reason(code)
                        ),
                    );
                }
                None if for_issue => problems.push_rule(
                    exemption_rule(code),
                    format!("{field}.exemption_code"),
                    format!(
                        "{who}: VAT category {code} ({}) needs an exemption reason code such as {}, which tells ZATCA why no VAT is charged",
                        category_name(code),
                        example_reason(code)
                    ),
                ),
                _ => {}
            }
            if for_issue
                && vat.exemption_code.is_some()
                && vat.exemption_reason.as_deref().is_none_or(|r| r.trim().is_empty())
            {
                problems.push_rule(
                    exemption_rule(code),
                    format!("{field}.exemption_reason"),
                    format!("{who}: VAT category {code} ({}) needs an exemption reason text", category_name(code)),
                );
            }
        }
    }
}

/// The ZATCA rule that asks for an exemption reason in each category.
fn exemption_rule(code: VatCode) -> &'static str {
    match code {
        VatCode::E => "BR-KSA-23",
        VatCode::O => "BR-KSA-24",
        _ => "BR-KSA-69",
    }
}

fn category_name(code: VatCode) -> &'static str {
    match code {
        VatCode::S => "standard-rated",
        VatCode::Z => "zero-rated",
        VatCode::E => "exempt",
        VatCode::O => "out of scope",
    }
}

fn example_reason(code: VatCode) -> &'static str {
    match code {
        VatCode::Z => "VATEX-SA-32",
        VatCode::E => "VATEX-SA-29",
        _ => "VATEX-SA-OOS",
    }
}

impl Invoice {
    /// A new empty draft.
    pub fn draft(id: InvoiceId, kind: InvoiceKind, created_at: DateTime<Utc>) -> Self {
        Invoice {
            id,
            kind,
            status: InvoiceStatus::Draft,
            number: None,
            issued_at: None,
            issued_by: None,
            supply_date: None,
            due_date: None,
            currency: Currency::SAR,
            exchange_rate: None,
            customer: None,
            lines: Vec::new(),
            discount: None,
            notes: String::new(),
            payments: Vec::new(),
            original: None,
            created_at,
            deleted: None,
            einvoice: None,
        }
    }

    pub fn is_issued(&self) -> bool {
        self.status == InvoiceStatus::Issued
    }

    /// Refuses any change to the content of an issued invoice or one in the trash.
    pub fn ensure_editable(&self) -> Result<(), InvoiceStateError> {
        if self.is_issued() {
            return Err(InvoiceStateError::Frozen { number: self.number.clone().unwrap_or_default(), id: self.id });
        }
        if self.deleted.is_some() {
            return Err(InvoiceStateError::Deleted { id: self.id });
        }
        Ok(())
    }

    /// Problems that make this invoice unfit to store even as a draft.
    pub fn validate(&self) -> Problems {
        self.check(false)
    }

    /// Problems that prevent issuing (a superset of [`Invoice::validate`]).
    pub fn validate_for_issue(&self) -> Problems {
        self.check(true)
    }

    fn check(&self, for_issue: bool) -> Problems {
        let mut problems = Problems::new();
        for (index, line) in self.lines.iter().enumerate() {
            let n = index + 1;
            let who = format!("line {n}");
            let field = |f: &str| format!("lines[{n}].{f}");
            if line.description.trim().is_empty() {
                problems.push(field("description"), format!("{who}: description must not be empty"));
            }
            if line.quantity <= Quantity::ZERO {
                problems
                    .push(field("quantity"), format!("{who}: quantity must be greater than 0 (got {})", line.quantity));
            } else if line.quantity > MAX_QUANTITY {
                problems.push(
                    field("quantity"),
                    format!("{who}: quantity must be at most {MAX_QUANTITY} (got {})", line.quantity),
                );
            }
            if line.unit_price.is_negative() {
                problems.push(
                    field("unit_price"),
                    format!("{who}: unit price must not be negative (got {})", line.unit_price),
                );
            } else if line.unit_price > MAX_UNIT_PRICE {
                problems.push(
                    field("unit_price"),
                    format!("{who}: unit price must be at most {MAX_UNIT_PRICE} (got {})", line.unit_price),
                );
            }
            if line.discount.is_negative() {
                problems
                    .push(field("discount"), format!("{who}: discount must not be negative (got {})", line.discount));
            } else if line.quantity > Quantity::ZERO
                && !line.unit_price.is_negative()
                && crate::tax::exact_line_net(line.quantity, line.unit_price, line.discount) < 0
            {
                problems
                    .push(field("discount"), format!("{who}: discount {} is more than the line amount", line.discount));
            }
            check_vat(&line.vat, &who, &format!("lines[{n}].vat"), &mut problems, for_issue);
        }
        if self.lines.len() > 10_000 {
            problems.push("lines", format!("an invoice may have at most 10000 lines (got {})", self.lines.len()));
        }
        if let Some(customer) = &self.customer {
            if let Some(vat) = &customer.vat_number {
                VatNumber::check(vat, "customer", "customer.vat_number", &mut problems);
            }
            if customer.name.trim().is_empty() {
                problems.push("customer.name", "customer name must not be empty");
            }
        }
        match (self.currency.is_sar(), &self.exchange_rate) {
            (false, None) => problems.push(
                "exchange_rate",
                format!("an invoice in {} needs an exchange rate to SAR (--exchange-rate)", self.currency),
            ),
            (false, Some(rate)) if rate.raw() <= 0 => {
                problems.push("exchange_rate", format!("exchange rate must be greater than 0 (got {rate})"))
            }
            (true, Some(rate)) if rate.raw() != ExchangeRate::SCALE => {
                problems.push("exchange_rate", format!("an invoice in SAR cannot carry an exchange rate (got {rate})"))
            }
            _ => {}
        }
        if let Some(discount) = &self.discount {
            if discount.amount.is_negative() {
                problems.push(
                    "discount.amount",
                    format!("document discount must not be negative (got {})", discount.amount),
                );
            }
            check_vat(&discount.vat, "document discount", "discount.vat", &mut problems, for_issue);
        }
        for (index, payment) in self.payments.iter().enumerate() {
            if payment.amount <= Amount::ZERO {
                problems.push(
                    format!("payments[{}].amount", index + 1),
                    format!("payment {}: amount must be greater than 0 (got {})", index + 1, payment.amount),
                );
            }
        }
        if self.kind.is_note() {
            match &self.original {
                None => problems.push_rule(
                    "BR-KSA-56",
                    "original",
                    format!(
                        "a {} must reference the original invoice it corrects (--original ID)",
                        self.kind.as_str().replace('_', " ")
                    ),
                ),
                Some(original) if original.reason.trim().is_empty() => problems.push_rule(
                    "BR-KSA-17",
                    "original.reason",
                    format!("a {} must state why it is issued (--reason TEXT)", self.kind.as_str().replace('_', " ")),
                ),
                _ => {}
            }
        }
        match compute_totals(self) {
            Ok(totals) => {
                let discounted = self.discount.as_ref().map(|d| (d.vat.code, d.vat.rate));
                if totals.breakdown.iter().any(|c| Some((c.code, c.rate)) == discounted && c.taxable.is_negative()) {
                    problems.push(
                        "discount.amount",
                        "document discount is more than the taxable amount of its VAT category",
                    );
                }
            }
            Err(overflow) => problems.push("lines", overflow.to_string()),
        }
        if for_issue {
            if self.lines.is_empty() {
                problems.push("lines", "an invoice needs at least one line before it is issued");
            }
            if self.kind == InvoiceKind::Standard {
                match &self.customer {
                    None => problems.push_rule(
                        "BR-KSA-42",
                        "customer",
                        "a standard tax invoice needs a customer (the buyer's name, BT-44) before it is issued; \
                         for a sale to a consumer, issue a simplified invoice",
                    ),
                    Some(customer) if customer.vat_number.as_deref().is_none_or(|v| v.trim().is_empty()) => problems
                        .push_rule(
                            "BR-KSA-81",
                            "customer.vat_number",
                            format!(
                                "a standard tax invoice must identify the buyer by VAT number (BT-48), and {} has none; \
                                 add it (daftar customer edit ID --vat-number ...) or issue a simplified invoice",
                                customer.name.trim()
                            ),
                        ),
                    _ => {}
                }
            }
            if let (Some(supply), Some(due)) = (self.supply_date, self.due_date)
                && due < supply
            {
                problems.push("due_date", format!("due date {due} is before the supply date {supply}"));
            }
        }
        problems
    }

    /// Freezes the invoice under `number`. The caller allocates the number from the device's
    /// series in the same transaction that stores this change.
    pub fn issue(&mut self, number: String, at: DateTime<Utc>, by: DeviceId) -> Result<(), IssueError> {
        if self.is_issued() {
            return Err(InvoiceStateError::AlreadyIssued { number: self.number.clone().unwrap_or_default() }.into());
        }
        if self.deleted.is_some() {
            return Err(InvoiceStateError::Deleted { id: self.id }.into());
        }
        self.validate_for_issue().into_result()?;
        self.status = InvoiceStatus::Issued;
        self.number = Some(number);
        self.issued_at = Some(at);
        self.issued_by = Some(by);
        if self.supply_date.is_none() {
            self.supply_date = Some(at.date_naive());
        }
        Ok(())
    }
}

/// Issuing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    State(#[from] InvoiceStateError),
    #[error("the invoice cannot be issued yet:\n{0}")]
    Invalid(#[from] Problems),
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn line(n: u128, qty: &str, price: &str) -> Line {
        Line {
            id: LineId::from_uuid(Uuid::from_u128(n)),
            description: format!("item {n}"),
            quantity: qty.parse().unwrap(),
            unit_price: price.parse().unwrap(),
            discount: Amount::ZERO,
            vat: VatCategory::standard(),
        }
    }

    fn invoice(lines: Vec<Line>) -> Invoice {
        let mut inv =
            Invoice::draft(InvoiceId::from_uuid(Uuid::from_u128(1)), InvoiceKind::Simplified, DateTime::UNIX_EPOCH);
        inv.lines = lines;
        inv
    }

    #[test]
    fn negative_quantity_message_names_line_and_value() {
        let inv = invoice(vec![line(1, "1", "10"), line(2, "1", "10"), line(3, "-2", "10")]);
        assert_eq!(inv.validate().to_string(), "line 3: quantity must be greater than 0 (got -2)");
    }

    #[test]
    fn issued_invoices_refuse_edits() {
        let mut inv = invoice(vec![line(1, "1", "10")]);
        inv.issue("A-000001".into(), DateTime::UNIX_EPOCH, DeviceId::from_uuid(Uuid::nil())).unwrap();
        let err = inv.ensure_editable().unwrap_err();
        assert!(err.to_string().starts_with("invoice A-000001 is issued and cannot be edited"), "{err}");
        assert!(inv.issue("A-000002".into(), DateTime::UNIX_EPOCH, DeviceId::from_uuid(Uuid::nil())).is_err());
    }

    #[test]
    fn zero_rated_lines_need_a_reason_only_to_issue() {
        let mut zero = line(1, "1", "10");
        zero.vat = VatCategory::of(VatCode::Z);
        let inv = invoice(vec![zero]);
        assert!(inv.validate().is_empty(), "a draft may be incomplete");
        assert_eq!(
            inv.validate_for_issue().to_string(),
            "BR-KSA-69: line 1: VAT category Z (zero-rated) needs an exemption reason code such as VATEX-SA-32, which tells ZATCA why no VAT is charged"
        );
    }

    #[test]
    fn notes_need_their_original() {
        let mut inv = invoice(vec![line(1, "1", "10")]);
        inv.kind = InvoiceKind::CreditNote;
        assert_eq!(
            inv.validate().to_string(),
            "BR-KSA-56: a credit note must reference the original invoice it corrects (--original ID)"
        );
        assert_eq!(inv.validate().iter().next().unwrap().rule.as_deref(), Some("BR-KSA-56"));
    }
}
