//! Invoice number series. Each device gets its own prefix when it is set up, so two devices
//! issuing offline never produce the same number, and numbers are gapless within a series.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A device's invoice-number prefix: 1 to 8 ASCII letters or digits, upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(try_from = "String", into = "String")]
pub struct Series(#[cfg_attr(feature = "ts", ts(type = "string"))] String);

/// The series prefix given is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("series prefix must be 1 to 8 letters or digits, such as A or HQ1 (got {0:?})")]
pub struct SeriesError(pub String);

impl Series {
    /// The series of a device added after the first: `prefix` and the last four hex digits of
    /// its id, so devices never share one without coordinating (`J` joined, `R` recovered from
    /// a relay, `B` restored from a backup).
    pub fn for_device(prefix: char, device: crate::DeviceId) -> Result<Series, SeriesError> {
        let digits = device.to_string().replace('-', "");
        format!("{prefix}{}", digits[digits.len() - 4..].to_ascii_uppercase()).parse()
    }

    /// The number with sequence `n` (1-based) in this series: `A-000042`.
    pub fn number(&self, n: u64) -> String {
        format!("{}-{n:06}", self.0)
    }

    /// The sequence of `number` if it belongs to this series.
    pub fn sequence_of(&self, number: &str) -> Option<u64> {
        let rest = number.strip_prefix(self.0.as_str())?.strip_prefix('-')?;
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        rest.parse().ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Series {
    type Err = SeriesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        if upper.is_empty() || upper.len() > 8 || !upper.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(SeriesError(s.to_owned()));
        }
        Ok(Series(upper))
    }
}

impl TryFrom<String> for Series {
    type Error = SeriesError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Series> for String {
    fn from(series: Series) -> String {
        series.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_through_their_series() {
        let series: Series = "hq1".parse().unwrap();
        assert_eq!(series.number(42), "HQ1-000042");
        assert_eq!(series.sequence_of("HQ1-000042"), Some(42));
        assert_eq!(series.sequence_of("HQ-000042"), None, "another series' number");
        assert_eq!(series.sequence_of("HQ1-"), None);
    }

    #[test]
    fn bad_prefixes_are_refused() {
        for bad in ["", "A-B", "TOOLONGPREFIX", "ب"] {
            assert!(bad.parse::<Series>().is_err(), "{bad:?}");
        }
    }
}
