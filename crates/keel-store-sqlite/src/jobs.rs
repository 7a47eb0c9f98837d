//! Jobs on the embedded store: the [`JobStore`] operations, each a write on
//! the writer thread (reads of whole jobs go to the reader connections).
//! Enqueueing is `enqueue.rs`, leasing `lease.rs`.

use std::sync::Arc;

use async_trait::async_trait;
use keel_core::gate::WaitFacts;
use keel_core::{
    Error, ErrorCode, Job, JobId, JobLifecycle, JobState, LeaseToken, Namespace, NewJob, QueueRef,
    Timestamp, Transition,
};
use keel_store::{
    Ack, AckOutcome, Acked, Enqueued, JobFilter, JobPage, JobStore, LeaseRequest, LeasedJob,
    RedriveSelection,
};
use rusqlite::{OptionalExtension, params};
use serde_json::value::RawValue;

use crate::SqliteStore;
use crate::hot::{JobKeys, LiveJob};
use crate::owner::owner_from_sql;
use crate::rows::{self, blob_id, from_json};
use crate::writer::{self, Applied, Writer};

/// Finished jobs deleted per queue and per pass.
const PRUNE_CHUNK: i64 = 10_000;

#[async_trait]
impl JobStore for SqliteStore {
    async fn jobs_enqueue(
        &self,
        queue: &QueueRef,
        jobs: Vec<NewJob>,
        now: Timestamp,
    ) -> Result<Vec<Enqueued>, Error> {
        let queue = queue.clone();
        self.write(move |w| w.enqueue(&queue, jobs, now)).await
    }

    async fn jobs_lease(
        &self,
        req: &LeaseRequest,
        now: Timestamp,
    ) -> Result<Vec<LeasedJob>, Error> {
        let req = req.clone();
        self.call(|reply| writer::write_releasing(reply, move |w| w.lease(&req, now)))
            .await
    }

    async fn jobs_ack(
        &self,
        namespace: &Namespace,
        acks: Vec<Ack>,
        now: Timestamp,
    ) -> Result<Vec<Result<Acked, Error>>, Error> {
        let namespace = namespace.clone();
        self.write(move |w| w.ack(&namespace, acks, now)).await
    }

    async fn job_heartbeat(
        &self,
        namespace: &Namespace,
        token: LeaseToken,
        lease_ms: Option<u64>,
        now: Timestamp,
    ) -> Result<Timestamp, Error> {
        let namespace = namespace.clone();
        self.write(move |w| w.heartbeat(&namespace, token, lease_ms, now))
            .await
    }

    async fn job_cancel(
        &self,
        namespace: &Namespace,
        id: JobId,
        now: Timestamp,
    ) -> Result<Acked, Error> {
        let namespace = namespace.clone();
        self.write(move |w| w.cancel(&namespace, id, now)).await
    }

    async fn job_get(&self, namespace: &Namespace, id: JobId) -> Result<Job, Error> {
        let namespace = namespace.clone();
        self.read(move |conn| {
            Ok(rows::get_job(conn, &namespace, id)?.ok_or_else(|| Error::job_not_found(id)))
        })
        .await
    }

    async fn job_waiting(&self, namespace: &Namespace, id: JobId) -> Result<WaitFacts, Error> {
        let namespace = namespace.clone();
        self.read_hot(move |w| w.hot.wait_facts(&namespace, id))
            .await?
    }

    async fn jobs_list(&self, namespace: &Namespace, filter: &JobFilter) -> Result<JobPage, Error> {
        let namespace = namespace.clone();
        let filter = filter.clone();
        self.read(move |conn| rows::list_jobs(conn, &namespace, &filter))
            .await
    }

    async fn jobs_redrive(
        &self,
        queue: &QueueRef,
        selection: RedriveSelection,
        payload: Option<Box<RawValue>>,
        now: Timestamp,
    ) -> Result<Vec<JobId>, Error> {
        let queue = queue.clone();
        self.write(move |w| w.redrive(&queue, selection, payload, now))
            .await
    }

    async fn jobs_prune(&self, now: Timestamp) -> Result<u64, Error> {
        self.write(move |w| w.prune(now)).await
    }
}

impl Writer {
    pub(crate) fn ack(
        &mut self,
        namespace: &Namespace,
        acks: Vec<Ack>,
        now: Timestamp,
    ) -> Applied<Vec<Result<Acked, Error>>> {
        let mut out = Vec::with_capacity(acks.len());
        for ack in acks {
            out.push(self.ack_one(namespace, ack, now)?);
        }
        Ok(Ok(out))
    }

    pub(crate) fn ack_one(
        &mut self,
        namespace: &Namespace,
        ack: Ack,
        now: Timestamp,
    ) -> Applied<Acked> {
        let id = ack.token.job;
        let Some(job) = self.live(namespace, id) else {
            return Ok(Err(self.why_not_live(namespace, id, Error::lease_lost)?));
        };
        let queue = self.hot.queues[job.queue_idx()].queue.queue.clone();
        let owner = job.owner().cloned();
        let life_attempt = job.life.attempt;
        let lease_seq = ack.token.lease_seq;
        match ack.outcome {
            AckOutcome::Complete { result } => {
                let done = self.hot.update(id, |job| {
                    job.life.complete(lease_seq, now).map(|()| job.seq)
                });
                let seq = match done {
                    Some(Ok(seq)) => seq,
                    Some(Err(e)) => return Ok(Err(e)),
                    None => return Ok(Err(Error::lease_lost())),
                };
                self.conn
                    .prepare_cached(
                        "UPDATE jobs SET state = 'succeeded', result = ?1, updated_at = ?2, finished_at = ?2, \
                         lease_expires_at = NULL WHERE seq = ?3",
                    )?
                    .execute(params![result.as_ref().map(|r| r.get()), now.as_millis(), seq])?;
                Ok(Ok(Acked {
                    id,
                    queue,
                    state: JobState::Succeeded,
                    run_at: None,
                    owner,
                    attempt: life_attempt,
                }))
            }
            AckOutcome::Fail { message, retry } => {
                let unit = fastrand::f64();
                let backoff = self
                    .hot
                    .jobs
                    .get(&id)
                    .map(|job| self.hot.backoff(job.backoff))
                    .unwrap_or_default();
                let failed = self.hot.update(id, |job| {
                    job.life
                        .fail(lease_seq, now, retry, &backoff, unit)
                        .map(|t| (t, job.seq, job.life.clone()))
                });
                let (transition, seq, life) = match failed {
                    Some(Ok(done)) => done,
                    Some(Err(e)) => return Ok(Err(e)),
                    None => return Ok(Err(Error::lease_lost())),
                };
                self.record_failure(seq, &life, &message, now)?;
                let run_at = (transition != Transition::Dead).then_some(life.run_at);
                Ok(Ok(Acked {
                    id,
                    queue,
                    state: life.state,
                    run_at,
                    owner,
                    attempt: life.attempt,
                }))
            }
        }
    }

    /// Persists a failed attempt: the job's new state and the error in its history.
    pub(crate) fn record_failure(
        &mut self,
        seq: i64,
        life: &JobLifecycle,
        message: &str,
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        let finished_at = life.state.is_final().then_some(now.as_millis());
        self.conn
            .prepare_cached(
                "UPDATE jobs SET state = ?1, run_at = ?2, updated_at = ?3, finished_at = ?4, \
                 lease_expires_at = NULL WHERE seq = ?5",
            )?
            .execute(params![
                life.state.as_str(),
                life.run_at.as_millis(),
                now.as_millis(),
                finished_at,
                seq
            ])?;
        self.conn
            .prepare_cached(
                "INSERT INTO job_errors (job_seq, attempt, message, at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![seq, life.attempt, message, now.as_millis()])?;
        Ok(())
    }

    pub(crate) fn heartbeat(
        &mut self,
        namespace: &Namespace,
        token: LeaseToken,
        lease_ms: Option<u64>,
        now: Timestamp,
    ) -> Applied<Timestamp> {
        let id = token.job;
        if self.live(namespace, id).is_none() {
            return Ok(Err(self.why_not_live(namespace, id, Error::lease_lost)?));
        }
        let extended = self.hot.update(id, |job| {
            let lease_ms = lease_ms.unwrap_or(u64::from(job.lease_ms));
            job.life
                .heartbeat(token.lease_seq, now, lease_ms)
                .map(|until| (until, job.seq))
        });
        let (until, seq) = match extended {
            Some(Ok(done)) => done,
            Some(Err(e)) => return Ok(Err(e)),
            None => return Ok(Err(Error::lease_lost())),
        };
        self.conn
            .prepare_cached(
                "UPDATE jobs SET lease_expires_at = ?1, updated_at = ?2 WHERE seq = ?3",
            )?
            .execute(params![until.as_millis(), now.as_millis(), seq])?;
        Ok(Ok(until))
    }

    pub(crate) fn cancel(
        &mut self,
        namespace: &Namespace,
        id: JobId,
        now: Timestamp,
    ) -> Applied<Acked> {
        let Some(job) = self.live(namespace, id) else {
            let finished = || Error::new(ErrorCode::InvalidState, "cannot cancel a finished job");
            return Ok(Err(self.why_not_live(namespace, id, finished)?));
        };
        let queue = self.hot.queues[job.queue_idx()].queue.queue.clone();
        let (owner, attempt) = (job.owner().cloned(), job.life.attempt);
        let cancelled = self
            .hot
            .update(id, |job| job.life.cancel().map(|()| job.seq));
        let seq = match cancelled {
            Some(Ok(seq)) => seq,
            Some(Err(e)) => return Ok(Err(e)),
            None => return Ok(Err(Error::job_not_found(id))),
        };
        self.conn
            .prepare_cached(
                "UPDATE jobs SET state = 'cancelled', updated_at = ?1, finished_at = ?1, \
                 lease_expires_at = NULL WHERE seq = ?2",
            )?
            .execute(params![now.as_millis(), seq])?;
        Ok(Ok(Acked {
            id,
            queue,
            state: JobState::Cancelled,
            run_at: None,
            owner,
            attempt,
        }))
    }

    pub(crate) fn redrive(
        &mut self,
        queue: &QueueRef,
        selection: RedriveSelection,
        payload: Option<Box<RawValue>>,
        now: Timestamp,
    ) -> Applied<Vec<JobId>> {
        const COLUMNS: &str = "seq, id, priority, max_attempts, lease_seq, lease_ms, backoff, ordering_key, owner, flow_key";
        type DeadRow = (
            i64,
            Vec<u8>,
            i16,
            u32,
            i64,
            i64,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<DeadRow> {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
            ))
        };
        let mut dead: Vec<DeadRow> = Vec::new();
        match selection {
            RedriveSelection::Ids(ids) => {
                let mut stmt = self.conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM jobs WHERE id = ?1 AND namespace = ?2 AND queue = ?3 AND state = 'dead'"
                ))?;
                for id in ids {
                    let params = params![
                        id.as_bytes(),
                        queue.namespace.as_str(),
                        queue.queue.as_str()
                    ];
                    dead.extend(stmt.query_row(params, read).optional()?);
                }
            }
            RedriveSelection::All => {
                let mut stmt = self.conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM jobs WHERE namespace = ?1 AND state = 'dead' AND queue = ?2 ORDER BY seq"
                ))?;
                let rows = stmt.query_map(
                    params![queue.namespace.as_str(), queue.queue.as_str()],
                    read,
                )?;
                for row in rows {
                    dead.push(row?);
                }
            }
        }
        let queue_idx = self.hot.queue_entry(queue);
        let mut moved = Vec::with_capacity(dead.len());
        for (
            seq,
            id,
            priority,
            max_attempts,
            lease_seq,
            lease_ms,
            backoff,
            ordering_key,
            owner,
            flow_key,
        ) in dead
        {
            let owner = owner_from_sql(owner)?;
            let id = blob_id(&id)?;
            let mut life = JobLifecycle {
                state: JobState::Dead,
                attempt: 0,
                max_attempts,
                run_at: now,
                lease_seq: lease_seq as u64,
                lease_expires_at: None,
            };
            if life.redrive(now).is_err() {
                continue;
            }
            self.conn
                .prepare_cached(
                    "UPDATE jobs SET state = 'ready', attempt = 0, run_at = ?1, updated_at = ?1, \
                     finished_at = NULL, payload = coalesce(?2, payload) WHERE seq = ?3",
                )?
                .execute(params![
                    now.as_millis(),
                    payload.as_ref().map(|p| p.get()),
                    seq
                ])?;
            self.hot.count_finished(queue_idx, JobState::Dead, -1);
            let backoff = self.hot.intern_backoff(from_json(&backoff)?);
            self.hot.insert(
                id,
                LiveJob {
                    seq,
                    queue: queue_idx as u32,
                    life,
                    priority,
                    lease_ms: lease_ms as u32,
                    backoff,
                    keys: JobKeys::boxed(
                        ordering_key.map(Arc::from),
                        flow_key.map(Arc::from),
                        owner.map(|o| *o),
                    ),
                },
            );
            moved.push(id);
        }
        Ok(Ok(moved))
    }

    pub(crate) fn prune(&mut self, now: Timestamp) -> Applied<u64> {
        let mut pruned = 0;
        for idx in 0..self.hot.queues.len() {
            let q = &self.hot.queues[idx];
            let (namespace, queue) = (q.queue.namespace.clone(), q.queue.queue.clone());
            let rounds = [
                ("'succeeded', 'cancelled'", q.policy.retention_ms()),
                ("'dead'", q.policy.dead_retention_ms()),
            ];
            for (states, retention_ms) in rounds {
                let cutoff = now.as_millis().saturating_sub(retention_ms as i64);
                let gone: Vec<(i64, String)> = self
                    .conn
                    .prepare_cached(&format!(
                        "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE namespace = ?1 AND queue = ?2 \
                         AND finished_at <= ?3 AND state IN ({states}) LIMIT ?4) RETURNING seq, state"
                    ))?
                    .query_map(params![namespace.as_str(), queue.as_str(), cutoff, PRUNE_CHUNK], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                for (seq, state) in &gone {
                    self.conn
                        .prepare_cached("DELETE FROM job_errors WHERE job_seq = ?1")?
                        .execute([seq])?;
                    if let Some(state) = JobState::parse(state) {
                        self.hot.count_finished(idx, state, -1);
                    }
                }
                pruned += gone.len() as u64;
            }
        }
        self.conn
            .prepare_cached("DELETE FROM idempotency_keys WHERE expires_at <= ?1")?
            .execute([now.as_millis()])?;
        Ok(Ok(pruned))
    }
}
