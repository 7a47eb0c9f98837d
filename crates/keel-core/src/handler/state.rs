//! Per-entity state: ordered key-value pairs per (namespace, object type,
//! object key), read and written by handlers inside their jobs (writes
//! commit with the attempt) and from outside through the API. Every key
//! has a version, never reused within its object, for `If-Match`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{Error, ErrorCode};

/// A key's bytes, at most.
pub const MAX_KEY_BYTES: usize = 1024;
/// A value's JSON bytes, at most (413 beyond).
pub const MAX_VALUE_BYTES: usize = 256 << 10;
/// An object's keys and values together, at most (507 beyond).
pub const MAX_OBJECT_BYTES: u64 = 16 << 20;
/// Operations in one batch (from outside, or one attempt's writes).
pub const MAX_BATCH: usize = 100;
/// Entries one list answers, at most.
pub const MAX_LIST: u32 = 1000;
const MAX_TYPE_BYTES: usize = 128;
const MAX_OBJECT_KEY_BYTES: usize = 256;

/// The entity a job works on and whose state it keeps.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectRef {
    #[serde(rename = "type")]
    pub kind: String,
    pub key: String,
}

impl ObjectRef {
    pub fn new(kind: &str, key: &str) -> Result<ObjectRef, Error> {
        let object = ObjectRef {
            kind: kind.to_owned(),
            key: key.to_owned(),
        };
        object.check()?;
        Ok(object)
    }

    /// A type is a name (`a-z A-Z 0-9 - _ .`, up to 128); a key is 1 to 256
    /// bytes without control characters.
    pub fn check(&self) -> Result<(), Error> {
        let name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if self.kind.is_empty() || self.kind.len() > MAX_TYPE_BYTES || !self.kind.chars().all(name)
        {
            return Err(Error::invalid(format!(
                "object type {:?} must be 1 to {MAX_TYPE_BYTES} characters of a-z, A-Z, 0-9, '-', '_' or '.'",
                self.kind
            )));
        }
        if self.key.is_empty()
            || self.key.len() > MAX_OBJECT_KEY_BYTES
            || self.key.chars().any(char::is_control)
        {
            return Err(Error::invalid(format!(
                "object key must be 1 to {MAX_OBJECT_KEY_BYTES} bytes without control characters"
            )));
        }
        Ok(())
    }

    /// The ordering key its jobs share: one at a time per object.
    pub fn ordering_key(&self) -> String {
        format!("keel.object:{}/{}", self.kind, self.key)
    }

    /// The object a job names, from its tags (`TYPE_TAG`, `KEY_TAG`).
    pub fn from_tags(tags: &std::collections::BTreeMap<String, String>) -> Option<ObjectRef> {
        Some(ObjectRef {
            kind: tags.get(TYPE_TAG)?.clone(),
            key: tags.get(KEY_TAG)?.clone(),
        })
    }
}

/// The tags a job that names an object carries it in.
pub const TYPE_TAG: &str = "keel.object.type";
pub const KEY_TAG: &str = "keel.object.key";

/// A stored pair.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StateEntry {
    pub key: String,
    #[schema(value_type = serde_json::Value)]
    pub value: Box<RawValue>,
    pub version: u64,
}

impl PartialEq for StateEntry {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
            && self.value.get() == other.value.get()
            && self.version == other.version
    }
}

/// One write: a put (`value`) or a delete (none), optionally only if the
/// key is at `if_version` (0: only if absent).
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateOp {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub value: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_version: Option<u64>,
}

impl StateOp {
    /// The key's and value's bounds.
    pub fn check(&self) -> Result<(), Error> {
        check_key(&self.key)?;
        match &self.value {
            Some(v) if v.get().len() > MAX_VALUE_BYTES => Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the value of {:?} is {} bytes; at most {MAX_VALUE_BYTES}",
                    self.key,
                    v.get().len()
                ),
            )),
            _ => Ok(()),
        }
    }
}

pub fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(Error::new(
            if key.is_empty() {
                ErrorCode::InvalidRequest
            } else {
                ErrorCode::PayloadTooLarge
            },
            format!("a state key must be 1 to {MAX_KEY_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A batch's bound, checked before any store sees it.
pub fn check_batch(ops: &[StateOp]) -> Result<(), Error> {
    if ops.len() > MAX_BATCH {
        return Err(Error::new(
            ErrorCode::BatchTooLarge,
            format!(
                "{} state operations; at most {MAX_BATCH} at once",
                ops.len()
            ),
        ));
    }
    ops.iter().try_for_each(StateOp::check)
}

/// The bytes an entry counts against its object's bound.
pub fn entry_bytes(key: &str, value: &RawValue) -> u64 {
    (key.len() + value.get().len()) as u64
}

/// 507: the write would take the object past its bound.
pub fn object_full(object: &ObjectRef, would_hold: u64) -> Error {
    Error::new(
        ErrorCode::StorageFull,
        format!(
            "object {}/{} would hold {would_hold} bytes of state; at most {MAX_OBJECT_BYTES}",
            object.kind, object.key
        ),
    )
}

/// 412: an `If-Match` (or `if_version`) that is not the key's version.
pub fn version_mismatch(key: &str, wanted: u64, current: Option<u64>) -> Error {
    let now = current.map_or("absent".to_owned(), |v| format!("at version {v}"));
    Error::new(
        ErrorCode::VersionMismatch,
        format!("state key {key:?} is {now}, not at version {wanted}"),
    )
}

/// Which entries a list reads: a prefix, or a `[start, end)` range, after
/// a cursor (the last key of the previous page).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct StateQuery {
    pub prefix: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub after: Option<String>,
    pub limit: u32,
}

impl StateQuery {
    /// The lowest key to read from (exclusive when it is the cursor) and
    /// the first key past the range.
    pub fn bounds(&self) -> (Option<(&str, bool)>, Option<String>) {
        let from = match (&self.after, &self.prefix, &self.start) {
            (Some(after), _, _) => Some((after.as_str(), false)),
            (None, Some(p), _) => Some((p.as_str(), true)),
            (None, None, Some(s)) => Some((s.as_str(), true)),
            (None, None, None) => None,
        };
        let end = match (&self.prefix, &self.end) {
            (Some(p), _) => prefix_end(p),
            (None, Some(e)) => Some(e.clone()),
            (None, None) => None,
        };
        (from, end)
    }

    /// Whether `key` is inside the range (for filtering a page).
    pub fn contains(&self, key: &str) -> bool {
        self.prefix
            .as_ref()
            .is_none_or(|p| key.starts_with(p.as_str()))
            && self.start.as_ref().is_none_or(|s| key >= s.as_str())
            && self.end.as_ref().is_none_or(|e| key < e.as_str())
            && self.after.as_ref().is_none_or(|a| key > a.as_str())
    }
}

/// The least string above every string starting with `prefix`, if any.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_checked_and_order_their_jobs() {
        let o = ObjectRef::new("customer", "c-42").unwrap();
        assert_eq!(o.ordering_key(), "keel.object:customer/c-42");
        assert!(ObjectRef::new("", "k").is_err());
        assert!(ObjectRef::new("a/b", "k").is_err());
        assert!(ObjectRef::new("t", "").is_err());
        assert!(ObjectRef::new("t", "a\nb").is_err());
        assert!(ObjectRef::new("t", &"k".repeat(257)).is_err());
    }

    #[test]
    fn values_and_keys_past_their_bounds_are_413() {
        let big = RawValue::from_string(format!("\"{}\"", "x".repeat(MAX_VALUE_BYTES))).unwrap();
        let op = StateOp {
            key: "k".into(),
            value: Some(big),
            if_version: None,
        };
        assert_eq!(op.check().unwrap_err().code, ErrorCode::PayloadTooLarge);
        assert_eq!(
            check_key(&"k".repeat(1025)).unwrap_err().code,
            ErrorCode::PayloadTooLarge
        );
        assert_eq!(check_key("").unwrap_err().code, ErrorCode::InvalidRequest);
        let many: Vec<StateOp> = (0..101)
            .map(|i| StateOp {
                key: i.to_string(),
                value: None,
                if_version: None,
            })
            .collect();
        assert_eq!(
            check_batch(&many).unwrap_err().code,
            ErrorCode::BatchTooLarge
        );
    }

    #[test]
    fn a_prefix_query_reads_exactly_its_keys() {
        let q = StateQuery {
            prefix: Some("user:".into()),
            limit: 10,
            ..StateQuery::default()
        };
        assert_eq!(q.bounds(), (Some(("user:", true)), Some("user;".into())));
        assert!(q.contains("user:1"));
        assert!(!q.contains("user;"));
        assert!(!q.contains("use"));
        let page2 = StateQuery {
            after: Some("user:1".into()),
            ..q
        };
        assert_eq!(page2.bounds().0, Some(("user:1", false)));
        assert!(!page2.contains("user:1"));
        assert!(page2.contains("user:2"));
    }
}
