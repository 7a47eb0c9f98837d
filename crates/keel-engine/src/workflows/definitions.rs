//! Workflow definitions as stored: one version (its canonical JSON), a
//! workflow's versions, a namespace's workflows. Parsing and caching them
//! for runs is `cache.rs`.

use keel_core::{Error, Namespace};
use keel_store::WorkflowVersion;

use super::Driver;

impl Driver {
    /// A version of a workflow as stored (latest when `version` is `None`).
    pub async fn stored(
        &self,
        namespace: &Namespace,
        name: &str,
        version: Option<u32>,
    ) -> Result<WorkflowVersion, Error> {
        self.definitions_store
            .workflow_get(namespace, name, version)
            .await
    }

    /// A workflow's versions, oldest first.
    pub async fn versions(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<Vec<WorkflowVersion>, Error> {
        self.definitions_store
            .workflow_versions(namespace, name)
            .await
    }

    /// A namespace's workflows, each at its latest version.
    pub async fn list(&self, namespace: &Namespace) -> Result<Vec<WorkflowVersion>, Error> {
        self.definitions_store.workflows_list(namespace).await
    }
}
