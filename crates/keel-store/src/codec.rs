//! The one codec for what backends keep as JSON text (specs, states,
//! policies, tags, owners, secrets): encoding fails the way decoding does,
//! with an error that names what was being written, so a value that cannot
//! be written is refused, never stored as `""` in its place.

use keel_core::Error;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// `value` as compact JSON text; `what` names it in the error.
pub fn encode<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::internal(format!("cannot encode {what}: {e}")))
}

/// Stored JSON text back to its type; text that does not fit is a corrupt
/// row (an error, never a made-up default).
pub fn decode<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(|e| Error::internal(format!("corrupt {what} {text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test: a panic is a failed check")]

    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn what_cannot_be_encoded_is_an_error_not_an_empty_string() {
        // JSON object keys are strings: a map keyed by a tuple has none.
        let mut map = BTreeMap::new();
        map.insert((1, 2), "x");
        let e = encode("tags", &map).unwrap_err();
        assert!(e.message.starts_with("cannot encode tags"), "{}", e.message);
        let tags: BTreeMap<String, String> = decode("tags", r#"{"a":"b"}"#).unwrap();
        assert_eq!(encode("tags", &tags).unwrap(), r#"{"a":"b"}"#);
        let e = decode::<BTreeMap<String, String>>("tags", "[1]").unwrap_err();
        assert!(e.message.starts_with("corrupt tags"), "{}", e.message);
    }
}
