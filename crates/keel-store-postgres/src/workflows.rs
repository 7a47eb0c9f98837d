//! Workflow definitions on PostgreSQL: one row per version; a new version
//! is written under a per-workflow lock, so two nodes cannot both add one.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use keel_core::{Error, Namespace, Timestamp};
use keel_store::{WorkflowStore, WorkflowVersion, workflow_not_found};

use crate::{PostgresStore, db};

#[async_trait]
impl WorkflowStore for PostgresStore {
    async fn workflow_put(
        &self,
        namespace: &Namespace,
        name: &str,
        definition: &str,
        now: Timestamp,
    ) -> Result<(u32, bool), Error> {
        let mut client = self.client().await?;
        workflow_put(&mut client, namespace, name, definition, now).await
    }

    async fn workflow_get(
        &self,
        namespace: &Namespace,
        name: &str,
        version: Option<u32>,
    ) -> Result<WorkflowVersion, Error> {
        let client = self.client().await?;
        let mut versions = workflow_versions(&client, namespace, name, version).await?;
        versions.pop().ok_or_else(|| Error::internal("no version"))
    }

    async fn workflows_list(&self, namespace: &Namespace) -> Result<Vec<WorkflowVersion>, Error> {
        let client = self.client().await?;
        let rows = client
            .query(
                include_str!("../queries/workflows/workflows_list.sql"),
                &[&namespace.as_str()],
            )
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| WorkflowVersion {
                name: r.get(0),
                version: r.get::<_, i32>(1) as u32,
                definition: r.get(2),
                created_at: Timestamp::from_millis(r.get(3)),
            })
            .collect())
    }

    async fn workflow_versions(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<Vec<WorkflowVersion>, Error> {
        let client = self.client().await?;
        workflow_versions(&client, namespace, name, None).await
    }
}

async fn workflow_put(
    client: &mut deadpool_postgres::Client,
    namespace: &Namespace,
    name: &str,
    definition: &str,
    now: Timestamp,
) -> Result<(u32, bool), Error> {
    let tx = client.transaction().await.map_err(db)?;
    tx.execute(
        include_str!("../queries/workflows/workflow_lock.sql"),
        &[&namespace.as_str(), &name],
    )
    .await
    .map_err(db)?;
    let latest = tx
        .query_opt(
            include_str!("../queries/workflows/workflow_latest.sql"),
            &[&namespace.as_str(), &name],
        )
        .await
        .map_err(db)?;
    if let Some(row) = &latest
        && row.get::<_, &str>(1) == definition
    {
        return Ok((row.get::<_, i32>(0) as u32, false));
    }
    let version = latest.map_or(1, |row| row.get::<_, i32>(0) + 1);
    tx.execute(
        include_str!("../queries/workflows/workflow_insert.sql"),
        &[
            &namespace.as_str(),
            &name,
            &version,
            &definition,
            &now.as_millis(),
        ],
    )
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok((version as u32, true))
}

async fn workflow_versions(
    client: &impl GenericClient,
    namespace: &Namespace,
    name: &str,
    version: Option<u32>,
) -> Result<Vec<WorkflowVersion>, Error> {
    let version = version.map(|v| v as i32);
    let rows = client
        .query(
            include_str!("../queries/workflows/workflow_versions.sql"),
            &[&namespace.as_str(), &name, &version],
        )
        .await
        .map_err(db)?;
    if rows.is_empty() {
        return Err(workflow_not_found(name, version.map(|v| v as u32)));
    }
    Ok(rows
        .iter()
        .map(|r| WorkflowVersion {
            name: name.to_owned(),
            version: r.get::<_, i32>(0) as u32,
            definition: r.get(1),
            created_at: Timestamp::from_millis(r.get(2)),
        })
        .collect())
}
