//! The projects domain: a plan of what a project's definitions would
//! change, applying it as a new version, and the versions (docs/api.md,
//! "Projects").

use keel_core::Timestamp;
use keel_core::project::{Change, Plan, Resource, VersionState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/projects/{project}/plans`: the whole project, every
/// definition it holds (what it held before and no longer does is deleted).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    pub resources: Vec<Resource>,
}

/// `POST /v1/projects/{project}/versions`: applies a plan as it was
/// answered, if nothing it read has changed since.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    pub plan: Plan,
    /// Why, kept with the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A version, without its definitions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VersionSummary {
    pub project: String,
    pub version: u64,
    pub state: VersionState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// How many resources the project held at this version.
    pub resource_count: usize,
    /// How many the apply changed.
    pub change_count: usize,
    /// Why the apply failed, when it did (its changes were undone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
}

/// A version whole: what the apply changed and every definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VersionAnswer {
    #[serde(flatten)]
    pub summary: VersionSummary,
    pub changes: Vec<Change>,
    pub resources: Vec<Resource>,
}

/// `GET /v1/projects/{project}/versions`: newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VersionList {
    pub versions: Vec<VersionSummary>,
}

/// `GET /v1/projects`: each project at its newest version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectList {
    pub projects: Vec<VersionSummary>,
}
