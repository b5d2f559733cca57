//! Field-level differences between two versions of a document.

use std::collections::{BTreeMap, HashMap};

use daftar_domain::DocumentId;
use serde::Serialize;
use serde_json::Value as Json;

use crate::document;
use crate::error::{Result, StoreError};
use crate::store::{Store, heads_at, load_doc};

/// One field that differs between two versions. Lines are named by their position (`lines[2]`)
/// but matched by identity, so removing line 1 does not show every later line as changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct FieldChange {
    pub path: String,
    /// `None` when the field did not exist in the earlier version.
    pub before: Option<Json>,
    /// `None` when the field does not exist in the later version.
    pub after: Option<Json>,
}

fn record_id(value: &Json) -> Option<&str> {
    value.as_object()?.get("id")?.as_str()
}

/// Flattens `value` into leaf paths. Records in lists are keyed by `#id` so they match across
/// versions; `positions` remembers each id's 1-based position for display.
fn flatten(value: &Json, path: String, out: &mut BTreeMap<String, Json>, positions: &mut HashMap<String, usize>) {
    match value {
        Json::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let child_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                flatten(child, child_path, out, positions);
            }
        }
        Json::Array(items) if !items.is_empty() => {
            let keyed = items.iter().all(|v| record_id(v).is_some());
            for (index, item) in items.iter().enumerate() {
                let segment = match record_id(item).filter(|_| keyed) {
                    Some(id) => {
                        positions.insert(id.to_owned(), index + 1);
                        format!("#{id}")
                    }
                    None => (index + 1).to_string(),
                };
                flatten(item, format!("{path}[{segment}]"), out, positions);
            }
        }
        leaf => {
            out.insert(path, leaf.clone());
        }
    }
}

fn display_path(path: &str, after: &HashMap<String, usize>, before: &HashMap<String, usize>) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(start) = rest.find("[#") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find(']').map(|e| start + e).unwrap_or(rest.len());
        let id = &rest[start + 2..end];
        let position = after.get(id).or_else(|| before.get(id)).copied().unwrap_or(0);
        out.push_str(&format!("[{position}]"));
        rest = rest.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// Differences between two JSON documents, in path order.
pub(crate) fn diff_json(before: &Json, after: &Json) -> Vec<FieldChange> {
    let (mut old, mut new) = (BTreeMap::new(), BTreeMap::new());
    let (mut old_positions, mut new_positions) = (HashMap::new(), HashMap::new());
    flatten(before, String::new(), &mut old, &mut old_positions);
    flatten(after, String::new(), &mut new, &mut new_positions);
    let mut paths: Vec<&String> = old.keys().chain(new.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| old.get(*p) != new.get(*p))
        .map(|p| FieldChange {
            path: display_path(p, &new_positions, &old_positions),
            before: old.get(p).cloned(),
            after: new.get(p).cloned(),
        })
        .collect()
}

impl Store {
    /// The fields that differ between versions `from` and `to` (1-based) of a document.
    pub fn diff(&self, id: DocumentId, from: usize, to: usize) -> Result<Vec<FieldChange>> {
        self.read(|conn| {
            let loaded =
                load_doc(conn, id)?.ok_or_else(|| StoreError::NotFound { kind: "document", id: id.to_string() })?;
            let changes = loaded.doc.get_changes(&[]);
            for version in [from, to] {
                if version == 0 || version > changes.len() {
                    return Err(StoreError::NoSuchVersion {
                        kind: loaded.kind.as_str(),
                        id: id.to_string(),
                        version,
                        count: changes.len(),
                    });
                }
            }
            let before = document::to_json(&loaded.doc, Some(&heads_at(&changes, from)));
            let after = document::to_json(&loaded.doc, Some(&heads_at(&changes, to)));
            Ok(diff_json(&before, &after))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_match_by_identity_not_position() {
        let before = json!({"lines": [{"id": "a", "q": "1"}, {"id": "b", "q": "2"}], "notes": "x"});
        let after = json!({"lines": [{"id": "b", "q": "3"}], "notes": "x"});
        let changes = diff_json(&before, &after);
        let paths: Vec<_> = changes.iter().map(|c| (c.path.as_str(), c.after.clone())).collect();
        assert_eq!(
            paths,
            vec![("lines[1].id", None), ("lines[1].q", None), ("lines[1].q", Some(json!("3")))],
            "line a was removed (shown at its old position 1) and line b (now line 1) changed"
        );
    }
}
