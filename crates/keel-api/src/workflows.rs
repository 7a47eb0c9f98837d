//! The workflows domain: storing definitions, reading them and their
//! versions, and starting runs (docs/api.md). The runs themselves are the
//! runs domain's.

use keel_core::Timestamp;
use keel_core::workflow::Problem;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The answer to `PUT .../workflows/{name}`: 201 for a new version, 200 when
/// the definition was already the latest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DefinitionSaved {
    pub name: String,
    pub version: u32,
}

/// `GET .../workflows/{name}`: one version of a definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DefinitionAnswer {
    pub name: String,
    pub version: u32,
    pub created_at: Timestamp,
    /// The definition in its canonical JSON form.
    pub definition: Value,
}

/// `GET .../workflows`: every workflow of the namespace at its latest version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowEntry {
    pub name: String,
    /// The latest version.
    pub version: u32,
    /// When the latest version was stored.
    pub created_at: Timestamp,
}

/// `GET .../workflows/{name}/versions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VersionsAnswer {
    pub name: String,
    pub versions: Vec<VersionEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VersionEntry {
    pub version: u32,
    pub created_at: Timestamp,
}

/// `POST .../workflows/{name}/runs` (an empty body starts with `null` input).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    #[serde(default)]
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// A version to run; the latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// The trace the run belongs to (its steps' jobs carry it); the
    /// request's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<keel_core::TraceParent>,
}

/// The 400 answer to a definition with problems: the usual error body with
/// every problem and where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InvalidDefinition {
    pub error: InvalidDefinitionDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InvalidDefinitionDetail {
    /// Always `invalid_definition`.
    pub code: String,
    pub message: String,
    /// Absent when the request failed before the definition was read.
    #[serde(default)]
    pub problems: Vec<Problem>,
}
