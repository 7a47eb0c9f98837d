//! The workflows domain: versioned definitions.

use async_trait::async_trait;
use keel_core::{Error, ErrorCode, Namespace, Timestamp};

/// One version of a workflow definition, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkflowVersion {
    pub name: String,
    pub version: u32,
    /// Canonical JSON (see `keel_core::workflow::definition::canonical`).
    pub definition: String,
    pub created_at: Timestamp,
}

/// 404 for a workflow, or one version of it.
pub fn workflow_not_found(name: &str, version: Option<u32>) -> Error {
    let what = match version {
        Some(v) => format!("version {v} of workflow {name:?}"),
        None => format!("workflow {name:?}"),
    };
    Error::new(ErrorCode::NotFound, format!("{what} not found"))
}

/// Workflow definitions, a new version only when the content changes.
#[async_trait]
pub trait WorkflowStore: Send + Sync {
    /// Stores a workflow definition (canonical JSON) as a new version, unless
    /// it is the same as the latest one. Returns the version and whether it is new.
    async fn workflow_put(
        &self,
        namespace: &Namespace,
        name: &str,
        definition: &str,
        now: Timestamp,
    ) -> Result<(u32, bool), Error>;

    /// One version of a workflow, the latest when `version` is `None` (404 when absent).
    async fn workflow_get(
        &self,
        namespace: &Namespace,
        name: &str,
        version: Option<u32>,
    ) -> Result<WorkflowVersion, Error>;

    /// The latest version of every workflow of a namespace, by name.
    async fn workflows_list(&self, namespace: &Namespace) -> Result<Vec<WorkflowVersion>, Error>;

    /// Every version of a workflow, oldest first (404 when there is none).
    async fn workflow_versions(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<Vec<WorkflowVersion>, Error>;
}
