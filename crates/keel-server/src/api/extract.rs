//! Extractors that reject with coded errors: request bodies (read as a stream
//! and cut off at the body limit, so an oversized body is refused with 413
//! before it is read whole), JSON, query strings and path names.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use keel_core::workflow::RunId;
use keel_core::{
    ChannelName, EndpointName, ErrorCode, JobId, Namespace, QueueName, QueueRef, ScheduleName,
    SourceName, SubscriptionName, TemplateName, TopicName, WorkflowName,
};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::ApiError;

/// What reading request bodies may take: time per body, and memory over
/// all bodies being read at once (a permit per byte a body may hold).
#[derive(Clone)]
pub struct BodyBounds {
    timeout: Duration,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    max_body_bytes: usize,
}

impl BodyBounds {
    pub fn new(clients: &crate::ClientLimits, max_body_bytes: usize) -> BodyBounds {
        BodyBounds {
            timeout: clients.body_timeout,
            budget: Arc::new(Semaphore::new(clients.max_body_bytes_in_flight)),
            budget_bytes: clients.max_body_bytes_in_flight,
            max_body_bytes,
        }
    }

    /// How long a streamed body (an import's) may send nothing.
    pub fn idle_timeout(&self) -> Duration {
        self.timeout
    }

    /// The budget a body takes while it is read: its declared length, or
    /// the most a body may be when it declares none (chunked).
    fn reserve(&self, req: &Request) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        let bytes = declared
            .unwrap_or(self.max_body_bytes)
            .min(self.max_body_bytes)
            .min(self.budget_bytes);
        if bytes == 0 {
            return Ok(None);
        }
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
        match self.budget.clone().try_acquire_many_owned(permits) {
            Ok(permit) => Ok(Some(permit)),
            Err(_) => {
                let mut e = keel_core::Error::new(
                    ErrorCode::Overloaded,
                    format!(
                        "the server is reading {} bytes of request bodies, its most (--max-body-bytes-in-flight); try again",
                        self.budget_bytes
                    ),
                );
                e.retry_after_ms = Some(1000);
                Err(ApiError(e))
            }
        }
    }
}

/// The raw body, within the body limit, read within the body timeout and
/// the memory budget of [`BodyBounds`].
pub(super) struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Some(bounds) = req.extensions().get::<BodyBounds>().cloned() else {
            return read(req, state).await;
        };
        let _reserved = bounds.reserve(&req)?;
        tokio::time::timeout(bounds.timeout, read(req, state))
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::new(
                    ErrorCode::RequestTimeout,
                    format!(
                        "the request body did not arrive within {} ms (--body-timeout-ms)",
                        bounds.timeout.as_millis()
                    ),
                ))
            })
    }
}

async fn read<S: Send + Sync>(req: Request, state: &S) -> Result<Body, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map(Body)
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    "request body is over the size limit",
                )
            } else {
                ApiError::invalid(format!(
                    "cannot read the request body: {}",
                    rejection.body_text()
                ))
            }
        })
}

/// Parses a request's JSON, telling malformed JSON (`invalid_json`) from
/// JSON of the wrong shape (`invalid_request`). No request body is an
/// array: serde would read one as a struct's fields in order.
pub(super) fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    serde_json::from_slice(bytes).map_err(json_error)
}

/// The items of a batch body, `{"<key>":[...]}` and nothing else; `None`
/// for a body that is one item. Only the top level is read (the items stay
/// raw, parsed once by the caller). A batch with another field is refused,
/// as the API's document says.
pub(super) fn batch_items<'a>(
    bytes: &'a [u8],
    key: &str,
) -> Result<Option<&'a RawValue>, ApiError> {
    let top: BTreeMap<Cow<'a, str>, &'a RawValue> = parse(bytes)?;
    match top.get(key) {
        None => Ok(None),
        Some(items) if top.len() == 1 => Ok(Some(*items)),
        Some(_) => Err(ApiError::invalid(format!(
            "a batch is {{\"{key}\":[...]}} with no other field"
        ))),
    }
}

/// A JSON object read as `T`, for the items of a batch: serde would take an
/// array of a struct's fields in order too, which the API's document does
/// not allow.
pub(super) struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Fields<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Object)
            }
        }
        d.deserialize_map(Fields(PhantomData))
    }
}

pub(super) fn json_error(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::new(ErrorCode::InvalidJson, format!("malformed JSON: {e}"))
        }
        Category::Data => ApiError::invalid(in_words(&e.to_string())),
    }
}

/// serde's names of Rust types (`expected i64`) in the words of JSON.
fn in_words(message: &str) -> String {
    const TYPES: [(&str, &str); 10] = [
        ("expected i16", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected u8", "expected a whole number, at least 0"),
        ("expected u16", "expected a whole number, at least 0"),
        ("expected u32", "expected a whole number, at least 0"),
        ("expected u64", "expected a whole number, at least 0"),
        ("expected usize", "expected a whole number, at least 0"),
        ("expected f64", "expected a number"),
        ("expected a borrowed string", "expected a string"),
    ];
    let mut message = message.to_owned();
    for (rust, json) in TYPES {
        message = message.replace(rust, json);
    }
    message
}

/// A JSON body of type `T`; an empty body reads as `{}` when `T` allows it
/// (whitespace alone is no JSON, so it is `invalid_json`).
pub(super) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Body(bytes) = Body::from_request(req, state).await?;
        if bytes.is_empty() {
            return parse(b"{}").map(JsonBody);
        }
        parse(&bytes).map(JsonBody)
    }
}

/// Query parameters of type `T`.
pub(super) struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(q)| QueryParams(q))
            .map_err(|e| ApiError::invalid(format!("bad query string: {}", e.body_text())))
    }
}

pub(super) async fn path_segments<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<Vec<(String, String)>, ApiError> {
    Path::<Vec<(String, String)>>::from_request_parts(parts, state)
        .await
        .map(|Path(p)| p)
        .map_err(|e| ApiError::invalid(format!("bad path: {}", e.body_text())))
}

/// A namespace from a path; Keel's own is not open to clients.
pub(super) fn user_namespace(name: &str) -> Result<Namespace, ApiError> {
    if name == keel_engine::workflows::SYSTEM_NAMESPACE {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            format!("namespace {name:?} is reserved for Keel"),
        ));
    }
    Ok(Namespace::new(name)?)
}

pub(super) fn segment<'a>(segments: &'a [(String, String)], name: &str) -> &'a str {
    segments
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// `{ns}` and `{queue}` from the path, validated.
pub(super) struct QueuePath(pub QueueRef);

impl<S: Send + Sync> FromRequestParts<S> for QueuePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        Ok(QueuePath(QueueRef {
            namespace: user_namespace(segment(&segments, "ns"))?,
            queue: QueueName::new(segment(&segments, "queue"))?,
        }))
    }
}

/// `{ns}` from the path, validated.
pub(super) struct NamespacePath(pub Namespace);

impl<S: Send + Sync> FromRequestParts<S> for NamespacePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        Ok(NamespacePath(user_namespace(segment(&segments, "ns"))?))
    }
}

/// `{ns}` and `{id}`; an id that does not parse names no job: 404.
pub(super) struct JobPath(pub Namespace, pub JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        let namespace = user_namespace(segment(&segments, "ns"))?;
        let id = segment(&segments, "id");
        let id = id
            .parse()
            .map_err(|_| ApiError(keel_core::Error::job_not_found(id)))?;
        Ok(JobPath(namespace, id))
    }
}

/// `{ns}` and `{name}` of a workflow, validated.
pub(super) struct WorkflowPath(pub Namespace, pub WorkflowName);

impl<S: Send + Sync> FromRequestParts<S> for WorkflowPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        Ok(WorkflowPath(
            user_namespace(segment(&segments, "ns"))?,
            WorkflowName::new(segment(&segments, "name"))?,
        ))
    }
}

/// `{ns}`, `{id}` of a run and, when the route has one, `{signal}`; an id
/// that does not parse names no run: 404.
pub(super) struct RunPath(pub Namespace, pub RunId, pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RunPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        let namespace = user_namespace(segment(&segments, "ns"))?;
        let id = segment(&segments, "id");
        let id = id
            .parse()
            .map_err(|_| ApiError::new(ErrorCode::NotFound, format!("run {id} not found")))?;
        let signal = segments
            .iter()
            .find(|(k, _)| k == "signal")
            .map(|(_, v)| v.clone());
        Ok(RunPath(namespace, id, signal))
    }
}

/// `{ns}` and `{topic}`, validated, and `{id}` of an event when the route has one.
pub(super) struct TopicPath(pub Namespace, pub TopicName, pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for TopicPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        let id = segments
            .iter()
            .find(|(k, _)| k == "id")
            .map(|(_, v)| v.clone());
        Ok(TopicPath(
            user_namespace(segment(&segments, "ns"))?,
            TopicName::new(segment(&segments, "topic"))?,
            id,
        ))
    }
}

/// `{ns}` and `{name}` of a subscription, validated.
pub(super) struct SubscriptionPath(pub Namespace, pub SubscriptionName);

impl<S: Send + Sync> FromRequestParts<S> for SubscriptionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        Ok(SubscriptionPath(
            user_namespace(segment(&segments, "ns"))?,
            SubscriptionName::new(segment(&segments, "name"))?,
        ))
    }
}

/// `{ns}` and `{name}` of a webhook source, validated.
pub(super) struct SourcePath(pub Namespace, pub SourceName);

impl<S: Send + Sync> FromRequestParts<S> for SourcePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        Ok(SourcePath(
            user_namespace(segment(&segments, "ns"))?,
            SourceName::new(segment(&segments, "name"))?,
        ))
    }
}

/// `{ns}` and `{name}` of an endpoint, validated.
pub(super) struct EndpointPath(pub Namespace, pub EndpointName);

impl<S: Send + Sync> FromRequestParts<S> for EndpointPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        Ok(EndpointPath(
            user_namespace(segment(&segments, "ns"))?,
            EndpointName::new(segment(&segments, "name"))?,
        ))
    }
}

/// `{ns}` and `{name}` of a notification channel, validated.
pub(super) struct ChannelPath(pub Namespace, pub ChannelName);

impl<S: Send + Sync> FromRequestParts<S> for ChannelPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        Ok(ChannelPath(
            user_namespace(segment(&segments, "ns"))?,
            ChannelName::new(segment(&segments, "name"))?,
        ))
    }
}

/// `{ns}` and `{name}` of a notification template, validated.
pub(super) struct TemplatePath(pub Namespace, pub TemplateName);

impl<S: Send + Sync> FromRequestParts<S> for TemplatePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        Ok(TemplatePath(
            user_namespace(segment(&segments, "ns"))?,
            TemplateName::new(segment(&segments, "name"))?,
        ))
    }
}

/// `{ns}` and `{id}` of a recipient: the id is the caller's own (the
/// engine checks its length).
pub(super) struct RecipientPath(pub Namespace, pub String);

impl<S: Send + Sync> FromRequestParts<S> for RecipientPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        Ok(RecipientPath(
            user_namespace(segment(&segments, "ns"))?,
            segment(&segments, "id").to_owned(),
        ))
    }
}

/// `{ns}` and `{id}` of a notification; an id that does not parse names
/// none: 404.
pub(super) struct NotificationPath(pub Namespace, pub keel_core::NotificationId);

impl<S: Send + Sync> FromRequestParts<S> for NotificationPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        let namespace = user_namespace(segment(&segments, "ns"))?;
        let id = segment(&segments, "id");
        let id = id.parse().map_err(|_| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("notification {id:?} not found"),
            )
        })?;
        Ok(NotificationPath(namespace, id))
    }
}

/// `{ns}` and `{name}` of a schedule, validated.
pub(super) struct SchedulePath(pub Namespace, pub ScheduleName);

impl<S: Send + Sync> FromRequestParts<S> for SchedulePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        Ok(SchedulePath(
            user_namespace(segment(&segments, "ns"))?,
            ScheduleName::new(segment(&segments, "name"))?,
        ))
    }
}

/// A `wait_ms` (0 when absent) within `--max-wait-ms`; 400 otherwise.
pub(super) fn wait_ms(limits: &keel_core::Limits, wait_ms: Option<u64>) -> Result<u64, ApiError> {
    let wait = wait_ms.unwrap_or(0);
    if wait > limits.max_wait_ms {
        return Err(ApiError::invalid(format!(
            "wait_ms must be at most {}",
            limits.max_wait_ms
        )));
    }
    Ok(wait)
}

/// A count `name` (`default` when absent) from 1 to `max`; 400 otherwise.
pub(super) fn count(
    name: &str,
    value: Option<u32>,
    default: u32,
    max: u32,
) -> Result<u32, ApiError> {
    let n = value.unwrap_or(default);
    if !(1..=max).contains(&n) {
        return Err(ApiError::invalid(format!(
            "{name} must be between 1 and {max}"
        )));
    }
    Ok(n)
}

/// `{ns}` and `{name}` of a monitor, validated.
pub(super) struct MonitorPath(pub Namespace, pub keel_core::MonitorName);

impl<S: Send + Sync> FromRequestParts<S> for MonitorPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        Ok(MonitorPath(
            user_namespace(segment(&segments, "ns"))?,
            keel_core::MonitorName::new(segment(&segments, "name"))?,
        ))
    }
}

/// `{ns}` and `{name}` of a setting the engine checks (an escalation
/// policy, a maintenance window).
pub(super) struct NamePath(pub Namespace, pub String);

impl<S: Send + Sync> FromRequestParts<S> for NamePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        Ok(NamePath(
            user_namespace(segment(&segments, "ns"))?,
            segment(&segments, "name").to_owned(),
        ))
    }
}

/// `{ns}` and `{id}` of an incident; an id that does not parse names none: 404.
pub(super) struct IncidentPath(pub Namespace, pub keel_core::IncidentId);

impl<S: Send + Sync> FromRequestParts<S> for IncidentPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        let namespace = user_namespace(segment(&segments, "ns"))?;
        let id = segment(&segments, "id");
        let id = id.parse().map_err(|_| {
            ApiError::new(ErrorCode::NotFound, format!("incident {id:?} not found"))
        })?;
        Ok(IncidentPath(namespace, id))
    }
}
