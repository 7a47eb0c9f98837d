//! The job rows: their columns as Rust values and back, and the statements
//! that read or write one job's row (insert, lock, transition, error). A
//! stored value that does not parse is an error, never a default.

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;
use keel_core::{
    AttemptError, Backoff, Error, Job, JobId, JobLifecycle, JobState, Namespace, NewJob, QueueRef,
    Timestamp, TraceParent,
};
use keel_store::{JobOwner, codec};
use serde_json::value::RawValue;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::keys::Freed;
use crate::{PostgresStore, db, job_id, uuid};

/// Stored JSON back to raw JSON; it was valid when written.
pub(crate) fn raw(text: String) -> Result<Box<RawValue>, Error> {
    RawValue::from_string(text)
        .map_err(|e| corrupt(format!("stored JSON that does not parse: {e}")))
}

/// A stored JSON value back to its type.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Error> {
    codec::decode("row", text)
}

/// A row this version cannot read: an error, never a made-up default.
pub(crate) fn corrupt(what: String) -> Error {
    Error::internal(format!("corrupt row: {what}"))
}

/// The batch insert of new jobs (insert_rows.sql, in the arrays' order).
pub(crate) const INSERT_JOBS: &str = concat!(
    include_str!("../../queries/jobs/insert_rows.sql"),
    "ORDER BY u.n"
);
/// A new run and its first jobs in one statement.
pub(crate) const RUN_INSERT_WITH_JOBS: &str = concat!(
    include_str!("../../queries/runs/run_insert_with_jobs.sql"),
    include_str!("../../queries/jobs/insert_rows.sql"),
    "ORDER BY u.n\n)\nSELECT seq FROM run"
);
/// A run's journal, under its revision, and the jobs it starts, in one
/// statement: the jobs only when the revision matched.
pub(crate) const RUN_UPDATE_WITH_JOBS: &str = concat!(
    include_str!("../../queries/runs/run_update_with_jobs.sql"),
    include_str!("../../queries/jobs/insert_rows.sql"),
    "WHERE EXISTS (SELECT 1 FROM run)\nORDER BY u.n\n)\nSELECT rev FROM run"
);

pub(crate) fn tags_json(tags: &BTreeMap<String, String>) -> Result<Option<String>, Error> {
    if tags.is_empty() {
        return Ok(None);
    }
    codec::encode("tags", tags).map(Some)
}

pub(crate) fn tags_from(text: Option<String>) -> Result<BTreeMap<String, String>, Error> {
    text.map_or_else(|| Ok(BTreeMap::new()), |t| from_json(&t))
}

pub(crate) fn state_of(text: &str) -> Result<JobState, Error> {
    JobState::parse(text).ok_or_else(|| corrupt(format!("unknown job state {text:?}")))
}

/// New jobs as the columns of one insert.
#[derive(Default)]
pub(crate) struct NewRows<'a> {
    pub(crate) id: Vec<Uuid>,
    pub(crate) namespace: Vec<&'a str>,
    pub(crate) queue: Vec<&'a str>,
    pub(crate) state: Vec<&'static str>,
    pub(crate) payload: Vec<&'a str>,
    pub(crate) priority: Vec<i16>,
    pub(crate) max_attempts: Vec<i32>,
    pub(crate) run_at: Vec<i64>,
    pub(crate) lease_ms: Vec<i64>,
    pub(crate) backoff: Vec<String>,
    pub(crate) idempotency_key: Vec<Option<&'a str>>,
    pub(crate) ordering_key: Vec<Option<&'a str>>,
    pub(crate) tags: Vec<Option<String>>,
    pub(crate) owner: Vec<Option<String>>,
    pub(crate) traceparent: Vec<Option<&'a str>>,
}

impl<'a> NewRows<'a> {
    /// Adds a job; returns the state it starts in.
    pub(crate) fn push(
        &mut self,
        queue: &'a QueueRef,
        id: JobId,
        job: &'a NewJob,
        owner: Option<&JobOwner>,
        now: Timestamp,
    ) -> Result<JobState, Error> {
        let state = JobLifecycle::new(job, now).state;
        self.id.push(uuid(id));
        self.namespace.push(queue.namespace.as_str());
        self.queue.push(queue.queue.as_str());
        self.state.push(state.as_str());
        self.payload.push(job.payload.get());
        self.priority.push(job.priority);
        self.max_attempts.push(job.max_attempts as i32);
        self.run_at.push(job.run_at.as_millis());
        self.lease_ms.push(job.lease_ms as i64);
        self.backoff.push(codec::encode("backoff", &job.backoff)?);
        self.idempotency_key.push(job.idempotency_key.as_deref());
        self.ordering_key.push(job.ordering_key.as_deref());
        self.tags.push(tags_json(&job.tags)?);
        self.owner.push(owner.map(JobOwner::encode).transpose()?);
        self.traceparent
            .push(job.traceparent.as_ref().map(TraceParent::as_str));
        Ok(state)
    }

    /// The parameters $1–$16 of insert_rows.sql (and of the statements that
    /// embed it), with `now` as $13.
    pub(crate) fn params<'b>(&'b self, now: &'b i64) -> Vec<&'b (dyn ToSql + Sync)> {
        vec![
            &self.id,
            &self.namespace,
            &self.queue,
            &self.state,
            &self.payload,
            &self.priority,
            &self.max_attempts,
            &self.run_at,
            &self.lease_ms,
            &self.backoff,
            &self.idempotency_key,
            &self.ordering_key,
            now,
            &self.tags,
            &self.owner,
            &self.traceparent,
        ]
    }
}

pub(crate) struct Locked {
    pub(crate) life: JobLifecycle,
    pub(crate) lease_ms: u64,
    pub(crate) backoff: Backoff,
    pub(crate) queue: String,
    /// What the job works for: its owner hears when the job ends.
    pub(crate) owner: Option<JobOwner>,
    pub(crate) ordering_key: Option<String>,
}

impl Locked {
    /// From the columns `state, attempt, max_attempts, run_at, lease_seq,
    /// lease_expires_at, lease_ms, backoff, queue, owner, ordering_key`, starting at
    /// `first`. A corrupt owner is an error, never "no owner".
    pub(crate) fn from_row(row: &tokio_postgres::Row, first: usize) -> Result<Self, Error> {
        let at = |i: usize| first + i;
        Ok(Locked {
            life: JobLifecycle {
                state: state_of(row.get(at(0)))?,
                attempt: row.get::<_, i32>(at(1)) as u32,
                max_attempts: row.get::<_, i32>(at(2)) as u32,
                run_at: Timestamp::from_millis(row.get(at(3))),
                lease_seq: row.get::<_, i64>(at(4)) as u64,
                lease_expires_at: row.get::<_, Option<i64>>(at(5)).map(Timestamp::from_millis),
            },
            lease_ms: row.get::<_, i64>(at(6)) as u64,
            backoff: from_json(row.get(at(7)))?,
            queue: row.get(at(8)),
            owner: row
                .get::<_, Option<&str>>(at(9))
                .map(JobOwner::decode)
                .transpose()?,
            ordering_key: row.get(at(10)),
        })
    }
}

impl Locked {
    /// The key this job held, if it just finished holding one.
    pub(crate) fn freed(&self, namespace: &Namespace) -> Option<Freed> {
        let key = self.ordering_key.clone()?;
        self.life.state.is_final().then(|| Freed {
            namespace: namespace.to_string(),
            queue: self.queue.clone(),
            key,
        })
    }
}

impl PostgresStore {
    /// Writes new jobs in one statement (the callers have settled their
    /// idempotency keys). A single job takes a statement of its own, which
    /// PostgreSQL plans and runs faster than an `unnest` of one.
    pub(crate) async fn insert_jobs(
        tx: &impl GenericClient,
        jobs: &NewRows<'_>,
        now: Timestamp,
    ) -> Result<(), Error> {
        if jobs.id.is_empty() {
            return Ok(());
        }
        let now = now.as_millis();
        if jobs.id.len() == 1 {
            let insert = tx
                .prepare_cached(include_str!("../../queries/jobs/insert_job.sql"))
                .await
                .map_err(db)?;
            let params: [&(dyn ToSql + Sync); 16] = [
                &jobs.id[0],
                &jobs.namespace[0],
                &jobs.queue[0],
                &jobs.state[0],
                &jobs.payload[0],
                &jobs.priority[0],
                &jobs.max_attempts[0],
                &jobs.run_at[0],
                &now,
                &jobs.lease_ms[0],
                &jobs.backoff[0],
                &jobs.idempotency_key[0],
                &jobs.ordering_key[0],
                &jobs.tags[0],
                &jobs.owner[0],
                &jobs.traceparent[0],
            ];
            tx.execute(&insert, &params).await.map_err(db)?;
            return Ok(());
        }
        let insert = tx.prepare_cached(INSERT_JOBS).await.map_err(db)?;
        tx.execute(&insert, &jobs.params(&now)).await.map_err(db)?;
        Ok(())
    }

    pub(crate) async fn lock_job(
        tx: &impl GenericClient,
        namespace: &Namespace,
        id: JobId,
    ) -> Result<Option<Locked>, Error> {
        let stmt = tx
            .prepare_cached(include_str!("../../queries/jobs/job_for_update.sql"))
            .await
            .map_err(db)?;
        let Some(row) = tx
            .query_opt(&stmt, &[&uuid(id), &namespace.as_str()])
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        Locked::from_row(&row, 0).map(Some)
    }

    pub(crate) async fn write_life(
        tx: &impl GenericClient,
        id: JobId,
        life: &JobLifecycle,
        now: Timestamp,
        result: Option<&str>,
    ) -> Result<(), Error> {
        let stmt = tx
            .prepare_cached(include_str!("../../queries/jobs/apply_transition.sql"))
            .await
            .map_err(db)?;
        let finished_at = life.state.is_final().then_some(now.as_millis());
        let params: [&(dyn ToSql + Sync); 9] = [
            &uuid(id),
            &life.state.as_str(),
            &(life.attempt as i32),
            &life.run_at.as_millis(),
            &(life.lease_seq as i64),
            &life.lease_expires_at.map(Timestamp::as_millis),
            &now.as_millis(),
            &finished_at,
            &result,
        ];
        tx.execute(&stmt, &params).await.map_err(db)?;
        Ok(())
    }

    pub(crate) async fn record_error(
        tx: &impl GenericClient,
        id: JobId,
        attempt: u32,
        message: &str,
        now: Timestamp,
    ) -> Result<(), Error> {
        let stmt = tx
            .prepare_cached(include_str!("../../queries/jobs/insert_error.sql"))
            .await
            .map_err(db)?;
        tx.execute(
            &stmt,
            &[&uuid(id), &(attempt as i32), &message, &now.as_millis()],
        )
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Why an action on a job that is not (or no longer) in the expected state
    /// fails: a missing row is `job_not_found`.
    pub(crate) fn missing(id: JobId) -> Error {
        Error::job_not_found(id)
    }
}

pub(crate) fn job_from_row(row: &tokio_postgres::Row) -> Result<(i64, Job), Error> {
    Ok((
        row.get(0),
        Job {
            id: job_id(row.get(1)),
            queue: row.get(2),
            state: state_of(row.get(3))?,
            payload: raw(row.get(4))?,
            priority: row.get(5),
            attempt: row.get::<_, i32>(6) as u32,
            max_attempts: row.get::<_, i32>(7) as u32,
            run_at: Timestamp::from_millis(row.get(8)),
            created_at: Timestamp::from_millis(row.get(9)),
            updated_at: Timestamp::from_millis(row.get(10)),
            lease_expires_at: row.get::<_, Option<i64>>(11).map(Timestamp::from_millis),
            lease_ms: row.get::<_, i64>(12) as u64,
            backoff: from_json(row.get(13))?,
            idempotency_key: row.get(14),
            ordering_key: row.get(15),
            tags: tags_from(row.get(16))?,
            result: row.get::<_, Option<String>>(17).map(raw).transpose()?,
            errors: Vec::new(),
            traceparent: row.get::<_, Option<&str>>(18).and_then(TraceParent::parse),
        },
    ))
}

pub(crate) async fn attach_errors(client: &impl GenericClient, job: &mut Job) -> Result<(), Error> {
    let stmt = client
        .prepare_cached(include_str!("../../queries/jobs/job_errors.sql"))
        .await
        .map_err(db)?;
    job.errors = client
        .query(&stmt, &[&uuid(job.id)])
        .await
        .map_err(db)?
        .into_iter()
        .map(|row| AttemptError {
            attempt: row.get::<_, i32>(0) as u32,
            message: row.get(1),
            at: Timestamp::from_millis(row.get(2)),
        })
        .collect();
    Ok(())
}
