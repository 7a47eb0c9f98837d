//! Projects: the client's calls behind `keel plan`, `keel apply` and
//! `keel versions`.

use keel_api::projects::{ApplyRequest, PlanRequest, ProjectList, VersionAnswer, VersionList};
use keel_core::project::{Plan, Resource};

use crate::ClientError;
use crate::client::{Client, seg};

impl Client {
    /// What applying `resources` as the whole of `project` would change.
    pub async fn plan(&self, project: &str, resources: Vec<Resource>) -> Result<Plan, ClientError> {
        let url = self.url(&format!("/projects/{}/plans", seg(project)));
        self.send(self.http.post(url).json(&PlanRequest { resources }))
            .await
    }

    /// Applies a plan as it was answered; 409 `version_mismatch` when the
    /// server changed since.
    pub async fn apply(
        &self,
        plan: Plan,
        note: Option<String>,
    ) -> Result<VersionAnswer, ClientError> {
        let url = self.url(&format!(
            "/projects/{}/versions",
            seg(plan.project.as_str())
        ));
        self.send(self.http.post(url).json(&ApplyRequest { plan, note }))
            .await
    }

    pub async fn list_projects(&self) -> Result<ProjectList, ClientError> {
        self.send(self.http.get(self.url("/projects"))).await
    }

    /// A project's versions, newest first.
    pub async fn project_versions(
        &self,
        project: &str,
        limit: u32,
    ) -> Result<VersionList, ClientError> {
        let url = self.url(&format!(
            "/projects/{}/versions?limit={limit}",
            seg(project)
        ));
        self.send(self.http.get(url)).await
    }

    pub async fn project_version(
        &self,
        project: &str,
        version: u64,
    ) -> Result<VersionAnswer, ClientError> {
        let url = self.url(&format!("/projects/{}/versions/{version}", seg(project)));
        self.send(self.http.get(url)).await
    }
}
