//! Mapping between serde values and Automerge documents, and loading/saving document rows.
//!
//! The mapping is the principled alternative to autosurgeon that lets the domain crate stay free
//! of Automerge: a record is serialised to JSON (amounts are decimal strings, so there are no
//! floats) and *reconciled* into the document, writing only what differs:
//! - maps are compared key by key; unchanged scalars are not rewritten (a repeated `put` of the
//!   same value would grow history and create false conflicts);
//! - lists of records that carry an `"id"` are matched by id, so that two devices editing
//!   different lines of one invoice merge cleanly and a removed line is a delete, not a rewrite;
//! - other lists are compared by position.
//!
//! Reading is the reverse: [`Automerge::hydrate`] to a tree, converted to JSON and deserialised.

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ChangeHash, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use daftar_domain::{DeviceId, DocumentId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

use crate::error::{Result, StoreError};

pub(crate) type DocResult<T> = std::result::Result<T, automerge::AutomergeError>;

/// Reconciles `value` (a JSON object) into the root map of the transaction's document.
pub(crate) fn reconcile_root<T: Transactable + ReadDoc>(tx: &mut T, value: &Json) -> DocResult<()> {
    match value {
        Json::Object(map) => reconcile_map(tx, &ROOT, map),
        _ => panic!("documents are JSON objects at the root"),
    }
}

fn to_scalar(value: &Json) -> ScalarValue {
    match value {
        Json::Null => ScalarValue::Null,
        Json::Bool(b) => ScalarValue::Boolean(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                ScalarValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                ScalarValue::Uint(u)
            } else {
                // The domain never serialises floats; keep the value rather than lose it.
                ScalarValue::F64(n.as_f64().unwrap_or_default())
            }
        }
        Json::String(s) => ScalarValue::Str(s.as_str().into()),
        Json::Array(_) | Json::Object(_) => unreachable!("objects are not scalars"),
    }
}

/// Writes `new` into a map that was created in this transaction and is still empty: no reads.
fn fill_map<T: Transactable>(tx: &mut T, obj: &automerge::ObjId, new: &Map<String, Json>) -> DocResult<()> {
    for (key, value) in new {
        match value {
            Json::Null => {}
            Json::Object(map) => {
                let child = tx.put_object(obj, key.as_str(), ObjType::Map)?;
                fill_map(tx, &child, map)?;
            }
            Json::Array(items) => {
                let child = tx.put_object(obj, key.as_str(), ObjType::List)?;
                fill_list(tx, &child, items)?;
            }
            scalar => tx.put(obj, key.as_str(), to_scalar(scalar))?,
        }
    }
    Ok(())
}

/// Writes `new` into a list created in this transaction: no reads.
fn fill_list<T: Transactable>(tx: &mut T, obj: &automerge::ObjId, new: &[Json]) -> DocResult<()> {
    for (index, value) in new.iter().enumerate() {
        insert_value(tx, obj, index, value)?;
    }
    Ok(())
}

/// Writes a record into a new, empty document (the fast path of creating a record).
pub(crate) fn fill_root<T: Transactable>(tx: &mut T, value: &Json) -> DocResult<()> {
    match value {
        Json::Object(map) => fill_map(tx, &ROOT, map),
        _ => panic!("documents are JSON objects at the root"),
    }
}

/// Reconciles a map that already exists. A JSON `null` is stored as an absent key (every
/// optional field of the domain deserialises a missing key as `None`), which keeps documents
/// small and makes "set to nothing" a delete.
fn reconcile_map<T: Transactable + ReadDoc>(
    tx: &mut T,
    obj: &automerge::ObjId,
    new: &Map<String, Json>,
) -> DocResult<()> {
    let existing: Vec<String> = tx.keys(obj).collect();
    for key in existing.iter().filter(|k| new.get(k.as_str()).is_none_or(Json::is_null)) {
        tx.delete(obj, key.as_str())?;
    }
    for (key, value) in new {
        if value.is_null() {
            continue;
        }
        let current = tx.get(obj, key.as_str())?.map(|(v, id)| (v.to_owned(), id));
        match value {
            Json::Object(map) => match current {
                Some((Value::Object(ObjType::Map), id)) => reconcile_map(tx, &id, map)?,
                _ => {
                    let child = tx.put_object(obj, key.as_str(), ObjType::Map)?;
                    fill_map(tx, &child, map)?;
                }
            },
            Json::Array(items) => match current {
                Some((Value::Object(ObjType::List), id)) => reconcile_list(tx, &id, items)?,
                _ => {
                    let child = tx.put_object(obj, key.as_str(), ObjType::List)?;
                    fill_list(tx, &child, items)?;
                }
            },
            scalar => {
                let wanted = to_scalar(scalar);
                let same = matches!(&current, Some((Value::Scalar(s), _)) if s.as_ref() == &wanted);
                if !same {
                    tx.put(obj, key.as_str(), wanted)?;
                }
            }
        }
    }
    Ok(())
}

fn record_id(value: &Json) -> Option<&str> {
    value.as_object()?.get("id")?.as_str()
}

fn element_id<T: ReadDoc>(tx: &T, list: &automerge::ObjId, index: usize) -> DocResult<Option<String>> {
    Ok(match tx.get(list, index)? {
        Some((Value::Object(ObjType::Map), id)) => match tx.get(&id, "id")? {
            Some((Value::Scalar(s), _)) => s.to_str().map(str::to_owned),
            _ => None,
        },
        _ => None,
    })
}

fn insert_value<T: Transactable>(tx: &mut T, list: &automerge::ObjId, index: usize, value: &Json) -> DocResult<()> {
    match value {
        Json::Object(map) => {
            let child = tx.insert_object(list, index, ObjType::Map)?;
            fill_map(tx, &child, map)
        }
        Json::Array(items) => {
            let child = tx.insert_object(list, index, ObjType::List)?;
            fill_list(tx, &child, items)
        }
        scalar => tx.insert(list, index, to_scalar(scalar)),
    }
}

fn reconcile_list<T: Transactable + ReadDoc>(tx: &mut T, list: &automerge::ObjId, new: &[Json]) -> DocResult<()> {
    let keyed = !new.is_empty() && new.iter().all(|v| record_id(v).is_some());
    if keyed {
        // Delete elements whose id is gone (from the end, so indexes stay valid).
        let wanted: std::collections::HashSet<&str> = new.iter().filter_map(record_id).collect();
        for index in (0..tx.length(list)).rev() {
            let keep = element_id(tx, list, index)?.is_some_and(|id| wanted.contains(id.as_str()));
            if !keep {
                tx.delete(list, index)?;
            }
        }
        for (index, value) in new.iter().enumerate() {
            let id = record_id(value).unwrap_or_default();
            let here = if index < tx.length(list) { element_id(tx, list, index)? } else { None };
            if here.as_deref() == Some(id) {
                if let (Some((_, child)), Json::Object(map)) = (tx.get(list, index)?, value) {
                    reconcile_map(tx, &child, map)?;
                }
                continue;
            }
            // The element moved or is new: remove any later copy, insert it here.
            for later in (index..tx.length(list)).rev() {
                if element_id(tx, list, later)?.as_deref() == Some(id) {
                    tx.delete(list, later)?;
                }
            }
            insert_value(tx, list, index, value)?;
        }
        return Ok(());
    }
    let length = tx.length(list);
    for index in (new.len()..length).rev() {
        tx.delete(list, index)?;
    }
    for (index, value) in new.iter().enumerate() {
        if index >= tx.length(list) {
            insert_value(tx, list, index, value)?;
            continue;
        }
        let current = tx.get(list, index)?.map(|(v, id)| (v.to_owned(), id));
        match (value, current) {
            (Json::Object(map), Some((Value::Object(ObjType::Map), id))) => reconcile_map(tx, &id, map)?,
            (Json::Array(items), Some((Value::Object(ObjType::List), id))) => reconcile_list(tx, &id, items)?,
            (Json::Object(_) | Json::Array(_), _) => {
                tx.delete(list, index)?;
                insert_value(tx, list, index, value)?;
            }
            (scalar, current) => {
                let wanted = to_scalar(scalar);
                let same = matches!(&current, Some((Value::Scalar(s), _)) if s.as_ref() == &wanted);
                if !same {
                    if matches!(current, Some((Value::Object(_), _))) {
                        tx.delete(list, index)?;
                        tx.insert(list, index, wanted)?;
                    } else {
                        tx.put(list, index, wanted)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn hydrated_to_json(value: &automerge::hydrate::Value) -> Json {
    use automerge::hydrate::Value as H;
    match value {
        H::Scalar(s) => match s {
            ScalarValue::Str(s) => Json::String(s.to_string()),
            ScalarValue::Int(i) => Json::from(*i),
            ScalarValue::Uint(u) => Json::from(*u),
            ScalarValue::F64(f) => serde_json::Number::from_f64(*f).map(Json::Number).unwrap_or(Json::Null),
            ScalarValue::Counter(c) => Json::from(i64::from(c)),
            ScalarValue::Timestamp(t) => Json::from(*t),
            ScalarValue::Boolean(b) => Json::Bool(*b),
            ScalarValue::Bytes(b) => Json::String(hex::encode(b)),
            ScalarValue::Null | ScalarValue::Unknown { .. } => Json::Null,
        },
        H::Map(map) => {
            let mut out = Map::new();
            for (key, entry) in map.iter() {
                out.insert(key.clone(), hydrated_to_json(&entry.value));
            }
            Json::Object(out)
        }
        H::List(list) => Json::Array(list.iter().map(|e| hydrated_to_json(&e.value)).collect()),
        H::Text(text) => Json::String(String::from(text)),
    }
}

/// The document's content as JSON, now or as of `heads`.
pub(crate) fn to_json(doc: &Automerge, heads: Option<&[ChangeHash]>) -> Json {
    hydrated_to_json(&doc.hydrate(heads))
}

/// Deserialises a record from the document (now or as of `heads`).
pub(crate) fn read_record<T: DeserializeOwned>(
    id: DocumentId,
    doc: &Automerge,
    heads: Option<&[ChangeHash]>,
) -> Result<T> {
    serde_json::from_value(to_json(doc, heads))
        .map_err(|e| StoreError::Document { id, detail: format!("its content does not match the expected shape: {e}") })
}

pub(crate) fn to_json_value<T: Serialize>(record: &T) -> Json {
    serde_json::to_value(record).expect("domain records serialise to JSON")
}

/// The Automerge actor for changes made on this device: the device id's 16 bytes.
///
/// One actor per device is safe because every write loads the latest document under the
/// database write lock, so a device's sequence numbers never fork.
pub(crate) fn actor_for(device: DeviceId) -> ActorId {
    ActorId::from(device.as_bytes().as_slice())
}

/// The device that made a change, if its actor is a device id.
pub(crate) fn device_of(actor: &ActorId) -> Option<DeviceId> {
    let bytes: [u8; 16] = actor.to_bytes().try_into().ok()?;
    Some(DeviceId::from_uuid(uuid::Uuid::from_bytes(bytes)))
}

/// Concatenated change hashes, as stored in `documents.heads`.
pub(crate) fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

pub(crate) fn decode_heads(bytes: &[u8]) -> Vec<ChangeHash> {
    bytes.chunks_exact(32).map(|c| ChangeHash(c.try_into().expect("32-byte chunk"))).collect()
}
