//! Acknowledgements on PostgreSQL: the batch's rows locked, each ack's
//! transition decided by `keel_core`, the rows written, ordering keys handed
//! on, all inside the caller's transaction ([`PostgresStore::ack_in`]); the
//! ready signals once it committed ([`PostgresStore::after_ack`]). A
//! handler's commit acks its job this way inside its own transaction.

use std::collections::BTreeMap;

use deadpool_postgres::Transaction;
use keel_core::{Error, JobId, JobState, Namespace, QueueName, QueueRef, Timestamp, Transition};
use keel_store::{Ack, AckOutcome, Acked};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::rows::Locked;
use crate::keys::Freed;
use crate::{PostgresStore, db, job_id, uuid};

/// `apply_transitions.sql`'s columns: id, state, attempt, run_at,
/// lease_seq, lease_expires_at, finished_at, result.
type Transitions<'a> = (
    Vec<Uuid>,
    Vec<&'a str>,
    Vec<i32>,
    Vec<i64>,
    Vec<i64>,
    Vec<Option<i64>>,
    Vec<Option<i64>>,
    Vec<Option<String>>,
);

/// What an ack's transaction leaves to signal once it commits.
pub(crate) struct AckWake {
    handed_on: BTreeMap<QueueRef, usize>,
    woken: Vec<QueueName>,
}

impl PostgresStore {
    /// Applies `acks` inside `tx`; each succeeds or fails on its own.
    pub(crate) async fn ack_in(
        &self,
        tx: &Transaction<'_>,
        namespace: &Namespace,
        acks: Vec<Ack>,
        now: Timestamp,
    ) -> Result<(Vec<Result<Acked, Error>>, AckWake), Error> {
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
            let mut cols: Transitions<'_> = Default::default();
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
        let handed_on = Self::free_keys(tx, &freed).await?;
        Ok((out, AckWake { handed_on, woken }))
    }

    /// The signals of acks that committed: keys handed on, retries' timer,
    /// queues with ready jobs or room under a concurrency bound.
    pub(crate) async fn after_ack(
        &self,
        namespace: &Namespace,
        out: &[Result<Acked, Error>],
        wake: AckWake,
        now: Timestamp,
    ) -> Result<(), Error> {
        let AckWake { handed_on, woken } = wake;
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
        Ok(())
    }
}
