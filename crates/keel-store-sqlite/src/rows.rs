//! Mapping between SQL rows and domain types, and the read-only queries that
//! run on reader connections (they see committed data only).

use std::collections::BTreeMap;

use keel_core::{AttemptError, Error, Job, JobId, JobState, Namespace, Timestamp, TraceParent};
use keel_store::{JobFilter, JobPage};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde_json::value::RawValue;

/// The 16 bytes of a stored id; any other length is a corrupt row, and an
/// error, never a made-up id.
pub(crate) fn id_bytes(bytes: &[u8]) -> rusqlite::Result<[u8; 16]> {
    bytes
        .try_into()
        .map_err(|_| corrupt(format!("an id of {} bytes", bytes.len())))
}

pub(crate) fn blob_id(bytes: &[u8]) -> rusqlite::Result<JobId> {
    id_bytes(bytes).map(JobId::from_bytes)
}

/// A stored value this version cannot read, as the error a read returns.
pub(crate) fn corrupt(what: impl Into<String>) -> rusqlite::Error {
    let what: String = what.into();
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, what.into())
}

/// Stored JSON back to raw JSON; it was valid when written.
pub(crate) fn raw_json(text: String) -> rusqlite::Result<Box<RawValue>> {
    RawValue::from_string(text)
        .map_err(|e| corrupt(format!("stored JSON that does not parse: {e}")))
}

/// A stored JSON value back to its type (`keel_store::codec`).
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> rusqlite::Result<T> {
    keel_store::codec::decode("row", text).map_err(|e| corrupt(e.message))
}

/// A value as the JSON text stored for it (`keel_store::codec`). A value
/// that cannot be encoded (none of the types stored, in practice) fails
/// the write as a fault, so nothing is stored in its place.
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(
    what: &str,
    value: &T,
) -> rusqlite::Result<String> {
    keel_store::codec::encode(what, value)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.message.into()))
}

/// A stored job state.
pub(crate) fn job_state(text: &str) -> rusqlite::Result<JobState> {
    JobState::parse(text).ok_or_else(|| corrupt(format!("unknown job state {text:?}")))
}

pub(crate) fn tags_to_sql(tags: &BTreeMap<String, String>) -> rusqlite::Result<Option<String>> {
    if tags.is_empty() {
        return Ok(None);
    }
    to_json("tags", tags).map(Some)
}

pub(crate) fn tags_from_sql(text: Option<String>) -> rusqlite::Result<BTreeMap<String, String>> {
    text.map_or_else(|| Ok(BTreeMap::new()), |t| from_json(&t))
}

/// A stored context read back; one damaged on disk is dropped, not an error
/// (it only links traces).
pub(crate) fn trace_from_sql(text: Option<String>) -> Option<TraceParent> {
    text.as_deref().and_then(TraceParent::parse)
}

const JOB_COLUMNS: &str = "seq, id, queue, state, payload, priority, attempt, max_attempts, run_at, \
     created_at, updated_at, lease_expires_at, lease_ms, backoff, idempotency_key, ordering_key, tags, result, \
     traceparent";

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<(i64, Job)> {
    let state: String = row.get(3)?;
    Ok((
        row.get(0)?,
        Job {
            id: blob_id(&row.get::<_, Vec<u8>>(1)?)?,
            queue: row.get(2)?,
            state: job_state(&state)?,
            payload: raw_json(row.get(4)?)?,
            priority: row.get(5)?,
            attempt: row.get(6)?,
            max_attempts: row.get(7)?,
            run_at: Timestamp::from_millis(row.get(8)?),
            created_at: Timestamp::from_millis(row.get(9)?),
            updated_at: Timestamp::from_millis(row.get(10)?),
            lease_expires_at: row.get::<_, Option<i64>>(11)?.map(Timestamp::from_millis),
            lease_ms: row.get::<_, i64>(12)? as u64,
            backoff: from_json(&row.get::<_, String>(13)?)?,
            idempotency_key: row.get(14)?,
            ordering_key: row.get(15)?,
            tags: tags_from_sql(row.get(16)?)?,
            result: row
                .get::<_, Option<String>>(17)?
                .map(raw_json)
                .transpose()?,
            errors: Vec::new(),
            traceparent: trace_from_sql(row.get(18)?),
        },
    ))
}

fn attach_errors(conn: &Connection, seq: i64, job: &mut Job) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT attempt, message, at FROM job_errors WHERE job_seq = ?1 ORDER BY rowid",
    )?;
    job.errors = stmt
        .query_map([seq], |r| {
            Ok(AttemptError {
                attempt: r.get(0)?,
                message: r.get(1)?,
                at: Timestamp::from_millis(r.get(2)?),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(())
}

/// Cuts rows read with `LIMIT limit + 1` down to a page; the cursor of the
/// next page (the `seq` of this page's last row) when there is one.
pub(crate) fn cut_page<T>(rows: &mut Vec<(i64, T)>, limit: u32) -> Option<String> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    more.then(|| rows.last().map(|(seq, _)| seq.to_string()))
        .flatten()
}

pub(crate) fn get_job(
    conn: &Connection,
    namespace: &Namespace,
    id: JobId,
) -> rusqlite::Result<Option<Job>> {
    let found = conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1 AND namespace = ?2"
        ))?
        .query_row(params![id.as_bytes(), namespace.as_str()], job_from_row)
        .optional()?;
    let Some((seq, mut job)) = found else {
        return Ok(None);
    };
    attach_errors(conn, seq, &mut job)?;
    Ok(Some(job))
}

/// Jobs newer than this many seqs are read first by a listing across a
/// namespace's queues (see [`list_jobs`]).
const NEWEST_WINDOW: i64 = 20_000;

/// Newest first; the cursor is the `seq` of the last job of the previous page.
///
/// Without a queue (or the dead-letter index), the index on
/// `(namespace, queue, seq)` cannot give a namespace's jobs in `seq`
/// order: SQLite would read and sort all of them (a second with a million).
/// So the newest [`NEWEST_WINDOW`] seqs are walked first, in rowid order,
/// and only when they hold less than a page does the indexed read follow:
/// fast when the namespace holds much of the store, and no slower than
/// before when it holds little. The page is the same either way.
pub(crate) fn list_jobs(
    conn: &Connection,
    namespace: &Namespace,
    filter: &JobFilter,
) -> rusqlite::Result<Result<JobPage, Error>> {
    let before = match &filter.cursor {
        None => None,
        Some(cursor) => match cursor.parse::<i64>() {
            Ok(before) => Some(before),
            Err(_) => {
                return Ok(Err(Error::invalid(
                    "cursor is not one this server gave out",
                )));
            }
        },
    };
    let across_queues = filter.queue.is_none() && filter.state != Some(JobState::Dead);
    if across_queues {
        let top = match before {
            Some(before) => before,
            None => conn
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs")?
                .query_row([], |r| r.get(0))?,
        };
        let window = Some((top, top - NEWEST_WINDOW));
        let page = list_page(conn, namespace, filter, before, window)?;
        if page.next_cursor.is_some() {
            return Ok(Ok(page));
        }
    }
    Ok(Ok(list_page(conn, namespace, filter, before, None)?))
}

/// One read of [`list_jobs`]: within `window` (`seq` below its first and
/// above its second, walked in rowid order), or by the indexes.
fn list_page(
    conn: &Connection,
    namespace: &Namespace,
    filter: &JobFilter,
    before: Option<i64>,
    window: Option<(i64, i64)>,
) -> rusqlite::Result<JobPage> {
    // `+namespace` keeps the planner off the namespace's index, so that the
    // window is walked by rowid, newest first.
    let column = if window.is_some() {
        "+namespace"
    } else {
        "namespace"
    };
    let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {column} = ?");
    let mut args: Vec<Value> = vec![Value::Text(namespace.to_string())];
    if let Some(queue) = &filter.queue {
        sql.push_str(" AND queue = ?");
        args.push(Value::Text(queue.to_string()));
    }
    if let Some(state) = filter.state {
        // A literal, not a parameter, so that `state = 'dead'` can use the
        // partial index; the text comes from a fixed enum.
        sql.push_str(&format!(" AND state = '{}'", state.as_str()));
    }
    if let Some((key, value)) = &filter.tag {
        sql.push_str(" AND EXISTS (SELECT 1 FROM json_each(jobs.tags) WHERE json_each.key = ? AND json_each.value = ?)");
        args.push(Value::Text(key.clone()));
        args.push(Value::Text(value.clone()));
    }
    match (window, before) {
        (Some((top, floor)), _) => {
            sql.push_str(" AND seq < ? AND seq > ?");
            args.push(Value::Integer(top));
            args.push(Value::Integer(floor));
        }
        (None, Some(before)) => {
            sql.push_str(" AND seq < ?");
            args.push(Value::Integer(before));
        }
        (None, None) => {}
    }
    sql.push_str(" ORDER BY seq DESC LIMIT ?");
    args.push(Value::Integer(i64::from(filter.limit) + 1));

    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows: Vec<(i64, Job)> = stmt
        .query_map(params_from_iter(args), job_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    let next_cursor = cut_page(&mut rows, filter.limit);
    let mut jobs = Vec::with_capacity(rows.len());
    for (seq, mut job) in rows {
        attach_errors(conn, seq, &mut job)?;
        jobs.push(job);
    }
    Ok(JobPage { jobs, next_cursor })
}
