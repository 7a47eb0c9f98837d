//! The CloudEvents HTTP binding (v1.0): structured mode
//! (`application/cloudevents+json`, one event; `…-batch+json`, a list) and
//! binary mode (`ce-*` headers, the body is the data), both read into
//! Keel's own event form. `subject` is the key; extension attributes become
//! headers.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, header};
use keel_api::topics::EventRequest;
use keel_core::Timestamp;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::ApiError;
use super::extract::json_error;

/// How a publish body is to be read.
pub(super) enum Mode {
    Native,
    Structured,
    StructuredBatch,
    Binary,
}

pub(super) fn mode(headers: &HeaderMap) -> Mode {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("application/cloudevents-batch+json") {
        Mode::StructuredBatch
    } else if content_type.starts_with("application/cloudevents+json") {
        Mode::Structured
    } else if headers.contains_key("ce-specversion") || headers.contains_key("ce-id") {
        Mode::Binary
    } else {
        Mode::Native
    }
}

/// Structured mode: one event, or (`batch`) a JSON list of them.
pub(super) fn structured(bytes: &[u8], batch: bool) -> Result<Vec<EventRequest>, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(json_error)?;
    let objects = match (batch, value) {
        (true, Value::Array(items)) => items,
        (false, object @ Value::Object(_)) => vec![object],
        (true, _) => return Err(ApiError::invalid("a CloudEvents batch is a JSON list")),
        (false, _) => return Err(ApiError::invalid("a CloudEvent is a JSON object")),
    };
    objects
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Object(map) => from_attributes(map).map_err(|e| {
                if batch {
                    ApiError::invalid(format!("events[{i}]: {}", e.0.message))
                } else {
                    e
                }
            }),
            _ => Err(ApiError::invalid(format!("events[{i}] is not an object"))),
        })
        .collect()
}

fn from_attributes(mut map: Map<String, Value>) -> Result<EventRequest, ApiError> {
    match map.remove("specversion") {
        Some(Value::String(v)) if v == "1.0" => {}
        _ => return Err(ApiError::invalid("specversion must be \"1.0\"")),
    }
    if map.contains_key("data_base64") {
        return Err(ApiError::invalid(
            "data_base64 is not supported: send the data as JSON",
        ));
    }
    let mut text = |name: &str, required: bool| -> Result<Option<String>, ApiError> {
        match map.remove(name) {
            Some(Value::String(s)) => Ok(Some(s)),
            None if !required => Ok(None),
            _ => Err(ApiError::invalid(format!(
                "{name} must be a string{}",
                if required { " and is required" } else { "" }
            ))),
        }
    };
    let id = text("id", true)?;
    let kind = text("type", true)?;
    let source = text("source", true)?;
    let key = text("subject", false)?;
    let time = text("time", false)?.map(|t| parse_time(&t)).transpose()?;
    map.remove("datacontenttype");
    map.remove("dataschema");
    let data = map
        .remove("data")
        .map(|d| serde_json::value::to_raw_value(&d))
        .transpose()
        .map_err(|e| ApiError::invalid(format!("data: {e}")))?;
    let headers = map
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect();
    Ok(EventRequest {
        id,
        kind,
        source,
        key,
        time,
        data,
        headers,
    })
}

/// Binary mode: attributes in `ce-` headers, the body is the data (JSON
/// when the content type says so or is absent, else UTF-8 text).
pub(super) fn binary(headers: &HeaderMap, bytes: &[u8]) -> Result<EventRequest, ApiError> {
    let mut attributes: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(attribute) = name.as_str().strip_prefix("ce-") {
            let value = value
                .to_str()
                .map_err(|_| ApiError::invalid(format!("header {name} is not text")))?;
            attributes.insert(attribute.to_owned(), value.to_owned());
        }
    }
    if attributes.remove("specversion").as_deref() != Some("1.0") {
        return Err(ApiError::invalid("ce-specversion must be \"1.0\""));
    }
    let mut required = |name: &str| {
        attributes
            .remove(name)
            .ok_or_else(|| ApiError::invalid(format!("header ce-{name} is required")))
    };
    let (id, kind, source) = (required("id")?, required("type")?, required("source")?);
    let key = attributes.remove("subject");
    let time = attributes
        .remove("time")
        .map(|t| parse_time(&t))
        .transpose()?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let data: Box<RawValue> = if bytes.is_empty() {
        serde_json::value::to_raw_value(&Value::Null)
            .map_err(|e| ApiError::invalid(e.to_string()))?
    } else if content_type.is_empty() || content_type.contains("json") {
        serde_json::from_slice(bytes).map_err(json_error)?
    } else {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ApiError::invalid("binary-mode data must be JSON or UTF-8 text"))?;
        serde_json::value::to_raw_value(text).map_err(|e| ApiError::invalid(e.to_string()))?
    };
    Ok(EventRequest {
        id: Some(id),
        kind: Some(kind),
        source: Some(source),
        key,
        time,
        data: Some(data),
        headers: attributes,
    })
}

fn parse_time(text: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse_rfc3339(text)
        .ok_or_else(|| ApiError::invalid(format!("time {text:?} is not an RFC 3339 time")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderName, HeaderValue};
    use proptest::prelude::*;
    use serde_json::json;

    fn attribute() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(|n| json!(n)),
            "[ -~]{0,16}".prop_map(Value::String),
            Just(json!("1.0")),
            Just(json!("2026-12-06T10:00:00Z")),
            Just(json!({"nested": [1, 2]})),
        ]
    }

    fn names() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("specversion".to_owned()),
            Just("id".to_owned()),
            Just("type".to_owned()),
            Just("source".to_owned()),
            Just("subject".to_owned()),
            Just("time".to_owned()),
            Just("data".to_owned()),
            Just("data_base64".to_owned()),
            Just("datacontenttype".to_owned()),
            "[a-z]{1,10}",
        ]
    }

    proptest! {
        /// Any body, in either structured mode: read or refused, never a panic.
        #[test]
        fn structured_bodies_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = structured(&bytes, false);
            let _ = structured(&bytes, true);
        }

        /// Events made of any attributes: each is read or refused with a
        /// coded 400, and one read has the id and type it was sent with.
        #[test]
        fn any_attributes_are_read_or_refused(
            attributes in prop::collection::btree_map(names(), attribute(), 0..9),
        ) {
            let event = Value::Object(attributes.clone().into_iter().collect());
            let body = serde_json::to_vec(&event).unwrap_or_default();
            match structured(&body, false) {
                Ok(read) => {
                    prop_assert_eq!(read.len(), 1);
                    prop_assert_eq!(read[0].id.as_deref(), attributes["id"].as_str());
                    prop_assert_eq!(read[0].kind.as_deref(), attributes["type"].as_str());
                }
                Err(e) => prop_assert_eq!(e.0.code.http_status(), 400),
            }
            let batch = serde_json::to_vec(&json!([event, event])).unwrap_or_default();
            let _ = structured(&batch, true);
        }

        /// Binary mode with any `ce-` headers and body.
        #[test]
        fn binary_requests_are_read_or_refused(
            attributes in prop::collection::btree_map(names(), "[ -~]{0,16}", 0..8),
            content_type in prop_oneof![Just(String::new()), Just("application/json".to_owned()), Just("text/plain".to_owned()), "[ -~]{0,20}"],
            bytes in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut headers = HeaderMap::new();
            for (name, value) in &attributes {
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(format!("ce-{name}").as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    headers.insert(name, value);
                }
            }
            if let Ok(value) = HeaderValue::from_str(&content_type) {
                headers.insert(header::CONTENT_TYPE, value);
            }
            let _ = mode(&headers);
            if let Err(e) = binary(&headers, &bytes) {
                prop_assert_eq!(e.0.code.http_status(), 400);
            }
        }
    }
}
