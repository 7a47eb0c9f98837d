//! Runs on PostgreSQL. Every node may advance any run: `run_update` is a
//! compare-and-set on the run's revision, so the database, not a node,
//! decides who wins. A journal write and the jobs it starts are one
//! statement when they can be, one transaction otherwise.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use keel_core::workflow::{RunId, RunState, RunStatus};
use keel_core::{Error, ErrorCode, Namespace, Timestamp};
use keel_store::{
    IDEMPOTENCY_WINDOW_MS, NewRun, OwnedJob, RunFilter, RunPage, RunStore, StoredRun, run_not_found,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::jobs::rows::{RUN_INSERT_WITH_JOBS, RUN_UPDATE_WITH_JOBS};
use crate::owner::OwnedRows;
use crate::{PostgresStore, Woken, db};

#[async_trait]
impl RunStore for PostgresStore {
    #[tracing::instrument(level = "debug", name = "store.commit", skip_all, fields(db.system.name = "postgresql", op = "run_create"))]
    async fn run_create(
        &self,
        namespace: &Namespace,
        run: NewRun,
        jobs: Vec<OwnedJob>,
        now: Timestamp,
    ) -> Result<(StoredRun, bool), Error> {
        let mut client = self.client().await?;
        let rows = OwnedRows::new(&jobs, now)?;
        if self
            .run_create_in_one(&client, namespace, &run, &rows, now)
            .await?
        {
            self.wake(rows.woken, now);
            return Ok((run.stored(namespace, now), false));
        }
        let tx = client.transaction().await.map_err(db)?;
        let (run, found) = run_create(&tx, namespace, run, now).await?;
        let woken = if found {
            Woken::default()
        } else {
            self.insert_owned(&tx, rows, now).await?
        };
        tx.commit().await.map_err(db)?;
        self.wake(woken, now);
        Ok((run, found))
    }

    async fn run_get(&self, namespace: &Namespace, id: RunId) -> Result<StoredRun, Error> {
        let client = self.client().await?;
        run_get(&client, namespace, id).await
    }

    #[tracing::instrument(level = "debug", name = "store.commit", skip_all, fields(db.system.name = "postgresql", op = "run_update"))]
    async fn run_update(
        &self,
        namespace: &Namespace,
        id: RunId,
        rev: u64,
        state: &RunState,
        jobs: Vec<OwnedJob>,
        now: Timestamp,
    ) -> Result<u64, Error> {
        let rev = self
            .write_journal(namespace, id, rev, state, jobs, now)
            .await?;
        if state.status.is_final() {
            self.run_finished(id);
        }
        Ok(rev)
    }

    async fn runs_list(&self, namespace: &Namespace, filter: &RunFilter) -> Result<RunPage, Error> {
        let client = self.client().await?;
        runs_list(&client, namespace, filter).await
    }

    async fn runs_count(
        &self,
        namespace: &Namespace,
        ended_since: Timestamp,
    ) -> Result<Vec<(RunStatus, u64)>, Error> {
        let client = self.client().await?;
        let rows = client
            .query(
                include_str!("../queries/runs/runs_count.sql"),
                &[&namespace.as_str(), &ended_since.as_millis()],
            )
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let status = RunStatus::parse(r.get::<_, &str>(0))?;
                let n = r.get::<_, i64>(1) as u64;
                (n > 0).then_some((status, n))
            })
            .collect())
    }

    async fn runs_prune(&self, finished_before: Timestamp, limit: u32) -> Result<u64, Error> {
        let client = self.client().await?;
        runs_prune(&client, finished_before, limit).await
    }

    async fn runs_active(&self, cursor: Option<String>, limit: u32) -> Result<RunPage, Error> {
        let client = self.client().await?;
        runs_active(&client, cursor, limit).await
    }
}

impl PostgresStore {
    /// A journal write and the jobs it starts: one statement when it can
    /// be, a transaction otherwise.
    async fn write_journal(
        &self,
        namespace: &Namespace,
        id: RunId,
        rev: u64,
        state: &RunState,
        jobs: Vec<OwnedJob>,
        now: Timestamp,
    ) -> Result<u64, Error> {
        let mut client = self.client().await?;
        if jobs.is_empty() {
            return run_update(&client, namespace, id, rev, state, now).await;
        }
        let rows = OwnedRows::new(&jobs, now)?;
        let run = (namespace, id, rev);
        if let Some(rev) = self
            .run_update_in_one(&client, run, state, &rows, now)
            .await?
        {
            self.wake(rows.woken, now);
            return Ok(rev);
        }
        let tx = client.transaction().await.map_err(db)?;
        let rev = run_update(&tx, namespace, id, rev, state, now).await?;
        let woken = self.insert_owned(&tx, rows, now).await?;
        tx.commit().await.map_err(db)?;
        self.wake(woken, now);
        Ok(rev)
    }

    /// A new run without an idempotency key and the jobs of its first steps
    /// in one statement, unless a namespace is near its bound (`false`: take
    /// the transaction).
    async fn run_create_in_one(
        &self,
        client: &impl GenericClient,
        namespace: &Namespace,
        run: &NewRun,
        jobs: &OwnedRows<'_>,
        now: Timestamp,
    ) -> Result<bool, Error> {
        if run.idempotency_key.is_some() || self.needs_transaction(client, jobs).await? {
            return Ok(false);
        }
        let stmt = client
            .prepare_cached(RUN_INSERT_WITH_JOBS)
            .await
            .map_err(db)?;
        let (now_ms, id, ns, version, status, state) = (
            now.as_millis(),
            run_uuid(run.id),
            namespace.as_str(),
            run.version as i32,
            run.state.status.as_str(),
            state_json(&run.state)?,
        );
        let mut params = jobs.rows.params(&now_ms);
        params.extend([
            &id as &(dyn ToSql + Sync),
            &ns,
            &run.workflow,
            &version,
            &status,
            &run.input,
            &state,
        ]);
        client.query_one(&stmt, &params).await.map_err(db)?;
        Ok(true)
    }

    /// A run's journal and the jobs it starts in one statement, when no
    /// namespace they go to is near its bound (near it, only a transaction
    /// can count exactly and still roll back). `None`: take the transaction.
    async fn run_update_in_one(
        &self,
        client: &impl GenericClient,
        (namespace, id, rev): (&Namespace, RunId, u64),
        state: &RunState,
        jobs: &OwnedRows<'_>,
        now: Timestamp,
    ) -> Result<Option<u64>, Error> {
        if self.needs_transaction(client, jobs).await? {
            return Ok(None);
        }
        let stmt = client
            .prepare_cached(RUN_UPDATE_WITH_JOBS)
            .await
            .map_err(db)?;
        let (status, state, now_ms, run, ns, rev_at) = (
            state.status.as_str(),
            state_json(state)?,
            now.as_millis(),
            run_uuid(id),
            namespace.as_str(),
            rev as i64,
        );
        let mut params = jobs.rows.params(&now_ms);
        params.extend([&status as &(dyn ToSql + Sync), &state, &run, &ns, &rev_at]);
        match client.query_opt(&stmt, &params).await.map_err(db)? {
            Some(row) => Ok(Some(row.get::<_, i64>(0) as u64)),
            None => Err(cas_refused(client, namespace, id, rev).await),
        }
    }
}

fn state_json(state: &RunState) -> Result<String, Error> {
    keel_store::codec::encode("run journal", state)
}

/// From the columns of `queries/run_columns.sql`.
fn run_from_row(row: &Row) -> Result<(i64, StoredRun), Error> {
    let id = run_id(row.get(1));
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

/// Creates `run` inside `tx`, or finds the earlier run under its
/// idempotency key (then `true`). The caller commits.
async fn run_create(
    tx: &impl GenericClient,
    namespace: &Namespace,
    run: NewRun,
    now: Timestamp,
) -> Result<(StoredRun, bool), Error> {
    let insert = tx
        .prepare_cached(include_str!("../queries/runs/run_insert.sql"))
        .await
        .map_err(db)?;
    let state = state_json(&run.state)?;
    let version = run.version as i32;
    let params = [
        &run_uuid(run.id) as &(dyn tokio_postgres::types::ToSql + Sync),
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
                include_str!("../queries/runs/run_by_key.sql"),
                &[&namespace.as_str(), key],
            )
            .await
            .map_err(db)?;
        let created_at = Timestamp::from_millis(earlier.get(1));
        if now.millis_since(created_at) < IDEMPOTENCY_WINDOW_MS {
            let id = run_id(earlier.get(0));
            let found = run_get(tx, namespace, id).await?;
            return Ok((found, true));
        }
        tx.execute(
            include_str!("../queries/runs/run_release_key.sql"),
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

async fn run_get(
    client: &impl GenericClient,
    namespace: &Namespace,
    id: RunId,
) -> Result<StoredRun, Error> {
    let sql = format!(
        "SELECT {} FROM keel_runs WHERE id = $1 AND namespace = $2",
        include_str!("../queries/runs/run_columns.sql").trim()
    );
    // Prepared once per connection: every advance of a run on a shared
    // database reads it first.
    let stmt = client.prepare_cached(&sql).await.map_err(db)?;
    let row = client
        .query_opt(&stmt, &[&run_uuid(id), &namespace.as_str()])
        .await
        .map_err(db)?
        .ok_or_else(|| run_not_found(id))?;
    run_from_row(&row).map(|(_, run)| run)
}

async fn run_update(
    client: &impl GenericClient,
    namespace: &Namespace,
    id: RunId,
    rev: u64,
    state: &RunState,
    now: Timestamp,
) -> Result<u64, Error> {
    let stmt = client
        .prepare_cached(include_str!("../queries/runs/run_update.sql"))
        .await
        .map_err(db)?;
    let updated = client
        .query_opt(
            &stmt,
            &[
                &state.status.as_str(),
                &state_json(state)?,
                &now.as_millis(),
                &run_uuid(id),
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
async fn cas_refused(
    client: &impl GenericClient,
    namespace: &Namespace,
    id: RunId,
    rev: u64,
) -> Error {
    let exists = client
        .query_opt(
            "SELECT 1 FROM keel_runs WHERE id = $1 AND namespace = $2",
            &[&run_uuid(id), &namespace.as_str()],
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

async fn runs_list(
    client: &impl GenericClient,
    namespace: &Namespace,
    filter: &RunFilter,
) -> Result<RunPage, Error> {
    let status = filter.status.map(RunStatus::as_str);
    let rows = client
        .query(
            include_str!("../queries/runs/runs_list.sql"),
            &[
                &namespace.as_str(),
                &filter.workflow,
                &status,
                &cursor_seq(filter.cursor.as_ref())?,
                &(i64::from(filter.limit) + 1),
                &filter.since.map(Timestamp::as_millis),
                &filter.until.map(Timestamp::as_millis),
            ],
        )
        .await
        .map_err(db)?;
    page(rows, filter.limit)
}

async fn runs_active(
    client: &impl GenericClient,
    cursor: Option<String>,
    limit: u32,
) -> Result<RunPage, Error> {
    let rows = client
        .query(
            include_str!("../queries/runs/runs_active.sql"),
            &[&cursor_seq(cursor.as_ref())?, &(i64::from(limit) + 1)],
        )
        .await
        .map_err(db)?;
    page(rows, limit)
}

async fn runs_prune(
    client: &impl GenericClient,
    finished_before: Timestamp,
    limit: u32,
) -> Result<u64, Error> {
    let row = client
        .query_one(
            include_str!("../queries/runs/runs_prune.sql"),
            &[&finished_before.as_millis(), &i64::from(limit)],
        )
        .await
        .map_err(db)?;
    Ok(row.get::<_, i64>(0) as u64)
}

fn run_uuid(id: RunId) -> uuid::Uuid {
    uuid::Uuid::from_bytes(*id.as_bytes())
}

fn run_id(id: uuid::Uuid) -> RunId {
    RunId::from_bytes(*id.as_bytes())
}
