//! Enqueueing on the embedded store: a batch's jobs settle their
//! idempotency keys (an earlier job of the key answers) and debounce keys
//! (the key's job still in its window takes the payload), then are written
//! and indexed in the hot index, all in one write of the writer thread.

use std::collections::HashMap;
use std::sync::Arc;

use keel_core::{
    JobId, JobLifecycle, JobState, Namespace, NewJob, QueueRef, Timestamp, TraceParent,
};
use keel_store::{Enqueued, IDEMPOTENCY_WINDOW_MS, JobOwner};
use rusqlite::{OptionalExtension, params};
use serde_json::value::RawValue;

use crate::hot::{JobKeys, LiveJob, QueueIdx};
use crate::rows::{blob_id, tags_to_sql, to_json};
use crate::writer::{Applied, Writer};

impl Writer {
    pub(crate) fn enqueue(
        &mut self,
        queue: &QueueRef,
        jobs: Vec<NewJob>,
        now: Timestamp,
    ) -> Applied<Vec<Enqueued>> {
        /// What an idempotency or debounce key says about one job of the batch.
        enum Plan {
            New,
            /// Same idempotency key as an earlier job of this batch (its index).
            SameAs(usize),
            /// Same idempotency key as a job enqueued before, within the window.
            Earlier(Enqueued),
            /// Same debounce key as an earlier job of this batch (its index):
            /// this job's payload replaces that one's.
            DebouncedOnto(usize),
            /// Same debounce key as a stored job still in its window.
            Debounced(Enqueued),
        }
        let namespace = &queue.namespace;
        // Resolve keys first: duplicates take no room and write no job.
        let mut plans = Vec::with_capacity(jobs.len());
        let mut first_of_key: HashMap<&str, usize> = HashMap::new();
        let mut first_of_debounce: HashMap<&str, usize> = HashMap::new();
        for (i, job) in jobs.iter().enumerate() {
            if let Some(key) = job.debounce_key.as_deref() {
                if let Some(&first) = first_of_debounce.get(key) {
                    plans.push(Plan::DebouncedOnto(first));
                    continue;
                }
                first_of_debounce.insert(key, i);
                plans.push(match self.debounce_match(queue, key, now)? {
                    Some(waiting) => Plan::Debounced(waiting),
                    None => Plan::New,
                });
                continue;
            }
            let Some(key) = job.idempotency_key.as_deref() else {
                plans.push(Plan::New);
                continue;
            };
            if let Some(&first) = first_of_key.get(key) {
                plans.push(Plan::SameAs(first));
                continue;
            }
            first_of_key.insert(key, i);
            plans.push(match self.idempotent_match(namespace, key, now)? {
                Some(earlier) => Plan::Earlier(earlier),
                None => Plan::New,
            });
        }
        let new_jobs = plans.iter().filter(|p| matches!(p, Plan::New)).count() as u64;
        if let Err(e) = self.room(namespace, new_jobs) {
            return Ok(Err(e));
        }

        let queue_idx = self.hot.queue_entry(queue);
        let mut out: Vec<Enqueued> = Vec::with_capacity(jobs.len());
        for (job, plan) in jobs.into_iter().zip(plans) {
            let enqueued = match plan {
                Plan::New => {
                    let id = self.ids.next(now);
                    self.insert_job(queue, queue_idx, id, job, None, now)?
                }
                Plan::SameAs(first) => Enqueued {
                    deduplicated: true,
                    ..out[first].clone()
                },
                Plan::Earlier(earlier) => earlier,
                Plan::DebouncedOnto(first) => {
                    let onto = Enqueued {
                        debounced: true,
                        ..out[first].clone()
                    };
                    self.replace_payload(onto.id, &job.payload, now)?;
                    onto
                }
                Plan::Debounced(waiting) => {
                    self.replace_payload(waiting.id, &job.payload, now)?;
                    waiting
                }
            };
            out.push(enqueued);
        }
        Ok(Ok(out))
    }

    /// The job of a debounce key that still waits for its first attempt
    /// within its window (`run_at` is the window's end), if any.
    fn debounce_match(
        &self,
        queue: &QueueRef,
        key: &str,
        now: Timestamp,
    ) -> rusqlite::Result<Option<Enqueued>> {
        let id: Option<Vec<u8>> = self
            .conn
            .prepare_cached(
                "SELECT id FROM jobs WHERE namespace = ?1 AND queue = ?2 AND debounce_key = ?3 \
                 AND state = 'scheduled' AND attempt = 0 AND run_at > ?4",
            )?
            .query_row(
                params![
                    queue.namespace.as_str(),
                    queue.queue.as_str(),
                    key,
                    now.as_millis()
                ],
                |r| r.get(0),
            )
            .optional()?;
        id.map(|id| {
            Ok(Enqueued {
                id: blob_id(&id)?,
                state: JobState::Scheduled,
                deduplicated: false,
                debounced: true,
            })
        })
        .transpose()
    }

    fn replace_payload(
        &mut self,
        id: JobId,
        payload: &RawValue,
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        // A lease shows the payload: it must wait for this commit.
        self.hot.changed(id);
        self.conn
            .prepare_cached("UPDATE jobs SET payload = ?2, updated_at = ?3 WHERE id = ?1")?
            .execute(params![id.as_bytes(), payload.get(), now.as_millis()])?;
        Ok(())
    }

    /// Writes one new job and puts it in the hot index.
    pub(crate) fn insert_job(
        &mut self,
        queue: &QueueRef,
        queue_idx: QueueIdx,
        id: JobId,
        job: NewJob,
        owner: Option<JobOwner>,
        now: Timestamp,
    ) -> rusqlite::Result<Enqueued> {
        let namespace = &queue.namespace;
        let life = JobLifecycle::new(&job, now);
        let flow_key = self.hot.queues[queue_idx]
            .policy
            .key
            .as_ref()
            .map(|key| key.of(&job.tags, job.ordering_key.as_deref()));
        self.conn
            .prepare_cached(
                "INSERT INTO jobs (id, namespace, queue, state, payload, priority, attempt, \
                 max_attempts, run_at, created_at, updated_at, lease_seq, lease_ms, backoff, \
                 idempotency_key, ordering_key, tags, owner, debounce_key, flow_key, traceparent) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8, ?9, ?9, 0, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            )?
            .execute(params![
                id.as_bytes(),
                namespace.as_str(),
                queue.queue.as_str(),
                life.state.as_str(),
                job.payload.get(),
                job.priority,
                job.max_attempts,
                job.run_at.as_millis(),
                now.as_millis(),
                job.lease_ms as i64,
                to_json("backoff", &job.backoff)?,
                job.idempotency_key,
                job.ordering_key,
                tags_to_sql(&job.tags)?,
                owner.as_ref().map(|o| to_json("job owner", o)).transpose()?,
                job.debounce_key,
                flow_key,
                job.traceparent.as_ref().map(TraceParent::as_str),
            ])?;
        let seq = self.conn.last_insert_rowid();
        let enqueued = Enqueued {
            id,
            state: life.state,
            deduplicated: false,
            debounced: false,
        };
        if let Some(key) = &job.idempotency_key {
            self.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO idempotency_keys (namespace, key, job_id, expires_at) \
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    namespace.as_str(),
                    key,
                    id.as_bytes(),
                    now.plus_ms(IDEMPOTENCY_WINDOW_MS).as_millis()
                ])?;
        }
        let backoff = self.hot.intern_backoff(job.backoff);
        self.hot.insert(
            id,
            LiveJob {
                seq,
                queue: queue_idx as u32,
                life,
                priority: job.priority,
                lease_ms: job.lease_ms as u32,
                backoff,
                keys: JobKeys::boxed(
                    job.ordering_key.map(Arc::from),
                    flow_key.map(Arc::from),
                    owner,
                ),
            },
        );
        Ok(enqueued)
    }

    /// The job an unexpired idempotency key points to, if that job still exists.
    pub(crate) fn idempotent_match(
        &self,
        namespace: &Namespace,
        key: &str,
        now: Timestamp,
    ) -> rusqlite::Result<Option<Enqueued>> {
        let known: Option<(Vec<u8>, i64)> = self
            .conn
            .prepare_cached(
                "SELECT job_id, expires_at FROM idempotency_keys WHERE namespace = ?1 AND key = ?2",
            )?
            .query_row(params![namespace.as_str(), key], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let Some((id, expires_at)) = known else {
            return Ok(None);
        };
        if expires_at <= now.as_millis() {
            return Ok(None);
        }
        let id = blob_id(&id)?;
        let state = match self.live(namespace, id) {
            Some(job) => Some(job.life.state),
            None => self.state_on_disk(namespace, id)?,
        };
        Ok(state.map(|state| Enqueued {
            id,
            state,
            deduplicated: true,
            debounced: false,
        }))
    }
}
