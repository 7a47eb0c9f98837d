//! The projects domain: each project's numbered, immutable versions. A
//! version is written whole before its apply touches anything, in the state
//! `applying`, so that it is the apply's redo log: a node that finds one
//! still applying (after a kill -9) finishes it, or undoes it from the
//! `previous` definitions it keeps, before the project is planned again.

use async_trait::async_trait;
use keel_core::project::{Change, Resource, ResourceId, VersionState};
use keel_core::{Error, ErrorCode, ProjectName, Timestamp};
use serde::{Deserialize, Serialize};

/// What a version holds besides its number and state (stored as one JSON
/// document).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionBody {
    /// Every definition of the project at this version (canonical).
    pub resources: Vec<Resource>,
    /// What the apply changes, in order.
    pub changes: Vec<Change>,
    /// The resources this project created and still defines: the only
    /// ones a later version may delete.
    #[serde(default)]
    pub created: Vec<ResourceId>,
    /// The definitions the changed resources had before (the compared
    /// form, which a put takes back), to undo a failed apply with.
    pub previous: Vec<Resource>,
    /// Why: the operator's note, or which version a rollback returns to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// Why the apply failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One version of a project.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectVersion {
    pub project: ProjectName,
    pub version: u64,
    pub state: VersionState,
    pub body: VersionBody,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// 404 for a project's version.
pub fn version_not_found(project: &ProjectName, version: u64) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!("project {project} has no version {version}"),
    )
}

/// 409 when a version was written since the caller looked.
pub fn project_moved(project: &ProjectName, expected: u64) -> Error {
    Error::new(
        ErrorCode::VersionMismatch,
        format!(
            "project {project} is no longer at version {expected}: another apply came first; plan again"
        ),
    )
}

/// 409 when a version was settled already (by another node finishing it).
pub fn settled_already(project: &ProjectName, version: u64) -> Error {
    Error::new(
        ErrorCode::Conflict,
        format!("version {version} of project {project} is settled already"),
    )
}

#[async_trait]
pub trait ProjectStore: Send + Sync {
    /// Writes `version` (state `applying`) if the project's newest version
    /// is still `version.version - 1` (0: none) and is not applying; else
    /// [`project_moved`].
    async fn project_begin(&self, version: &ProjectVersion) -> Result<(), Error>;

    /// Settles an applying version as applied or failed (`error` says why).
    async fn project_settle(
        &self,
        project: &ProjectName,
        version: u64,
        state: VersionState,
        error: Option<String>,
        now: Timestamp,
    ) -> Result<(), Error>;

    /// One version, whole.
    async fn project_version(
        &self,
        project: &ProjectName,
        version: u64,
    ) -> Result<ProjectVersion, Error>;

    /// A project's versions, newest first, at most `limit`.
    async fn project_versions(
        &self,
        project: &ProjectName,
        limit: u32,
    ) -> Result<Vec<ProjectVersion>, Error>;

    /// Every project's newest version, by project name.
    async fn project_heads(&self) -> Result<Vec<ProjectVersion>, Error>;

    /// Every project's newest applied version (what it owns), by name.
    async fn project_owners(&self) -> Result<Vec<ProjectVersion>, Error>;
}
