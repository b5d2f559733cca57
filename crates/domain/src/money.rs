//! Exact decimal quantities: money in minor units, quantities in thousandths, rates in basis
//! points. No floating point: text is parsed digit by digit and refused when it carries more
//! precision than the type can hold, rather than silently rounded.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Text could not be read as the decimal number a field needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("{what} must be a decimal number such as {example} (got {got:?})")]
    NotANumber { what: &'static str, example: &'static str, got: String },
    #[error("{what} allows at most {places} decimal places (got {got:?})")]
    TooPrecise { what: &'static str, places: u32, got: String },
    #[error("{what} is too large (got {got:?})")]
    TooLarge { what: &'static str, got: String },
}

/// Parses `text` as a decimal with at most `places` fractional digits, returning it scaled by
/// 10^places. Arabic-Indic digits and the Arabic decimal separator are accepted, since staff type
/// amounts on Arabic keyboards.
fn parse_scaled(text: &str, places: u32, what: &'static str, example: &'static str) -> Result<i64, DecimalError> {
    let not_a_number = || DecimalError::NotANumber { what, example, got: text.to_owned() };
    let normalised: String = text
        .trim()
        .chars()
        .map(|c| match c {
            '\u{0660}'..='\u{0669}' => char::from(b'0' + (c as u32 - 0x0660) as u8),
            '\u{06F0}'..='\u{06F9}' => char::from(b'0' + (c as u32 - 0x06F0) as u8),
            '\u{066B}' => '.',
            other => other,
        })
        .collect();
    let (negative, digits) = match normalised.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, normalised.strip_prefix('+').unwrap_or(&normalised)),
    };
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, f),
        None => (digits, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return Err(not_a_number());
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_number());
    }
    if digits.ends_with('.') && fraction.is_empty() && whole.is_empty() {
        return Err(not_a_number());
    }
    let significant_fraction = fraction.trim_end_matches('0');
    if significant_fraction.len() > places as usize {
        return Err(DecimalError::TooPrecise { what, places, got: text.to_owned() });
    }
    let too_large = || DecimalError::TooLarge { what, got: text.to_owned() };
    let mut value: i128 = 0;
    for b in whole.bytes() {
        value = value * 10 + i128::from(b - b'0');
        if value > i128::from(i64::MAX) {
            return Err(too_large());
        }
    }
    let mut padded = significant_fraction.to_owned();
    while padded.len() < places as usize {
        padded.push('0');
    }
    for b in padded.bytes() {
        value = value * 10 + i128::from(b - b'0');
    }
    if negative {
        value = -value;
    }
    i64::try_from(value).map_err(|_| too_large())
}

fn format_scaled(f: &mut fmt::Formatter<'_>, value: i64, places: u32, trim: bool) -> fmt::Result {
    let scale = 10u64.pow(places);
    let abs = value.unsigned_abs();
    let sign = if value < 0 { "-" } else { "" };
    let whole = abs / scale;
    let fraction = abs % scale;
    if places == 0 {
        return write!(f, "{sign}{whole}");
    }
    let mut fraction_text = format!("{fraction:0width$}", width = places as usize);
    if trim {
        while fraction_text.ends_with('0') {
            fraction_text.pop();
        }
        if fraction_text.is_empty() {
            return write!(f, "{sign}{whole}");
        }
    }
    write!(f, "{sign}{whole}.{fraction_text}")
}

/// Rounds `numerator / denominator` to the nearest integer, halves away from zero.
///
/// This is the one rounding rule of Daftar's tax computation (ZATCA's examples round half up on
/// magnitudes, which is half away from zero for negative amounts such as credit-note lines).
/// `denominator` must be positive.
pub fn round_half_away(numerator: i128, denominator: i128) -> i128 {
    assert!(denominator > 0, "rounding denominator must be positive");
    let quotient = numerator / denominator;
    let remainder = numerator % denominator;
    if remainder.abs() * 2 >= denominator { quotient + numerator.signum() } else { quotient }
}

macro_rules! decimal_type {
    ($(#[$doc:meta])* $name:ident, $places:expr, $what:literal, $example:literal, trim = $trim:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        #[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
        pub struct $name(#[cfg_attr(feature = "ts", ts(type = "string"))] i64);

        impl $name {
            /// Number of decimal places this type holds exactly.
            pub const PLACES: u32 = $places;
            /// 10^PLACES: how many raw units make one whole unit.
            pub const SCALE: i64 = 10i64.pow($places);
            pub const ZERO: Self = Self(0);

            /// Builds from the raw scaled integer (for example minor units for [`Amount`]).
            pub const fn from_raw(raw: i64) -> Self {
                Self(raw)
            }

            /// The raw scaled integer.
            pub const fn raw(self) -> i64 {
                self.0
            }

            pub fn is_zero(self) -> bool {
                self.0 == 0
            }

            pub fn is_negative(self) -> bool {
                self.0 < 0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                format_scaled(f, self.0, $places, $trim)
            }
        }

        impl FromStr for $name {
            type Err = DecimalError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_scaled(s, $places, $what, $example).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

decimal_type!(
    /// An amount of money in minor units (1/100 of the currency unit). Its currency is carried by
    /// the document that holds it, or by [`Money`].
    Amount, 2, "amount", "115.00", trim = false
);
decimal_type!(
    /// A quantity with up to three decimals (for example 2.125 kg).
    Quantity, 3, "quantity", "2.5", trim = true
);
decimal_type!(
    /// A percentage with up to two decimals, stored in basis points (15% is 1500).
    Rate, 2, "rate", "15", trim = true
);
decimal_type!(
    /// Units of SAR per one unit of the document currency, with up to six decimals.
    ExchangeRate, 6, "exchange rate", "3.75", trim = true
);

impl Amount {
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }
}

impl Rate {
    /// The standard Saudi VAT rate.
    pub const STANDARD_SAUDI: Rate = Rate(1500);
}

/// An ISO 4217 currency code among those Daftar can invoice in.
///
/// Only currencies with two minor digits are accepted for now, because [`Amount`] holds exactly
/// two decimals; invoicing in KWD, BHD, OMR or JOD (three decimals) is refused with a clear error
/// rather than rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Currency(#[cfg_attr(feature = "ts", ts(type = "string"))] [u8; 3]);

/// Currencies whose minor unit is not 1/100; listed so the error can say why they are refused.
const NOT_TWO_DECIMALS: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND", "JPY", "KRW"];

/// The currency code given is malformed or not supported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CurrencyError {
    #[error("currency must be a three-letter ISO 4217 code such as SAR or USD (got {0:?})")]
    Malformed(String),
    #[error(
        "currency {0} does not have two decimal places; Daftar invoices only in two-decimal currencies such as SAR, USD or EUR"
    )]
    Unsupported(String),
}

impl Currency {
    pub const SAR: Currency = Currency(*b"SAR");

    pub fn code(&self) -> &str {
        // The constructor admits only ASCII uppercase letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    pub fn is_sar(&self) -> bool {
        *self == Self::SAR
    }
}

impl Default for Currency {
    fn default() -> Self {
        Self::SAR
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = CurrencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        let bytes: [u8; 3] = upper
            .as_bytes()
            .try_into()
            .ok()
            .filter(|b: &[u8; 3]| b.iter().all(u8::is_ascii_uppercase))
            .ok_or_else(|| CurrencyError::Malformed(s.to_owned()))?;
        if NOT_TWO_DECIMALS.contains(&upper.as_str()) {
            return Err(CurrencyError::Unsupported(upper));
        }
        Ok(Currency(bytes))
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An amount together with its currency, for values that travel alone (totals, payments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Money {
    pub amount: Amount,
    pub currency: Currency,
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_exactly_and_print_two_decimals() {
        assert_eq!("115".parse::<Amount>().unwrap().raw(), 11500);
        assert_eq!("115.5".parse::<Amount>().unwrap().to_string(), "115.50");
        assert_eq!("-0.05".parse::<Amount>().unwrap().to_string(), "-0.05");
        assert_eq!("1.250".parse::<Amount>().unwrap().raw(), 125, "trailing zeros are not precision");
        assert_eq!("١٢٣٫٤٥".parse::<Amount>().unwrap().raw(), 12345, "Arabic-Indic digits");
    }

    #[test]
    fn amounts_refuse_what_they_cannot_hold() {
        assert_eq!(
            "1.005".parse::<Amount>().unwrap_err().to_string(),
            "amount allows at most 2 decimal places (got \"1.005\")"
        );
        for bad in ["", "abc", "1e5", "1.2.3", "--1", "1,5", ".", "NaN"] {
            assert!(bad.parse::<Amount>().is_err(), "{bad:?} must be refused");
        }
        assert!(matches!("99999999999999999999".parse::<Amount>(), Err(DecimalError::TooLarge { .. })));
    }

    #[test]
    fn quantities_print_without_trailing_zeros() {
        assert_eq!("-2".parse::<Quantity>().unwrap().to_string(), "-2");
        assert_eq!("2.500".parse::<Quantity>().unwrap().to_string(), "2.5");
        assert_eq!("0.125".parse::<Quantity>().unwrap().raw(), 125);
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(round_half_away(5, 10), 1);
        assert_eq!(round_half_away(-5, 10), -1);
        assert_eq!(round_half_away(4, 10), 0);
        assert_eq!(round_half_away(-14, 10), -1);
        assert_eq!(round_half_away(15, 10), 2);
        assert_eq!(round_half_away(-15, 10), -2);
    }

    #[test]
    fn currencies_are_validated() {
        assert_eq!("usd".parse::<Currency>().unwrap().code(), "USD");
        assert!(matches!("KWD".parse::<Currency>(), Err(CurrencyError::Unsupported(_))));
        assert!(matches!("RIYAL".parse::<Currency>(), Err(CurrencyError::Malformed(_))));
    }

    #[test]
    fn amounts_serialise_as_strings() {
        let json = serde_json::to_string(&Amount::from_raw(11500)).unwrap();
        assert_eq!(json, "\"115.00\"");
        assert!(serde_json::from_str::<Amount>("115.0").is_err(), "numbers are not accepted");
    }
}
