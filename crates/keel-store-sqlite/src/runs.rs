//! Workflow definitions and runs. Writes run on the writer thread inside its
//! open transaction (so they are group-committed and fsynced like jobs); reads
//! run on the reader connections. The store keeps no run in memory (the
//! workflow driver keeps the journals it wrote). A run's write and the jobs
//! it starts are one command ([`crate::writer::run_write`]).
//!
//! Writes must not fault on constraints (a fault rolls back the whole group
//! commit): every conflict is looked for first, which the single writer makes safe.

use keel_core::workflow::{RunId, RunState, RunStatus};
use keel_core::{Error, ErrorCode, Namespace, Timestamp};
use keel_store::{
    IDEMPOTENCY_WINDOW_MS, NewRun, RunFilter, RunPage, StoredRun, WorkflowVersion, run_not_found,
    workflow_not_found,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use crate::rows::{blob_id, cut_page};

type Applied<T> = rusqlite::Result<Result<T, Error>>;

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
            id: blob_id(&row.get::<_, Vec<u8>>(1)?),
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

pub fn state_json(state: &RunState) -> String {
    serde_json::to_string(state).unwrap_or_default()
}

pub fn workflow_put(
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
pub fn workflow_get(
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

pub fn workflow_versions(
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

/// Creates `run` (its journal already as JSON, made off the writer thread);
/// the flag says whether it was created (its jobs are to be written too)
/// rather than found under its idempotency key.
pub fn run_create(
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

pub fn run_get(conn: &Connection, namespace: &Namespace, id: RunId) -> Applied<StoredRun> {
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
pub fn run_update(
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
pub fn runs_page(
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

/// The filter of [`runs_page`] for a driver's sweep.
pub fn runs_prune(conn: &Connection, finished_before: Timestamp, limit: u32) -> Applied<u64> {
    let pruned = conn
        .prepare_cached(
            "DELETE FROM runs WHERE seq IN (SELECT seq FROM runs WHERE status <> 'running' \
             AND updated_at <= ?1 ORDER BY updated_at LIMIT ?2)",
        )?
        .execute(params![finished_before.as_millis(), limit])?;
    Ok(Ok(pruned as u64))
}

pub fn active_filter(cursor: Option<String>, limit: u32) -> RunFilter {
    RunFilter {
        workflow: None,
        status: Some(RunStatus::Running),
        limit,
        cursor,
    }
}
