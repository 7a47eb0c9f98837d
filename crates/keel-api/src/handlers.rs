//! The handlers domain on the wire: uploading a handler (JavaScript source
//! or a WebAssembly module in base64, with its limits and allowed
//! origins), its versions, a test call's answer, and objects' state
//! (docs/api.md, "Handlers").

use std::collections::BTreeMap;

use keel_core::Timestamp;
use keel_core::handler::{HandlerKind, HandlerLimits, ObjectRef};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

/// `PUT .../handlers/{name}`: `js` or `wasm_base64`, and the settings.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandlerRequest {
    /// A JavaScript module whose default export is
    /// `async function (job, ctx)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub js: Option<String>,
    /// A WebAssembly module against Keel's handler ABI, in base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm_base64: Option<String>,
    #[serde(default)]
    pub limits: HandlerLimits,
    /// Origins (`scheme://host[:port]`) its outbound calls may reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_http: Vec<String>,
    /// Its jobs of one object may run at once; it cannot write state.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
}

/// A handler's version as the API shows it (the JavaScript source, never
/// a module's bytes or the compiled code).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HandlerAnswer {
    pub name: String,
    pub version: u32,
    pub kind: HandlerKind,
    /// SHA-256 of the code and settings: equal uploads make no version.
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub js: Option<String>,
    pub limits: HandlerLimits,
    pub allow_http: Vec<String>,
    pub shared: bool,
    pub created_at: Timestamp,
}

/// A handler in a list: its current version's facts.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HandlerSummary {
    pub name: String,
    pub version: u32,
    pub kind: HandlerKind,
    pub hash: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HandlerList {
    pub handlers: Vec<HandlerSummary>,
}

/// `GET .../handlers/{name}?version=N`: an older version.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    pub version: Option<u32>,
}

/// `PUT .../handlers/{name}/secrets`: replaces them all.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretsRequest {
    pub secrets: BTreeMap<String, String>,
}

/// `POST .../handlers/{name}/invoke`: a test call; nothing is committed.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvokeRequest {
    #[schema(value_type = serde_json::Value)]
    pub payload: Box<RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
}

/// Why a test call did not return a result.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct InvokeError {
    /// `thrown`, `limit` or `trap`.
    pub kind: String,
    /// For a limit: which (`cpu_ms`, `wall_ms`, `memory_mb`, `http_calls`,
    /// `response_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    pub message: String,
}

/// One state write a test call would have committed (`value` null: a
/// delete).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WriteAnswer {
    pub key: String,
    #[schema(value_type = Option<serde_json::Value>)]
    pub value: Option<Box<RawValue>>,
}

/// What a test call did.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct InvokeAnswer {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub result: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<InvokeError>,
    pub logs: Vec<String>,
    pub logs_dropped: u32,
    /// Guest CPU time, host calls not counted.
    pub cpu_ms: f64,
    pub wall_ms: f64,
    pub memory_bytes: u64,
    pub writes: Vec<WriteAnswer>,
    /// Events it would have published: `{"topic","event"}`.
    #[schema(value_type = Vec<serde_json::Value>)]
    pub events: Vec<serde_json::Value>,
    /// Jobs it would have enqueued: `{"queue","job"}`.
    #[schema(value_type = Vec<serde_json::Value>)]
    pub jobs: Vec<serde_json::Value>,
}

/// `GET .../state/{key}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StateAnswer {
    #[schema(value_type = serde_json::Value)]
    pub value: Box<RawValue>,
    pub version: u64,
}

/// `PUT .../state/{key}` (`If-Match: VERSION` to put only over it).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatePut {
    #[schema(value_type = serde_json::Value)]
    pub value: Box<RawValue>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StateVersion {
    pub version: u64,
}

/// `POST .../state:batch`: up to 100 puts (`value`) and deletes (no
/// `value`), each optionally at `if_version` (0: only if absent); all or
/// none.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateBatch {
    pub ops: Vec<keel_core::handler::state::StateOp>,
}

/// Each operation's new version, in order (0: deleted).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StateBatchAnswer {
    pub versions: Vec<u64>,
}

/// `GET .../state?prefix=&start=&end=&limit=&cursor=`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StateListQuery {
    pub prefix: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StatePage {
    pub entries: Vec<keel_core::handler::state::StateEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}
