//! Jobs on PostgreSQL: the [`JobStore`] operations. Each is one transaction;
//! transitions of existing jobs lock their rows and let `keel_core` decide.

mod ack;
mod debounce;
mod flow;
mod lease;
mod reads;
pub(crate) mod rows;

use std::collections::HashMap;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use keel_core::gate::WaitFacts;
use keel_core::{
    Error, Job, JobId, JobState, LeaseToken, Namespace, NewJob, QueueName, QueuePolicy, QueueRef,
    Timestamp,
};
use keel_store::{
    Ack, Acked, Enqueued, IDEMPOTENCY_WINDOW_MS, JobFilter, JobPage, JobStore, LeaseRequest,
    LeasedJob, RedriveSelection,
};
use serde_json::value::RawValue;
use uuid::Uuid;

pub(crate) use self::ack::AckWake;
use self::debounce::{Debounced, debounce_lock};
use self::rows::{NewRows, from_json, state_of};
use crate::keys::{Freed, lock_name};
use crate::{PostgresStore, db, job_id, uuid};

/// Finished jobs deleted per statement of a prune.
const PRUNE_CHUNK: i64 = 10_000;

#[async_trait]
impl JobStore for PostgresStore {
    #[tracing::instrument(level = "debug", name = "store.commit", skip_all, fields(db.system.name = "postgresql", op = "jobs_enqueue"))]
    async fn jobs_enqueue(
        &self,
        queue: &QueueRef,
        jobs: Vec<NewJob>,
        now: Timestamp,
    ) -> Result<Vec<Enqueued>, Error> {
        let namespace = queue.namespace.as_str();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let claim = tx
            .prepare_cached(include_str!("../../queries/jobs/claim_idempotency_key.sql"))
            .await
            .map_err(db)?;
        let keys: Vec<String> = jobs
            .iter()
            .filter_map(|j| j.ordering_key.as_deref())
            .map(|key| lock_name(namespace, queue.queue.as_str(), key))
            .chain(
                jobs.iter()
                    .filter_map(|j| j.debounce_key.as_deref())
                    .map(|key| debounce_lock(queue, key)),
            )
            .collect();
        Self::lock_keys(&tx, &keys).await?;
        let mut out: Vec<Enqueued> = Vec::with_capacity(jobs.len());
        let mut rows = NewRows::default();
        let mut debounced = Debounced::default();
        let mut first_of_debounce: HashMap<&str, usize> = HashMap::new();
        let mut first_due: Option<Timestamp> = None;
        for job in &jobs {
            if let Some(key) = job.debounce_key.as_deref() {
                let waiting = match first_of_debounce.get(key) {
                    Some(&first) => Some(out[first].id),
                    None => {
                        first_of_debounce.insert(key, out.len());
                        Self::debounce_match(&tx, queue, key, now).await?
                    }
                };
                if let Some(id) = waiting {
                    debounced.replaces(uuid(id), job.payload.get());
                    out.push(Enqueued {
                        id,
                        state: JobState::Scheduled,
                        deduplicated: false,
                        debounced: true,
                    });
                    continue;
                }
            }
            let id = self.next_id(now);
            if let Some(key) = job.debounce_key.as_deref() {
                debounced.opens(uuid(id), key);
            }
            if let Some(key) = &job.idempotency_key {
                let expires = now.plus_ms(IDEMPOTENCY_WINDOW_MS).as_millis();
                let claimed = tx
                    .query_opt(
                        &claim,
                        &[&namespace, key, &uuid(id), &expires, &now.as_millis()],
                    )
                    .await
                    .map_err(db)?;
                if claimed.is_none() {
                    // An unexpired claim exists (perhaps from this very batch).
                    let row = tx
                        .query_one(
                            "SELECT i.job_id, j.state FROM keel_idempotency i LEFT JOIN keel_jobs j ON j.id = i.job_id \
                             WHERE i.namespace = $1 AND i.key = $2",
                            &[&namespace, key],
                        )
                        .await
                        .map_err(db)?;
                    let earlier: Uuid = row.get(0);
                    let state: Option<String> = row.get(1);
                    let state = match state {
                        Some(s) => state_of(&s)?,
                        None => out
                            .iter()
                            .find(|e| uuid(e.id) == earlier)
                            .map_or(JobState::Ready, |e| e.state),
                    };
                    out.push(Enqueued {
                        id: job_id(earlier),
                        state,
                        deduplicated: true,
                        debounced: false,
                    });
                    continue;
                }
            }
            let state = rows.push(queue, id, job, None, now)?;
            if state == JobState::Scheduled {
                first_due =
                    Some(first_due.map_or(job.run_at, |due: Timestamp| due.min(job.run_at)));
            }
            out.push(Enqueued {
                id,
                state,
                deduplicated: false,
                debounced: false,
            });
        }
        Self::insert_jobs(&tx, &rows, now).await?;
        debounced.apply(&tx, now).await?;
        self.check_bound(&tx, &queue.namespace, rows.id.len() as u64)
            .await?;
        tx.commit().await.map_err(db)?;
        self.deadline(first_due, now);
        let ready = out
            .iter()
            .filter(|e| e.state == JobState::Ready && !e.deduplicated)
            .count();
        if ready > 0 {
            self.ready(queue, ready);
        }
        Ok(out)
    }

    #[tracing::instrument(level = "debug", name = "store.commit", skip_all, fields(db.system.name = "postgresql", op = "jobs_lease"))]
    async fn jobs_lease(
        &self,
        req: &LeaseRequest,
        now: Timestamp,
    ) -> Result<Vec<LeasedJob>, Error> {
        self.lease(req, now).await
    }

    #[tracing::instrument(level = "debug", name = "store.commit", skip_all, fields(db.system.name = "postgresql", op = "jobs_ack"))]
    async fn jobs_ack(
        &self,
        namespace: &Namespace,
        acks: Vec<Ack>,
        now: Timestamp,
    ) -> Result<Vec<Result<Acked, Error>>, Error> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let (out, wake) = self.ack_in(&tx, namespace, acks, now).await?;
        tx.commit().await.map_err(db)?;
        self.after_ack(namespace, &out, wake, now).await?;
        Ok(out)
    }

    async fn job_heartbeat(
        &self,
        namespace: &Namespace,
        token: LeaseToken,
        lease_ms: Option<u64>,
        now: Timestamp,
    ) -> Result<Timestamp, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let Some(mut locked) = Self::lock_job(&tx, namespace, token.job).await? else {
            return Err(Self::missing(token.job));
        };
        let until =
            locked
                .life
                .heartbeat(token.lease_seq, now, lease_ms.unwrap_or(locked.lease_ms))?;
        Self::write_life(&tx, token.job, &locked.life, now, None).await?;
        tx.commit().await.map_err(db)?;
        self.deadline(Some(until), now);
        Ok(until)
    }

    async fn job_cancel(
        &self,
        namespace: &Namespace,
        id: JobId,
        now: Timestamp,
    ) -> Result<Acked, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let Some(mut locked) = Self::lock_job(&tx, namespace, id).await? else {
            return Err(Self::missing(id));
        };
        locked.life.cancel()?;
        Self::write_life(&tx, id, &locked.life, now, None).await?;
        let freed: Vec<Freed> = locked.freed(namespace).into_iter().collect();
        let handed_on = Self::free_keys(&tx, &freed).await?;
        tx.commit().await.map_err(db)?;
        for (queue, jobs) in &handed_on {
            self.ready(queue, *jobs);
        }
        Ok(Acked {
            id,
            queue: QueueName::new(&locked.queue)?,
            state: JobState::Cancelled,
            run_at: None,
            owner: locked.owner,
            attempt: locked.life.attempt,
        })
    }

    async fn job_get(&self, namespace: &Namespace, id: JobId) -> Result<Job, Error> {
        self.read_job(namespace, id).await
    }

    async fn job_waiting(&self, namespace: &Namespace, id: JobId) -> Result<WaitFacts, Error> {
        self.read_wait_facts(namespace, id).await
    }

    async fn jobs_list(&self, namespace: &Namespace, filter: &JobFilter) -> Result<JobPage, Error> {
        self.read_page(namespace, filter).await
    }

    async fn jobs_redrive(
        &self,
        queue: &QueueRef,
        selection: RedriveSelection,
        payload: Option<Box<RawValue>>,
        now: Timestamp,
    ) -> Result<Vec<JobId>, Error> {
        let (namespace, queue_name) = (queue.namespace.as_str(), queue.queue.as_str());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let candidates: Vec<JobId> = match selection {
            RedriveSelection::Ids(ids) => ids,
            RedriveSelection::All => tx
                .query(
                    "SELECT id FROM keel_jobs WHERE namespace = $1 AND state = 'dead' AND queue = $2 ORDER BY seq",
                    &[&namespace, &queue_name],
                )
                .await
                .map_err(db)?
                .into_iter()
                .map(|row| job_id(row.get(0)))
                .collect(),
        };
        let mut redriven = Vec::new();
        for id in candidates {
            let Some(mut locked) = Self::lock_job(&tx, &queue.namespace, id).await? else {
                continue;
            };
            if locked.queue != queue_name || locked.life.redrive(now).is_err() {
                continue;
            }
            redriven.push((id, locked));
        }
        // A redriven keyed job holds its key only if no other job does.
        let keys: Vec<String> = redriven
            .iter()
            .filter_map(|(_, l)| l.ordering_key.as_deref())
            .map(|key| lock_name(namespace, queue_name, key))
            .collect();
        Self::lock_keys(&tx, &keys).await?;
        let mut moved = Vec::new();
        for (id, locked) in redriven {
            if locked.ordering_key.is_some() {
                tx.execute(
                    include_str!("../../queries/jobs/redrive_runnable.sql"),
                    &[&uuid(id)],
                )
                .await
                .map_err(db)?;
            }
            Self::write_life(&tx, id, &locked.life, now, None).await?;
            if let Some(payload) = &payload {
                tx.execute(
                    "UPDATE keel_jobs SET payload = $2 WHERE id = $1",
                    &[&uuid(id), &payload.get()],
                )
                .await
                .map_err(db)?;
            }
            moved.push(id);
        }
        tx.commit().await.map_err(db)?;
        if !moved.is_empty() {
            self.ready(queue, moved.len());
        }
        Ok(moved)
    }

    async fn jobs_prune(&self, now: Timestamp) -> Result<u64, Error> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(include_str!("../../queries/jobs/prune.sql"))
            .await
            .map_err(db)?;
        let defaults = QueuePolicy::default();
        let mut pruned = 0;
        loop {
            let row = client
                .query_one(
                    &stmt,
                    &[
                        &now.as_millis(),
                        &(defaults.retention_ms() as i64),
                        &(defaults.dead_retention_ms() as i64),
                        &PRUNE_CHUNK,
                    ],
                )
                .await
                .map_err(db)?;
            let n = row.get::<_, i64>(0);
            pruned += n as u64;
            if n < PRUNE_CHUNK {
                break;
            }
        }
        client
            .execute(
                "DELETE FROM keel_idempotency WHERE expires_at <= $1",
                &[&now.as_millis()],
            )
            .await
            .map_err(db)?;
        client
            .execute(
                include_str!("../../queries/jobs/flow_keys_prune.sql"),
                &[&(now.as_millis() * 1000)],
            )
            .await
            .map_err(db)?;
        Ok(pruned)
    }
}
