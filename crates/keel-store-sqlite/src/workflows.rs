//! Workflow definitions on the embedded store: one row per version. Writes
//! run on the writer thread, reads on the reader connections.

use async_trait::async_trait;
use keel_core::{Error, Namespace, Timestamp};
use keel_store::{WorkflowStore, WorkflowVersion, workflow_not_found};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::SqliteStore;
use crate::writer::{Applied, Writer};

#[async_trait]
impl WorkflowStore for SqliteStore {
    async fn workflow_put(
        &self,
        namespace: &Namespace,
        name: &str,
        definition: &str,
        now: Timestamp,
    ) -> Result<(u32, bool), Error> {
        let (namespace, name, definition) =
            (namespace.clone(), name.to_owned(), definition.to_owned());
        self.write(move |w: &mut Writer| workflow_put(&w.conn, &namespace, &name, &definition, now))
            .await
    }

    async fn workflow_get(
        &self,
        namespace: &Namespace,
        name: &str,
        version: Option<u32>,
    ) -> Result<WorkflowVersion, Error> {
        let (namespace, name) = (namespace.clone(), name.to_owned());
        self.read(move |conn| workflow_get(conn, &namespace, &name, version))
            .await
    }

    async fn workflows_list(&self, namespace: &Namespace) -> Result<Vec<WorkflowVersion>, Error> {
        let namespace = namespace.clone();
        self.read(move |conn| workflows_list(conn, &namespace))
            .await
    }

    async fn workflow_versions(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<Vec<WorkflowVersion>, Error> {
        let (namespace, name) = (namespace.clone(), name.to_owned());
        self.read(move |conn| workflow_versions(conn, &namespace, &name))
            .await
    }
}

fn workflow_put(
    conn: &Connection,
    namespace: &Namespace,
    name: &str,
    definition: &str,
    now: Timestamp,
) -> Applied<(u32, bool)> {
    let latest: Option<(u32, String)> = conn
        .prepare_cached(
            "SELECT version, definition FROM workflows WHERE namespace = ?1 AND name = ?2 \
             ORDER BY version DESC LIMIT 1",
        )?
        .query_row(params![namespace.as_str(), name], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    if let Some((version, text)) = &latest
        && text == definition
    {
        return Ok(Ok((*version, false)));
    }
    let version = latest.map_or(1, |(v, _)| v + 1);
    conn.prepare_cached(
        "INSERT INTO workflows (namespace, name, version, definition, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![namespace.as_str(), name, version, definition, now.as_millis()])?;
    Ok(Ok((version, true)))
}

fn version_from_row(name: &str, r: &Row<'_>) -> rusqlite::Result<WorkflowVersion> {
    Ok(WorkflowVersion {
        name: name.to_owned(),
        version: r.get(0)?,
        definition: r.get(1)?,
        created_at: Timestamp::from_millis(r.get(2)?),
    })
}

/// One version, or the latest. Two fixed statements rather than one with
/// `?3 IS NULL`: SQLite re-prepares a statement whose plan depends on a
/// bound value every time that value is bound.
fn workflow_get(
    conn: &Connection,
    namespace: &Namespace,
    name: &str,
    version: Option<u32>,
) -> Applied<WorkflowVersion> {
    const COLUMNS: &str = "SELECT version, definition, created_at FROM workflows \
         WHERE namespace = ?1 AND name = ?2";
    let found = match version {
        Some(v) => conn
            .prepare_cached(&format!("{COLUMNS} AND version = ?3"))?
            .query_row(params![namespace.as_str(), name, v], |r| {
                version_from_row(name, r)
            }),
        None => conn
            .prepare_cached(&format!("{COLUMNS} ORDER BY version DESC LIMIT 1"))?
            .query_row(params![namespace.as_str(), name], |r| {
                version_from_row(name, r)
            }),
    }
    .optional()?;
    Ok(found.ok_or_else(|| workflow_not_found(name, version)))
}

/// SQLite takes the other columns from the row holding the `MAX`.
fn workflows_list(conn: &Connection, namespace: &Namespace) -> Applied<Vec<WorkflowVersion>> {
    let latest = conn
        .prepare_cached(
            "SELECT name, MAX(version), definition, created_at FROM workflows \
             WHERE namespace = ?1 GROUP BY name ORDER BY name",
        )?
        .query_map([namespace.as_str()], |r| {
            Ok(WorkflowVersion {
                name: r.get(0)?,
                version: r.get(1)?,
                definition: r.get(2)?,
                created_at: Timestamp::from_millis(r.get(3)?),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Ok(latest))
}

fn workflow_versions(
    conn: &Connection,
    namespace: &Namespace,
    name: &str,
) -> Applied<Vec<WorkflowVersion>> {
    let versions: Vec<WorkflowVersion> = conn
        .prepare_cached(
            "SELECT version, definition, created_at FROM workflows \
             WHERE namespace = ?1 AND name = ?2 ORDER BY version",
        )?
        .query_map(params![namespace.as_str(), name], |r| {
            version_from_row(name, r)
        })?
        .collect::<rusqlite::Result<_>>()?;
    if versions.is_empty() {
        return Ok(Err(workflow_not_found(name, None)));
    }
    Ok(Ok(versions))
}
