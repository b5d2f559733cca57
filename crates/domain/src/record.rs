//! What every stored record shares: deletion as data.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::DeviceId;

/// Marks a record as deleted. Deletion is an ordinary change: it syncs like any edit, shows the
/// record in the trash, and restore clears it. Nothing is removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Tombstone {
    /// The device that deleted the record.
    pub by: DeviceId,
    pub at: DateTime<Utc>,
}
