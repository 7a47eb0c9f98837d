//! Project versions on SQLite: one row each, the body as JSON. A version is
//! written in the writer's transaction after the check that the project is
//! still where the plan saw it, so two applies cannot both go on top.

use async_trait::async_trait;
use keel_core::project::VersionState;
use keel_core::{Error, ProjectName, Timestamp};
use keel_store::{ProjectStore, ProjectVersion, project_moved, version_not_found};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::SqliteStore;
use crate::rows::{corrupt, from_json, to_json};
use crate::writer::Writer;

const COLUMNS: &str = "project, version, state, body, created_at, finished_at";

#[async_trait]
impl ProjectStore for SqliteStore {
    async fn project_begin(&self, version: &ProjectVersion) -> Result<(), Error> {
        let version = version.clone();
        self.write(move |w: &mut Writer| {
            let head = newest(&w.conn, &version.project)?;
            let expected = version.version.saturating_sub(1);
            let on_top = match &head {
                None => expected == 0,
                Some(h) => h.version == expected && h.state != VersionState::Applying,
            };
            if !on_top {
                return Ok(Err(project_moved(&version.project, expected)));
            }
            w.conn
                .prepare_cached(&format!(
                    "INSERT INTO project_versions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, NULL)"
                ))?
                .execute(params![
                    version.project.as_str(),
                    version.version as i64,
                    version.state.as_str(),
                    to_json("project version", &version.body)?,
                    version.created_at.as_millis(),
                ])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn project_settle(
        &self,
        project: &ProjectName,
        version: u64,
        state: VersionState,
        error: Option<String>,
        now: Timestamp,
    ) -> Result<(), Error> {
        let project = project.clone();
        self.write(move |w: &mut Writer| {
            let Some(mut found) = one(&w.conn, &project, version)? else {
                return Ok(Err(version_not_found(&project, version)));
            };
            if found.state != VersionState::Applying {
                return Ok(Err(keel_store::settled_already(&project, version)));
            }
            found.body.error = error;
            w.conn
                .prepare_cached(
                    "UPDATE project_versions SET state = ?3, body = ?4, finished_at = ?5 \
                     WHERE project = ?1 AND version = ?2",
                )?
                .execute(params![
                    project.as_str(),
                    version as i64,
                    state.as_str(),
                    to_json("project version", &found.body)?,
                    now.as_millis()
                ])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn project_version(
        &self,
        project: &ProjectName,
        version: u64,
    ) -> Result<ProjectVersion, Error> {
        let project = project.clone();
        self.read(move |conn| {
            Ok(one(conn, &project, version)?.ok_or_else(|| version_not_found(&project, version)))
        })
        .await
    }

    async fn project_versions(
        &self,
        project: &ProjectName,
        limit: u32,
    ) -> Result<Vec<ProjectVersion>, Error> {
        let project = project.clone();
        self.read(move |conn| {
            let versions = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM project_versions WHERE project = ?1 \
                     ORDER BY version DESC LIMIT ?2"
                ))?
                .query_map(params![project.as_str(), limit], version_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(versions))
        })
        .await
    }

    async fn project_heads(&self) -> Result<Vec<ProjectVersion>, Error> {
        self.read(|conn| Ok(Ok(newest_each(conn, "")?))).await
    }

    async fn project_owners(&self) -> Result<Vec<ProjectVersion>, Error> {
        self.read(|conn| Ok(Ok(newest_each(conn, "WHERE state = 'applied'")?)))
            .await
    }
}

fn newest(conn: &Connection, project: &ProjectName) -> rusqlite::Result<Option<ProjectVersion>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM project_versions WHERE project = ?1 ORDER BY version DESC LIMIT 1"
    ))?
    .query_row([project.as_str()], version_from_row)
    .optional()
}

fn one(
    conn: &Connection,
    project: &ProjectName,
    version: u64,
) -> rusqlite::Result<Option<ProjectVersion>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM project_versions WHERE project = ?1 AND version = ?2"
    ))?
    .query_row(params![project.as_str(), version as i64], version_from_row)
    .optional()
}

/// Each project's newest version among the rows `filter` keeps.
fn newest_each(conn: &Connection, filter: &str) -> rusqlite::Result<Vec<ProjectVersion>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM project_versions WHERE (project, version) IN \
         (SELECT project, MAX(version) FROM project_versions {filter} GROUP BY project) \
         ORDER BY project"
    ))?
    .query_map([], version_from_row)?
    .collect()
}

fn version_from_row(r: &Row<'_>) -> rusqlite::Result<ProjectVersion> {
    let project: String = r.get(0)?;
    let state: String = r.get(2)?;
    let body: String = r.get(3)?;
    Ok(ProjectVersion {
        project: ProjectName::new(&project).map_err(|e| corrupt(e.message))?,
        version: r.get::<_, i64>(1)? as u64,
        state: VersionState::parse(&state).map_err(|e| corrupt(e.message))?,
        body: from_json(&body)?,
        created_at: Timestamp::from_millis(r.get::<_, i64>(4)?),
        finished_at: r.get::<_, Option<i64>>(5)?.map(Timestamp::from_millis),
    })
}
