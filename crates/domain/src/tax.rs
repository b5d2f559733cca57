//! VAT categories and the one function that computes an invoice's totals.
//!
//! Rules (ZATCA / UBL 2.1, as the issue specifies them):
//! - line net = quantity × unit price − line discount, rounded half away from zero to the
//!   currency's two decimals;
//! - the document discount belongs to one VAT category and lowers that category's taxable amount;
//! - VAT is computed once per (category, rate) on that category's taxable amount, not summed
//!   from per-line VAT, so a long invoice never accumulates per-line rounding;
//! - every total is the exact sum of its parts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::id::LineId;
use crate::invoice::Invoice;
use crate::money::{Amount, Currency, ExchangeRate, Quantity, Rate, round_half_away};

/// ZATCA's VAT category codes (UNTDID 5305 subset used in Saudi Arabia).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub enum VatCode {
    /// Standard rate (15%).
    S,
    /// Zero-rated: taxable at 0%, needs an exemption reason.
    Z,
    /// Exempt from VAT, needs an exemption reason.
    E,
    /// Out of scope of VAT, needs a reason.
    O,
}

impl VatCode {
    pub fn as_str(self) -> &'static str {
        match self {
            VatCode::S => "S",
            VatCode::Z => "Z",
            VatCode::E => "E",
            VatCode::O => "O",
        }
    }

    /// The rate a category carries unless told otherwise.
    pub fn default_rate(self) -> Rate {
        match self {
            VatCode::S => Rate::STANDARD_SAUDI,
            _ => Rate::ZERO,
        }
    }
}

impl fmt::Display for VatCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text given is not one of the four VAT category codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("VAT category must be one of S (standard 15%), Z (zero-rated), E (exempt), O (out of scope) (got {0:?})")]
pub struct VatCodeError(pub String);

impl FromStr for VatCode {
    type Err = VatCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "S" => Ok(VatCode::S),
            "Z" => Ok(VatCode::Z),
            "E" => Ok(VatCode::E),
            "O" => Ok(VatCode::O),
            _ => Err(VatCodeError(s.to_owned())),
        }
    }
}

/// ZATCA's exemption reason codes and their official English texts, by category.
pub const EXEMPTION_REASONS: &[(VatCode, &str, &str)] = &[
    (VatCode::E, "VATEX-SA-29", "Financial services mentioned in Article 29 of the VAT Regulations"),
    (VatCode::E, "VATEX-SA-29-7", "Life insurance services mentioned in Article 29 of the VAT Regulations"),
    (VatCode::E, "VATEX-SA-30", "Real estate transactions mentioned in Article 30 of the VAT Regulations"),
    (VatCode::Z, "VATEX-SA-32", "Export of goods"),
    (VatCode::Z, "VATEX-SA-33", "Export of services"),
    (VatCode::Z, "VATEX-SA-34-1", "The international transport of Goods"),
    (VatCode::Z, "VATEX-SA-34-2", "International transport of passengers"),
    (
        VatCode::Z,
        "VATEX-SA-34-3",
        "Services directly connected and incidental to a Supply of international passenger transport",
    ),
    (VatCode::Z, "VATEX-SA-34-4", "Supply of a qualifying means of transport"),
    (
        VatCode::Z,
        "VATEX-SA-34-5",
        "Any services relating to Goods or passenger transportation, as defined in article twenty five of these Regulations",
    ),
    (VatCode::Z, "VATEX-SA-35", "Medicines and medical equipment"),
    (VatCode::Z, "VATEX-SA-36", "Qualifying metals"),
    (VatCode::Z, "VATEX-SA-EDU", "Private education to citizen"),
    (VatCode::Z, "VATEX-SA-HEA", "Private healthcare to citizen"),
    (VatCode::Z, "VATEX-SA-MLTRY", "Supply of qualified military goods"),
    (VatCode::O, "VATEX-SA-OOS", "Not subject to VAT"),
];

/// Looks up the official text of an exemption reason code, if the code belongs to `code`.
pub fn exemption_text(code: VatCode, reason_code: &str) -> Option<&'static str> {
    EXEMPTION_REASONS
        .iter()
        .find(|(c, r, _)| *c == code && r.eq_ignore_ascii_case(reason_code))
        .map(|(_, _, text)| *text)
}

/// The VAT treatment of a line, an item or a document discount.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct VatCategory {
    pub code: VatCode,
    pub rate: Rate,
    /// ZATCA exemption reason code (`VATEX-SA-…`), required for Z, E and O before issuing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exemption_code: Option<String>,
    /// Exemption reason text printed on the invoice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exemption_reason: Option<String>,
}

impl VatCategory {
    /// Standard-rated at 15%.
    pub fn standard() -> Self {
        Self::of(VatCode::S)
    }

    /// A category with its default rate and, for out-of-scope supplies, the one reason code
    /// ZATCA defines for them.
    pub fn of(code: VatCode) -> Self {
        let (exemption_code, exemption_reason) = match code {
            VatCode::O => {
                (Some("VATEX-SA-OOS".to_owned()), exemption_text(VatCode::O, "VATEX-SA-OOS").map(str::to_owned))
            }
            _ => (None, None),
        };
        Self { code, rate: code.default_rate(), exemption_code, exemption_reason }
    }

    /// A category with an exemption reason code; the official text is filled in when known.
    pub fn with_exemption(code: VatCode, reason_code: &str) -> Self {
        let mut category = Self::of(code);
        category.exemption_code = Some(reason_code.trim().to_ascii_uppercase());
        category.exemption_reason = exemption_text(code, reason_code).map(str::to_owned).or(category.exemption_reason);
        category
    }

    /// Two categories with the same code and rate are taxed together.
    fn group_key(&self) -> (VatCode, Rate) {
        (self.code, self.rate)
    }
}

impl Default for VatCategory {
    fn default() -> Self {
        Self::standard()
    }
}

/// Totals of one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct LineTotal {
    pub line: LineId,
    /// quantity × unit price, rounded.
    pub gross: Amount,
    pub discount: Amount,
    /// gross − discount, rounded once from the exact product.
    pub net: Amount,
    /// This line's share of VAT, for display; document VAT is computed per category.
    pub vat: Amount,
}

/// Taxable amount and VAT of one (category, rate) group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct CategoryTotal {
    pub code: VatCode,
    pub rate: Rate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exemption_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exemption_reason: Option<String>,
    pub taxable: Amount,
    pub vat: Amount,
}

/// Every figure of an invoice, all in its currency unless named otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Totals {
    pub currency: Currency,
    /// Sum of line nets before the document discount.
    pub lines_net: Amount,
    /// Document-level discount.
    pub discount: Amount,
    /// Taxable amount: `lines_net − discount`, equal to the sum of the breakdown's taxable amounts.
    pub net: Amount,
    /// Sum of the breakdown's VAT.
    pub vat: Amount,
    /// `net + vat`.
    pub gross: Amount,
    pub paid: Amount,
    /// `gross − paid`.
    pub due: Amount,
    /// VAT converted to SAR, present when the invoice currency is not SAR (ZATCA requires it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vat_sar: Option<Amount>,
    pub breakdown: Vec<CategoryTotal>,
    pub lines: Vec<LineTotal>,
}

/// Totals could not be computed because an amount is outside what Daftar can represent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invoice totals are too large to compute exactly (limit ±92,233,720,368,547,758.07)")]
pub struct TotalsOverflow;

fn to_amount(value: i128) -> Result<Amount, TotalsOverflow> {
    i64::try_from(value).map(Amount::from_raw).map_err(|_| TotalsOverflow)
}

/// quantity × unit price, exact, in units of 1/(100·1000) of the currency.
fn exact_product(quantity: Quantity, unit_price: Amount) -> i128 {
    i128::from(quantity.raw()) * i128::from(unit_price.raw())
}

/// The exact (unrounded) line net in units of 1/(100·1000), used by tests to bound drift.
pub fn exact_line_net(quantity: Quantity, unit_price: Amount, discount: Amount) -> i128 {
    exact_product(quantity, unit_price) - i128::from(discount.raw()) * i128::from(Quantity::SCALE)
}

/// VAT on `taxable` at `rate`, rounded half away from zero.
pub fn vat_on(taxable: Amount, rate: Rate) -> Amount {
    let scaled = i128::from(taxable.raw()) * i128::from(rate.raw());
    // rate is in basis points of a percent: 1500 = 15.00% = 1500/10000.
    Amount::from_raw(round_half_away(scaled, 10_000) as i64)
}

/// Computes every total of `invoice`. This is the only place Daftar rounds money.
pub fn compute_totals(invoice: &Invoice) -> Result<Totals, TotalsOverflow> {
    let scale = i128::from(Quantity::SCALE);
    let mut lines = Vec::with_capacity(invoice.lines.len());
    // Groups stay in first-seen order so the breakdown reads like the invoice.
    let mut groups: Vec<(VatCategory, i128)> = Vec::new();
    let mut lines_net: i128 = 0;
    for line in &invoice.lines {
        let gross = to_amount(round_half_away(exact_product(line.quantity, line.unit_price), scale))?;
        let net_raw = round_half_away(exact_line_net(line.quantity, line.unit_price, line.discount), scale);
        let net = to_amount(net_raw)?;
        lines_net += net_raw;
        match groups.iter_mut().find(|(c, _)| c.group_key() == line.vat.group_key()) {
            Some((_, taxable)) => *taxable += net_raw,
            None => groups.push((line.vat.clone(), net_raw)),
        }
        lines.push(LineTotal { line: line.id, gross, discount: line.discount, net, vat: vat_on(net, line.vat.rate) });
    }
    let mut discount: i128 = 0;
    if let Some(doc_discount) = &invoice.discount {
        discount = i128::from(doc_discount.amount.raw());
        match groups.iter_mut().find(|(c, _)| c.group_key() == doc_discount.vat.group_key()) {
            Some((_, taxable)) => *taxable -= discount,
            None => groups.push((doc_discount.vat.clone(), -discount)),
        }
    }
    let mut breakdown = Vec::with_capacity(groups.len());
    let mut vat_total: i128 = 0;
    let mut net_total: i128 = 0;
    for (category, taxable) in groups {
        let taxable = to_amount(taxable)?;
        let vat = vat_on(taxable, category.rate);
        vat_total += i128::from(vat.raw());
        net_total += i128::from(taxable.raw());
        breakdown.push(CategoryTotal {
            code: category.code,
            rate: category.rate,
            exemption_code: category.exemption_code,
            exemption_reason: category.exemption_reason,
            taxable,
            vat,
        });
    }
    let paid: i128 = invoice.payments.iter().map(|p| i128::from(p.amount.raw())).sum();
    let gross = net_total + vat_total;
    let vat = to_amount(vat_total)?;
    let vat_sar = match (&invoice.exchange_rate, invoice.currency.is_sar()) {
        (Some(rate), false) => Some(to_sar(vat, *rate)?),
        _ => None,
    };
    Ok(Totals {
        currency: invoice.currency,
        lines_net: to_amount(lines_net)?,
        discount: to_amount(discount)?,
        net: to_amount(net_total)?,
        vat,
        gross: to_amount(gross)?,
        paid: to_amount(paid)?,
        due: to_amount(gross - paid)?,
        vat_sar,
        breakdown,
        lines,
    })
}

/// Converts an amount in the document currency to SAR at `rate`, rounded half away from zero.
pub fn to_sar(amount: Amount, rate: ExchangeRate) -> Result<Amount, TotalsOverflow> {
    let scaled = i128::from(amount.raw()) * i128::from(rate.raw());
    to_amount(round_half_away(scaled, i128::from(ExchangeRate::SCALE)))
}
