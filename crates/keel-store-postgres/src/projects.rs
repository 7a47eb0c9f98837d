//! Project versions on PostgreSQL: one row each, the body as JSON text. A
//! version goes in with one conditional insert, so two nodes applying on
//! the same version cannot both land.

use async_trait::async_trait;
use keel_core::project::VersionState;
use keel_core::{Error, ProjectName, Timestamp};
use keel_store::{
    ProjectStore, ProjectVersion, codec, project_moved, settled_already, version_not_found,
};
use tokio_postgres::Row;

use crate::{PostgresStore, db};

const COLUMNS: &str = "project, version, state, body, created_at, finished_at";

#[async_trait]
impl ProjectStore for PostgresStore {
    async fn project_begin(&self, version: &ProjectVersion) -> Result<(), Error> {
        let body = codec::encode("project version", &version.body)?;
        let written = self
            .client()
            .await?
            .execute(
                include_str!("../queries/projects/project_begin.sql"),
                &[
                    &version.project.as_str(),
                    &(version.version as i64),
                    &body,
                    &version.created_at.as_millis(),
                ],
            )
            .await
            .map_err(db)?;
        if written == 0 {
            return Err(project_moved(
                &version.project,
                version.version.saturating_sub(1),
            ));
        }
        Ok(())
    }

    async fn project_settle(
        &self,
        project: &ProjectName,
        version: u64,
        state: VersionState,
        error: Option<String>,
        now: Timestamp,
    ) -> Result<(), Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let row = tx
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM keel_project_versions \
                     WHERE project = $1 AND version = $2 FOR UPDATE"
                ),
                &[&project.as_str(), &(version as i64)],
            )
            .await
            .map_err(db)?;
        let Some(row) = row else {
            return Err(version_not_found(project, version));
        };
        let mut found = version_from_row(&row)?;
        if found.state != VersionState::Applying {
            return Err(settled_already(project, version));
        }
        found.body.error = error;
        tx.execute(
            "UPDATE keel_project_versions SET state = $3, body = $4, finished_at = $5 \
             WHERE project = $1 AND version = $2",
            &[
                &project.as_str(),
                &(version as i64),
                &state.as_str(),
                &codec::encode("project version", &found.body)?,
                &now.as_millis(),
            ],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn project_version(
        &self,
        project: &ProjectName,
        version: u64,
    ) -> Result<ProjectVersion, Error> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM keel_project_versions WHERE project = $1 AND version = $2"
                ),
                &[&project.as_str(), &(version as i64)],
            )
            .await
            .map_err(db)?;
        row.as_ref()
            .map(version_from_row)
            .unwrap_or_else(|| Err(version_not_found(project, version)))
    }

    async fn project_versions(
        &self,
        project: &ProjectName,
        limit: u32,
    ) -> Result<Vec<ProjectVersion>, Error> {
        self.client()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM keel_project_versions WHERE project = $1 \
                     ORDER BY version DESC LIMIT $2"
                ),
                &[&project.as_str(), &i64::from(limit)],
            )
            .await
            .map_err(db)?
            .iter()
            .map(version_from_row)
            .collect()
    }

    async fn project_heads(&self) -> Result<Vec<ProjectVersion>, Error> {
        self.newest_each(None).await
    }

    async fn project_owners(&self) -> Result<Vec<ProjectVersion>, Error> {
        self.newest_each(Some(VersionState::Applied)).await
    }
}

impl PostgresStore {
    /// Each project's newest version (in `state`, when given).
    async fn newest_each(&self, state: Option<VersionState>) -> Result<Vec<ProjectVersion>, Error> {
        self.client()
            .await?
            .query(
                include_str!("../queries/projects/newest_each.sql"),
                &[&state.map(VersionState::as_str)],
            )
            .await
            .map_err(db)?
            .iter()
            .map(version_from_row)
            .collect()
    }
}

fn version_from_row(r: &Row) -> Result<ProjectVersion, Error> {
    let corrupt = |e: Error| Error::internal(format!("corrupt project version: {}", e.message));
    let project: &str = r.get(0);
    let state: &str = r.get(2);
    let body: &str = r.get(3);
    Ok(ProjectVersion {
        project: ProjectName::new(project).map_err(corrupt)?,
        version: r.get::<_, i64>(1) as u64,
        state: VersionState::parse(state)?,
        body: codec::decode("project version", body)?,
        created_at: Timestamp::from_millis(r.get(4)),
        finished_at: r.get::<_, Option<i64>>(5).map(Timestamp::from_millis),
    })
}
