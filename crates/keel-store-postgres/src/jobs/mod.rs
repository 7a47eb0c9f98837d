//! Jobs on PostgreSQL: the [`JobStore`] operations. Each is one transaction;
//! transitions of existing jobs lock their rows and let `keel_core` decide.

mod debounce;
mod flow;
mod lease;
mod reads;
pub(crate) mod rows;

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use keel_core::gate::WaitFacts;
use keel_core::{
    Error, Job, JobId, JobState, LeaseToken, Namespace, NewJob, QueueName, QueuePolicy, QueueRef,
    Timestamp, Transition,
};
use keel_store::{
    Ack, AckOutcome, Acked, Enqueued, IDEMPOTENCY_WINDOW_MS, JobFilter, JobPage, JobStore,
    LeaseRequest, LeasedJob, RedriveSelection,
};
use serde_json::value::RawValue;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use self::debounce::{Debounced, debounce_lock};
use self::rows::{Locked, NewRows, from_json, state_of};
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
        // Three statements for the whole batch: lock, decide in keel-core, write.
        let ids: Vec<Uuid> = acks.iter().map(|a| uuid(a.token.job)).collect();
        let lock = tx
            .prepare_cached(include_str!("../../queries/jobs/lock_jobs.sql"))
            .await
            .map_err(db)?;
        let mut jobs: std::collections::HashMap<JobId, Locked> = tx
            .query(&lock, &[&ids])
            .await
            .map_err(db)?
            .into_iter()
            .filter(|row| row.get::<_, &str>(12) == namespace.as_str())
            .map(|row| Ok((job_id(row.get(0)), Locked::from_row(&row, 1)?)))
            .collect::<Result<_, Error>>()?;
        let mut out = Vec::with_capacity(acks.len());
        let mut results: std::collections::HashMap<JobId, String> =
            std::collections::HashMap::new();
        let mut changed: Vec<JobId> = Vec::new();
        let mut errors: (Vec<Uuid>, Vec<i32>, Vec<String>, Vec<i64>) = Default::default();
        let mut woken: Vec<QueueName> = Vec::new();
        for ack in acks {
            let id = ack.token.job;
            let Some(locked) = jobs.get_mut(&id) else {
                out.push(Err(Self::missing(id)));
                continue;
            };
            let queue = QueueName::new(&locked.queue)?;
            let owner = &locked.owner;
            let lease_seq = ack.token.lease_seq;
            let acked = match ack.outcome {
                AckOutcome::Complete { result } => locked.life.complete(lease_seq, now).map(|()| {
                    if let Some(result) = result {
                        results.insert(id, result.get().to_owned());
                    }
                    Acked {
                        id,
                        queue,
                        state: JobState::Succeeded,
                        run_at: None,
                        owner: owner.clone(),
                        attempt: locked.life.attempt,
                    }
                }),
                AckOutcome::Fail { message, retry } => locked
                    .life
                    .fail(lease_seq, now, retry, &locked.backoff, fastrand::f64())
                    .map(|transition| {
                        errors.0.push(uuid(id));
                        errors.1.push(locked.life.attempt as i32);
                        errors.2.push(message);
                        errors.3.push(now.as_millis());
                        if transition == Transition::Ready {
                            woken.push(queue.clone());
                        }
                        let run_at = (transition != Transition::Dead).then_some(locked.life.run_at);
                        Acked {
                            id,
                            queue,
                            state: locked.life.state,
                            run_at,
                            owner: owner.clone(),
                            attempt: locked.life.attempt,
                        }
                    }),
            };
            if acked.is_ok() && !changed.contains(&id) {
                changed.push(id);
            }
            out.push(acked);
        }
        if !changed.is_empty() {
            let mut cols: (
                Vec<Uuid>,
                Vec<&str>,
                Vec<i32>,
                Vec<i64>,
                Vec<i64>,
                Vec<Option<i64>>,
                Vec<Option<i64>>,
                Vec<Option<String>>,
            ) = Default::default();
            for id in &changed {
                let life = &jobs[id].life;
                cols.0.push(uuid(*id));
                cols.1.push(life.state.as_str());
                cols.2.push(life.attempt as i32);
                cols.3.push(life.run_at.as_millis());
                cols.4.push(life.lease_seq as i64);
                cols.5.push(life.lease_expires_at.map(Timestamp::as_millis));
                cols.6
                    .push(life.state.is_final().then_some(now.as_millis()));
                cols.7.push(results.remove(id));
            }
            let apply = tx
                .prepare_cached(include_str!("../../queries/jobs/apply_transitions.sql"))
                .await
                .map_err(db)?;
            let now_ms = now.as_millis();
            let params: [&(dyn ToSql + Sync); 9] = [
                &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &cols.6, &cols.7, &now_ms,
            ];
            tx.execute(&apply, &params).await.map_err(db)?;
        }
        if !errors.0.is_empty() {
            let insert = tx
                .prepare_cached(include_str!("../../queries/jobs/insert_errors.sql"))
                .await
                .map_err(db)?;
            tx.execute(&insert, &[&errors.0, &errors.1, &errors.2, &errors.3])
                .await
                .map_err(db)?;
        }
        let freed: Vec<Freed> = changed
            .iter()
            .filter_map(|id| jobs[id].freed(namespace))
            .collect();
        let handed_on = Self::free_keys(&tx, &freed).await?;
        tx.commit().await.map_err(db)?;
        for (queue, jobs) in &handed_on {
            self.ready(queue, *jobs);
        }
        let retries = out
            .iter()
            .flatten()
            .filter(|a| a.state == JobState::Scheduled);
        self.deadline(retries.filter_map(|a| a.run_at).min(), now);
        let mut ready: BTreeMap<QueueName, usize> = BTreeMap::new();
        for queue in woken {
            *ready.entry(queue).or_default() += 1;
        }
        // Leases that ended make room under a concurrency bound: leasers
        // parked on it (on any node) may take the next jobs now.
        let mut ended: BTreeMap<QueueName, usize> = BTreeMap::new();
        for acked in out.iter().flatten() {
            *ended.entry(acked.queue.clone()).or_default() += 1;
        }
        for (queue, n) in ended {
            let queue = QueueRef {
                namespace: namespace.clone(),
                queue,
            };
            let policy = keel_store::QueueStore::queue_policy(self, &queue).await?;
            if policy.max_concurrency.is_some() || policy.max_key_concurrency.is_some() {
                *ready.entry(queue.queue).or_default() += n;
            }
        }
        for (queue, jobs) in ready {
            let queue = QueueRef {
                namespace: namespace.clone(),
                queue,
            };
            self.ready(&queue, jobs);
        }
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
