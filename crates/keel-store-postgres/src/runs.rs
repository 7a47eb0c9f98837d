//! Workflow definitions and runs on PostgreSQL. Every node may advance any
//! run: `run_update` is a compare-and-set on the run's revision, so the
//! database, not a node, decides who wins.

use deadpool_postgres::GenericClient;
use keel_core::workflow::{RunId, RunState, RunStatus};
use keel_core::{Error, ErrorCode, Namespace, Timestamp};
use keel_store::{
    IDEMPOTENCY_WINDOW_MS, NewRun, RunFilter, RunPage, StoredRun, WorkflowVersion, run_not_found,
    workflow_not_found,
};
use tokio_postgres::Row;

use crate::{db, job_id, uuid};

pub fn state_json(state: &RunState) -> String {
    serde_json::to_string(state).unwrap_or_default()
}

/// From the columns of `queries/run_columns.sql`.
fn run_from_row(row: &Row) -> Result<(i64, StoredRun), Error> {
    let id = job_id(row.get(1));
    let state: &str = row.get(6);
    let state = serde_json::from_str(state)
        .map_err(|_| Error::internal(format!("run {id} has a journal this version cannot read")))?;
    Ok((
        row.get(0),
        StoredRun {
            id,
            namespace: Namespace::new(row.get(2))?,
            workflow: row.get(3),
            version: row.get::<_, i32>(4) as u32,
            input: row.get(5),
            state,
            created_at: Timestamp::from_millis(row.get(7)),
            updated_at: Timestamp::from_millis(row.get(8)),
            rev: row.get::<_, i64>(9) as u64,
        },
    ))
}

pub async fn workflow_put(
    client: &mut deadpool_postgres::Client,
    namespace: &Namespace,
    name: &str,
    definition: &str,
    now: Timestamp,
) -> Result<(u32, bool), Error> {
    let tx = client.transaction().await.map_err(db)?;
    tx.execute(
        include_str!("../queries/workflow_lock.sql"),
        &[&namespace.as_str(), &name],
    )
    .await
    .map_err(db)?;
    let latest = tx
        .query_opt(
            include_str!("../queries/workflow_latest.sql"),
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
        include_str!("../queries/workflow_insert.sql"),
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

pub async fn workflow_versions(
    client: &impl GenericClient,
    namespace: &Namespace,
    name: &str,
    version: Option<u32>,
) -> Result<Vec<WorkflowVersion>, Error> {
    let version = version.map(|v| v as i32);
    let rows = client
        .query(
            include_str!("../queries/workflow_versions.sql"),
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

/// Creates `run` inside `tx`, or finds the earlier run under its
/// idempotency key (then `true`). The caller commits.
pub async fn run_create(
    tx: &impl GenericClient,
    namespace: &Namespace,
    run: NewRun,
    now: Timestamp,
) -> Result<(StoredRun, bool), Error> {
    let insert = tx
        .prepare_cached(include_str!("../queries/run_insert.sql"))
        .await
        .map_err(db)?;
    let state = state_json(&run.state);
    let version = run.version as i32;
    let params = [
        &uuid(run.id) as &(dyn tokio_postgres::types::ToSql + Sync),
        &namespace.as_str(),
        &run.workflow,
        &version,
        &run.state.status.as_str(),
        &run.input,
        &state,
        &run.idempotency_key,
        &now.as_millis(),
    ];
    let mut inserted = tx.query_opt(&insert, &params).await.map_err(db)?;
    if inserted.is_none()
        && let Some(key) = &run.idempotency_key
    {
        let earlier = tx
            .query_one(
                include_str!("../queries/run_by_key.sql"),
                &[&namespace.as_str(), key],
            )
            .await
            .map_err(db)?;
        let created_at = Timestamp::from_millis(earlier.get(1));
        if now.millis_since(created_at) < IDEMPOTENCY_WINDOW_MS {
            let id = job_id(earlier.get(0));
            let found = run_get(tx, namespace, id).await?;
            return Ok((found, true));
        }
        tx.execute(
            include_str!("../queries/run_release_key.sql"),
            &[&earlier.get::<_, uuid::Uuid>(0)],
        )
        .await
        .map_err(db)?;
        inserted = tx.query_opt(&insert, &params).await.map_err(db)?;
    }
    if inserted.is_none() {
        return Err(Error::internal("the run was not stored"));
    }
    Ok((run.stored(namespace, now), false))
}

pub async fn run_get(
    client: &impl GenericClient,
    namespace: &Namespace,
    id: RunId,
) -> Result<StoredRun, Error> {
    let sql = format!(
        "SELECT {} FROM keel_runs WHERE id = $1 AND namespace = $2",
        include_str!("../queries/run_columns.sql").trim()
    );
    // Prepared once per connection: every advance of a run on a shared
    // database reads it first.
    let stmt = client.prepare_cached(&sql).await.map_err(db)?;
    let row = client
        .query_opt(&stmt, &[&uuid(id), &namespace.as_str()])
        .await
        .map_err(db)?
        .ok_or_else(|| run_not_found(id))?;
    run_from_row(&row).map(|(_, run)| run)
}

pub async fn run_update(
    client: &impl GenericClient,
    namespace: &Namespace,
    id: RunId,
    rev: u64,
    state: &RunState,
    now: Timestamp,
) -> Result<u64, Error> {
    let stmt = client
        .prepare_cached(include_str!("../queries/run_update.sql"))
        .await
        .map_err(db)?;
    let updated = client
        .query_opt(
            &stmt,
            &[
                &state.status.as_str(),
                &state_json(state),
                &now.as_millis(),
                &uuid(id),
                &namespace.as_str(),
                &(rev as i64),
            ],
        )
        .await
        .map_err(db)?;
    match updated {
        Some(row) => Ok(row.get::<_, i64>(0) as u64),
        None => Err(cas_refused(client, namespace, id, rev).await),
    }
}

/// Why a compare and set of a run's journal matched no row: the run changed
/// since `rev`, or it is gone.
pub async fn cas_refused(
    client: &impl GenericClient,
    namespace: &Namespace,
    id: RunId,
    rev: u64,
) -> Error {
    let exists = client
        .query_opt(
            "SELECT 1 FROM keel_runs WHERE id = $1 AND namespace = $2",
            &[&uuid(id), &namespace.as_str()],
        )
        .await;
    match exists {
        Ok(Some(_)) => Error::new(
            ErrorCode::Conflict,
            format!("run {id} changed since revision {rev}"),
        ),
        Ok(None) => run_not_found(id),
        Err(e) => db(e),
    }
}

fn page(rows: Vec<Row>, limit: u32) -> Result<RunPage, Error> {
    let more = rows.len() > limit as usize;
    let mut runs = Vec::with_capacity(rows.len());
    let mut last = None;
    for row in rows.iter().take(limit as usize) {
        let (seq, run) = run_from_row(row)?;
        last = Some(seq);
        runs.push(run);
    }
    Ok(RunPage {
        runs,
        next_cursor: more.then(|| last.map(|s| s.to_string())).flatten(),
    })
}

fn cursor_seq(cursor: Option<&String>) -> Result<Option<i64>, Error> {
    cursor
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| Error::invalid("cursor is not one this server gave out"))
        })
        .transpose()
}

pub async fn runs_list(
    client: &impl GenericClient,
    namespace: &Namespace,
    filter: &RunFilter,
) -> Result<RunPage, Error> {
    let status = filter.status.map(RunStatus::as_str);
    let rows = client
        .query(
            include_str!("../queries/runs_list.sql"),
            &[
                &namespace.as_str(),
                &filter.workflow,
                &status,
                &cursor_seq(filter.cursor.as_ref())?,
                &(i64::from(filter.limit) + 1),
            ],
        )
        .await
        .map_err(db)?;
    page(rows, filter.limit)
}

pub async fn runs_active(
    client: &impl GenericClient,
    cursor: Option<String>,
    limit: u32,
) -> Result<RunPage, Error> {
    let rows = client
        .query(
            include_str!("../queries/runs_active.sql"),
            &[&cursor_seq(cursor.as_ref())?, &(i64::from(limit) + 1)],
        )
        .await
        .map_err(db)?;
    page(rows, limit)
}

pub async fn runs_prune(
    client: &impl GenericClient,
    finished_before: Timestamp,
    limit: u32,
) -> Result<u64, Error> {
    let row = client
        .query_one(
            include_str!("../queries/runs_prune.sql"),
            &[&finished_before.as_millis(), &i64::from(limit)],
        )
        .await
        .map_err(db)?;
    Ok(row.get::<_, i64>(0) as u64)
}
