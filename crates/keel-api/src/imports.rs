//! Bulk import on the wire: the query of `POST …/queues/{queue}/imports`
//! and `POST …/topics/{topic}/imports` (the body is the records, CSV or
//! NDJSON, streamed) and the summary they answer (docs/api.md, "Bulk
//! import").

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// How to read the body.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// `csv` (a header line, then records) or `ndjson` (a JSON value a
    /// line); by default the body's `Content-Type` (`text/csv`,
    /// `application/x-ndjson`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The column (CSV) or top-level field (NDJSON) that names a record:
    /// a record whose key was imported before is a duplicate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The JSON a record becomes: strings `"{{column}}"`,
    /// `"{{column:number}}"`, `"{{column:bool}}"`, `"{{column:json}}"`, or
    /// fields inside a string (`"Dear {{name}}"`). Without it a CSV
    /// record is an object of its fields, an NDJSON record itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The line, in the whole file, of the body's first record (a resumed
    /// import sends the rest of a file): 2 for CSV, 1 for NDJSON by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The events' `type` (a topic's import only).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// A record that could not be imported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportRejection {
    pub line: u64,
    pub error: String,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportAnswer {
    /// Records read: accepted, duplicates and rejected.
    pub records: u64,
    pub accepted: u64,
    /// Records whose key was imported before (jobs: within 24 hours;
    /// events: within the topic's dedup window).
    pub duplicates: u64,
    pub rejected: u64,
    /// The first 100 rejections, with their lines.
    pub rejects: Vec<ImportRejection>,
    /// The line of the last record read.
    pub last_line: u64,
}
