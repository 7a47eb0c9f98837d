//! Queues on the embedded store: policies and pause switches are rows of
//! `queues` mirrored in the hot index (and in [`crate::writer::SharedPolicies`]
//! for reads without the writer); counts come from the hot index.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use async_trait::async_trait;
use keel_core::flow::FlowKey;
use keel_core::{Error, JobState, QueuePolicy, QueueRef, Timestamp};
use keel_store::{Depth, QueueStats, QueueStore};
use rusqlite::params;

use crate::SqliteStore;
use crate::rows::{blob_id, tags_from_sql};
use crate::writer::{Applied, Writer};

#[async_trait]
impl QueueStore for SqliteStore {
    async fn queue_policy(&self, queue: &QueueRef) -> Result<QueuePolicy, Error> {
        let policies = self.policies.read().unwrap_or_else(PoisonError::into_inner);
        Ok(policies.get(queue).cloned().unwrap_or_default())
    }

    async fn queue_policy_set(
        &self,
        queue: &QueueRef,
        policy: QueuePolicy,
        now: Timestamp,
    ) -> Result<(), Error> {
        let queue = queue.clone();
        self.write(move |w| w.policy_set(&queue, policy, now)).await
    }

    async fn queue_pause(
        &self,
        queue: &QueueRef,
        paused: bool,
        now: Timestamp,
    ) -> Result<(), Error> {
        let queue = queue.clone();
        self.write(move |w| w.pause(&queue, paused, now)).await
    }

    async fn queue_policies(&self) -> Result<Vec<(QueueRef, QueuePolicy)>, Error> {
        let policies = self.policies.read().unwrap_or_else(PoisonError::into_inner);
        Ok(policies
            .iter()
            .map(|(queue, policy)| (queue.clone(), policy.clone()))
            .collect())
    }

    async fn queue_stats(&self, queue: &QueueRef) -> Result<QueueStats, Error> {
        let queue = queue.clone();
        self.read_hot(move |w| w.stats(&queue)).await
    }

    async fn queue_depths(&self) -> Result<Vec<Depth>, Error> {
        self.read_hot(|w| w.depths()).await
    }
}

impl Writer {
    pub(crate) fn policy_set(
        &mut self,
        queue: &QueueRef,
        policy: QueuePolicy,
        now: Timestamp,
    ) -> Applied<()> {
        let json = crate::rows::to_json("queue policy", &policy)?;
        self.conn
            .prepare_cached(
                "INSERT INTO queues (namespace, queue, policy, paused, updated_at) VALUES (?1, ?2, ?3, 0, ?4) \
                 ON CONFLICT (namespace, queue) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
            )?
            .execute(params![queue.namespace.as_str(), queue.queue.as_str(), json, now.as_millis()])?;
        let idx = self.hot.queue_entry(queue);
        if self.hot.queues[idx].policy.key != policy.key {
            self.rekey(queue, policy.key.as_ref())?;
        }
        self.hot.set_policy(idx, policy.clone());
        self.policies
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(queue.clone(), policy);
        Ok(Ok(()))
    }

    /// Gives the queue's unfinished jobs their keys under a new `key`
    /// setting, on disk and in the hot index (which `set_policy` then
    /// indexes by key afresh).
    fn rekey(&mut self, queue: &QueueRef, key: Option<&FlowKey>) -> rusqlite::Result<()> {
        let keyed: Vec<(i64, Vec<u8>, Option<String>)> = self
            .conn
            .prepare_cached(
                "SELECT seq, id, tags, ordering_key FROM jobs \
                 WHERE namespace = ?1 AND queue = ?2 AND finished_at IS NULL",
            )?
            .query_map(
                params![queue.namespace.as_str(), queue.queue.as_str()],
                |r| {
                    let tags = tags_from_sql(r.get(2)?)?;
                    let ordering_key: Option<String> = r.get(3)?;
                    let flow_key = key.map(|key| key.of(&tags, ordering_key.as_deref()));
                    Ok((r.get(0)?, r.get(1)?, flow_key))
                },
            )?
            .collect::<Result<_, _>>()?;
        for (seq, id, flow_key) in keyed {
            self.conn
                .prepare_cached("UPDATE jobs SET flow_key = ?2 WHERE seq = ?1")?
                .execute(params![seq, flow_key])?;
            if let Some(job) = self.hot.jobs.get_mut(&blob_id(&id)?) {
                job.set_flow_key(flow_key.map(Arc::from));
            }
        }
        Ok(())
    }

    pub(crate) fn pause(&mut self, queue: &QueueRef, paused: bool, now: Timestamp) -> Applied<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO queues (namespace, queue, policy, paused, updated_at) VALUES (?1, ?2, '{}', ?3, ?4) \
                 ON CONFLICT (namespace, queue) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at",
            )?
            .execute(params![queue.namespace.as_str(), queue.queue.as_str(), paused, now.as_millis()])?;
        let idx = self.hot.queue_entry(queue);
        self.hot.set_paused(idx, paused);
        Ok(Ok(()))
    }

    pub(crate) fn stats(&self, queue: &QueueRef) -> QueueStats {
        let Some(idx) = self.hot.queue_idx(queue) else {
            return QueueStats::default();
        };
        let q = &self.hot.queues[idx];
        QueueStats {
            counts: JobState::ALL
                .into_iter()
                .map(|s| (s, q.count(s)))
                .collect::<BTreeMap<_, _>>(),
            oldest_ready_at: q.ready.iter().map(|&(_, run_at, _, _)| run_at).min(),
            paused: q.paused,
            policy: q.policy.clone(),
        }
    }

    pub(crate) fn depths(&self) -> Vec<Depth> {
        let unfinished = [JobState::Scheduled, JobState::Ready, JobState::Leased];
        self.hot
            .queues
            .iter()
            .flat_map(|q| {
                unfinished.into_iter().map(|state| Depth {
                    queue: q.queue.clone(),
                    state,
                    count: q.count(state),
                })
            })
            .collect()
    }
}
