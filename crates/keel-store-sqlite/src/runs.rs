//! Runs on the embedded store. Writes run on the writer thread inside its
//! open transaction (so they are group-committed and fsynced like jobs); reads
//! run on the reader connections. The store keeps no run in memory (the
//! workflow driver keeps the journals it wrote). A run's write and the jobs
//! it starts are one write ([`Writer::write_owned`]).
//!
//! Writes must not fault on constraints (a fault rolls back the whole group
//! commit): every conflict is looked for first, which the single writer makes safe.

use async_trait::async_trait;
use keel_core::workflow::{RunId, RunState, RunStatus};
use keel_core::{Error, ErrorCode, Namespace, Timestamp};
use keel_store::{
    IDEMPOTENCY_WINDOW_MS, NewRun, OwnedJob, RunFilter, RunPage, RunStore, StoredRun, run_not_found,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use crate::SqliteStore;
use crate::rows::{cut_page, id_bytes};
use crate::writer::{Applied, Writer};

#[async_trait]
impl RunStore for SqliteStore {
    async fn run_create(
        &self,
        namespace: &Namespace,
        run: NewRun,
        jobs: Vec<OwnedJob>,
        now: Timestamp,
    ) -> Result<(StoredRun, bool), Error> {
        let namespace = namespace.clone();
        let state = state_json(&run.state)?;
        self.write(move |w: &mut Writer| {
            w.write_owned(jobs, now, |conn| {
                run_create(conn, &namespace, run, &state, now)
            })
        })
        .await
    }

    async fn run_get(&self, namespace: &Namespace, id: RunId) -> Result<StoredRun, Error> {
        let namespace = namespace.clone();
        self.read(move |conn| run_get(conn, &namespace, id)).await
    }

    async fn run_update(
        &self,
        namespace: &Namespace,
        id: RunId,
        rev: u64,
        state: &RunState,
        jobs: Vec<OwnedJob>,
        now: Timestamp,
    ) -> Result<u64, Error> {
        let namespace = namespace.clone();
        let (status, json) = (state.status, state_json(state)?);
        let rev = self
            .write(move |w: &mut Writer| {
                w.write_owned(jobs, now, |conn| {
                    run_update(conn, &namespace, id, rev, (status, &json), now)
                })
            })
            .await?;
        if status.is_final() {
            self.signal.run_finished(id);
        }
        Ok(rev)
    }

    async fn runs_list(&self, namespace: &Namespace, filter: &RunFilter) -> Result<RunPage, Error> {
        let (namespace, filter) = (namespace.clone(), filter.clone());
        self.read(move |conn| runs_page(conn, Some(&namespace), &filter))
            .await
    }

    async fn runs_count(
        &self,
        namespace: &Namespace,
        ended_since: Timestamp,
    ) -> Result<Vec<(RunStatus, u64)>, Error> {
        let namespace = namespace.clone();
        self.read(move |conn| runs_count(conn, &namespace, ended_since))
            .await
    }

    async fn runs_prune(&self, finished_before: Timestamp, limit: u32) -> Result<u64, Error> {
        self.write(move |w: &mut Writer| runs_prune(&w.conn, finished_before, limit))
            .await
    }

    async fn runs_active(&self, cursor: Option<String>, limit: u32) -> Result<RunPage, Error> {
        let filter = active_filter(cursor, limit);
        self.read(move |conn| runs_page(conn, None, &filter)).await
    }
}

const RUN_COLUMNS: &str =
    "seq, id, namespace, workflow, version, input, state, created_at, updated_at, rev";

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<(i64, Option<StoredRun>)> {
    let namespace: String = row.get(2)?;
    let state: String = row.get(6)?;
    let run = match (
        Namespace::new(&namespace),
        serde_json::from_str::<RunState>(&state),
    ) {
        (Ok(namespace), Ok(state)) => Some(StoredRun {
            id: RunId::from_bytes(id_bytes(&row.get::<_, Vec<u8>>(1)?)?),
            namespace,
            workflow: row.get(3)?,
            version: row.get(4)?,
            input: row.get(5)?,
            state,
            created_at: Timestamp::from_millis(row.get(7)?),
            updated_at: Timestamp::from_millis(row.get(8)?),
            rev: row.get::<_, i64>(9)? as u64,
        }),
        _ => None,
    };
    Ok((row.get(0)?, run))
}

fn corrupt(id: impl std::fmt::Display) -> Error {
    Error::internal(format!("run {id} has a journal this version cannot read"))
}

fn state_json(state: &RunState) -> Result<String, Error> {
    keel_store::codec::encode("run journal", state)
}

/// Creates `run` (its journal already as JSON, made off the writer thread);
/// the flag says whether it was created (its jobs are to be written too)
/// rather than found under its idempotency key.
fn run_create(
    conn: &Connection,
    namespace: &Namespace,
    run: NewRun,
    state: &str,
    now: Timestamp,
) -> Applied<((StoredRun, bool), bool)> {
    if let Some(key) = &run.idempotency_key {
        let earlier: Option<(i64, i64)> = conn
            .prepare_cached(
                "SELECT seq, created_at FROM runs WHERE namespace = ?1 AND idempotency_key = ?2",
            )?
            .query_row(params![namespace.as_str(), key], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        if let Some((seq, created_at)) = earlier {
            if now.millis_since(Timestamp::from_millis(created_at)) < IDEMPOTENCY_WINDOW_MS {
                return get_by_seq(conn, seq).map(|r| r.map(|run| ((run, true), false)));
            }
            conn.prepare_cached("UPDATE runs SET idempotency_key = NULL WHERE seq = ?1")?
                .execute([seq])?;
        }
    }
    conn.prepare_cached(
        "INSERT INTO runs (id, namespace, workflow, version, status, input, state, idempotency_key, \
         created_at, updated_at, rev) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, 1)",
    )?
    .execute(params![
        run.id.as_bytes(),
        namespace.as_str(),
        run.workflow,
        run.version,
        run.state.status.as_str(),
        run.input,
        state,
        run.idempotency_key,
        now.as_millis(),
    ])?;
    Ok(Ok(((run.stored(namespace, now), false), true)))
}

fn get_by_seq(conn: &Connection, seq: i64) -> Applied<StoredRun> {
    let (_, run) = conn
        .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE seq = ?1"))?
        .query_row([seq], run_from_row)?;
    Ok(run.ok_or_else(|| corrupt(seq)))
}

fn run_get(conn: &Connection, namespace: &Namespace, id: RunId) -> Applied<StoredRun> {
    let found = conn
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1 AND namespace = ?2"
        ))?
        .query_row(params![id.as_bytes(), namespace.as_str()], run_from_row)
        .optional()?;
    Ok(match found {
        None => Err(run_not_found(id)),
        Some((_, run)) => run.ok_or_else(|| corrupt(id)),
    })
}

/// Writes a journal (as JSON) if the run is still at `rev`; the flag says
/// whether it was written (and so its jobs are to be written too).
fn run_update(
    conn: &Connection,
    namespace: &Namespace,
    id: RunId,
    rev: u64,
    (status, state): (RunStatus, &str),
    now: Timestamp,
) -> Applied<(u64, bool)> {
    let changed = conn
        .prepare_cached(
            "UPDATE runs SET status = ?1, state = ?2, updated_at = ?3, rev = rev + 1 \
             WHERE id = ?4 AND namespace = ?5 AND rev = ?6",
        )?
        .execute(params![
            status.as_str(),
            state,
            now.as_millis(),
            id.as_bytes(),
            namespace.as_str(),
            rev as i64,
        ])?;
    if changed == 1 {
        return Ok(Ok((rev + 1, true)));
    }
    let exists = conn
        .prepare_cached("SELECT 1 FROM runs WHERE id = ?1 AND namespace = ?2")?
        .query_row(params![id.as_bytes(), namespace.as_str()], |_| Ok(()))
        .optional()?
        .is_some();
    Ok(Err(if exists {
        Error::new(
            ErrorCode::Conflict,
            format!("run {id} changed since revision {rev}"),
        )
    } else {
        run_not_found(id)
    }))
}

/// Newest first for one namespace, or (with `namespace` `None`) running runs
/// of every namespace oldest first.
fn runs_page(
    conn: &Connection,
    namespace: Option<&Namespace>,
    filter: &RunFilter,
) -> Applied<RunPage> {
    let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE ");
    let mut args: Vec<Value> = Vec::new();
    let newest_first = namespace.is_some();
    match namespace {
        Some(ns) => {
            sql.push_str("namespace = ?");
            args.push(Value::Text(ns.to_string()));
        }
        None => sql.push_str("status = 'running'"),
    }
    if let Some(workflow) = &filter.workflow {
        sql.push_str(" AND workflow = ?");
        args.push(Value::Text(workflow.clone()));
    }
    if let Some(status) = filter.status {
        // A literal from a fixed enum, so the partial index can serve it.
        sql.push_str(&format!(" AND status = '{}'", status.as_str()));
    }
    if let Some(since) = filter.since {
        sql.push_str(" AND created_at >= ?");
        args.push(Value::Integer(since.as_millis()));
    }
    if let Some(until) = filter.until {
        sql.push_str(" AND created_at < ?");
        args.push(Value::Integer(until.as_millis()));
    }
    if let Some(cursor) = &filter.cursor {
        let Ok(seq) = cursor.parse::<i64>() else {
            return Ok(Err(Error::invalid(
                "cursor is not one this server gave out",
            )));
        };
        sql.push_str(if newest_first {
            " AND seq < ?"
        } else {
            " AND seq > ?"
        });
        args.push(Value::Integer(seq));
    }
    sql.push_str(if newest_first {
        " ORDER BY seq DESC LIMIT ?"
    } else {
        " ORDER BY seq LIMIT ?"
    });
    args.push(Value::Integer(i64::from(filter.limit) + 1));
    let mut rows: Vec<(i64, Option<StoredRun>)> = conn
        .prepare_cached(&sql)?
        .query_map(params_from_iter(args), run_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    let next_cursor = cut_page(&mut rows, filter.limit);
    Ok(Ok(RunPage {
        runs: rows.into_iter().filter_map(|(_, r)| r).collect(),
        next_cursor,
    }))
}

/// The running ones through `runs_running`, the ended ones through
/// `runs_finished` (a finished run's `updated_at` is when it ended);
/// `+namespace` keeps the planner off `runs_by_namespace`, which would read
/// every run the namespace keeps.
fn runs_count(
    conn: &Connection,
    namespace: &Namespace,
    ended_since: Timestamp,
) -> Applied<Vec<(RunStatus, u64)>> {
    let counts: Vec<(String, i64)> = conn
        .prepare_cached(
            "SELECT 'running', COUNT(*) FROM runs WHERE status = 'running' AND +namespace = ?1 \
             UNION ALL \
             SELECT status, COUNT(*) FROM runs \
             WHERE status <> 'running' AND updated_at >= ?2 AND +namespace = ?1 GROUP BY status",
        )?
        .query_map(params![namespace.as_str(), ended_since.as_millis()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Ok(counts
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .filter_map(|(status, n)| Some((RunStatus::parse(&status)?, n as u64)))
        .collect()))
}

/// The filter of [`runs_page`] for a driver's sweep.
fn runs_prune(conn: &Connection, finished_before: Timestamp, limit: u32) -> Applied<u64> {
    let pruned = conn
        .prepare_cached(
            "DELETE FROM runs WHERE seq IN (SELECT seq FROM runs WHERE status <> 'running' \
             AND updated_at <= ?1 ORDER BY updated_at LIMIT ?2)",
        )?
        .execute(params![finished_before.as_millis(), limit])?;
    Ok(Ok(pruned as u64))
}

fn active_filter(cursor: Option<String>, limit: u32) -> RunFilter {
    RunFilter {
        status: Some(RunStatus::Running),
        limit,
        cursor,
        ..RunFilter::default()
    }
}
