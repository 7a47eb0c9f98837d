//! Queues on PostgreSQL: a row of `keel_queues` per queue with a policy or
//! a pause; policies are cached for a second on each node.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use keel_core::{Error, JobState, Namespace, QueueName, QueuePolicy, QueueRef, Timestamp};
use keel_store::{Depth, QueueStats, QueueStore};
use tokio_postgres::types::ToSql;

use crate::jobs::rows::{from_json, state_of};
use crate::{PostgresStore, db};

/// How long a queue policy read from the database is trusted; a change made
/// on another node takes effect within this.
pub(crate) const POLICY_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

impl PostgresStore {
    /// Writes one setting of a queue's row (`sql` takes namespace, queue,
    /// the value and now), creating the row if needed.
    async fn queue_row_set(
        &self,
        sql: &str,
        queue: &QueueRef,
        value: &(dyn ToSql + Sync),
        now: Timestamp,
    ) -> Result<(), Error> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(db)?;
        let params: [&(dyn ToSql + Sync); 4] = [
            &queue.namespace.as_str(),
            &queue.queue.as_str(),
            value,
            &now.as_millis(),
        ];
        client.execute(&stmt, &params).await.map_err(db)?;
        Ok(())
    }

    /// A queue's policy, cached for a second: enqueues read it on every call.
    pub(crate) async fn cached_policy(&self, queue: &QueueRef) -> Option<QueuePolicy> {
        let policies = self.policies.lock().unwrap_or_else(PoisonError::into_inner);
        policies
            .get(queue)
            .filter(|(_, at)| at.elapsed() < POLICY_REFRESH)
            .map(|(p, _)| p.clone())
    }
}

#[async_trait]
impl QueueStore for PostgresStore {
    async fn queue_policy(&self, queue: &QueueRef) -> Result<QueuePolicy, Error> {
        if let Some(policy) = self.cached_policy(queue).await {
            return Ok(policy);
        }
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT policy::text FROM keel_queues WHERE namespace = $1 AND queue = $2",
                &[&queue.namespace.as_str(), &queue.queue.as_str()],
            )
            .await
            .map_err(db)?;
        let policy: QueuePolicy = row
            .map(|r| from_json(r.get(0)))
            .transpose()?
            .unwrap_or_default();
        self.policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(queue.clone(), (policy.clone(), std::time::Instant::now()));
        Ok(policy)
    }

    async fn queue_policy_set(
        &self,
        queue: &QueueRef,
        policy: QueuePolicy,
        now: Timestamp,
    ) -> Result<(), Error> {
        let json = keel_store::codec::encode("queue policy", &policy)?;
        self.queue_row_set(
            include_str!("../queries/queues/set_policy.sql"),
            queue,
            &json,
            now,
        )
        .await?;
        self.policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(queue);
        Ok(())
    }

    async fn queue_pause(
        &self,
        queue: &QueueRef,
        paused: bool,
        now: Timestamp,
    ) -> Result<(), Error> {
        self.queue_row_set(
            include_str!("../queries/queues/set_paused.sql"),
            queue,
            &paused,
            now,
        )
        .await?;
        if !paused {
            // As many as may wait: the count is not known here.
            self.ready(queue, keel_store::MAX_WOKEN);
        }
        Ok(())
    }

    async fn queue_policies(&self) -> Result<Vec<(QueueRef, QueuePolicy)>, Error> {
        let rows = self
            .client()
            .await?
            .query(include_str!("../queries/queues/policies.sql"), &[])
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                let corrupt =
                    |e: Error| Error::internal(format!("corrupt queue row: {}", e.message));
                let queue = QueueRef {
                    namespace: Namespace::new(r.get(0)).map_err(corrupt)?,
                    queue: QueueName::new(r.get(1)).map_err(corrupt)?,
                };
                Ok((queue, from_json(r.get(2))?))
            })
            .collect()
    }

    async fn queue_stats(&self, queue: &QueueRef) -> Result<QueueStats, Error> {
        let client = self.client().await?;
        let (namespace, name) = (queue.namespace.as_str(), queue.queue.as_str());
        let stmt = client
            .prepare_cached(include_str!("../queries/queues/queue_stats.sql"))
            .await
            .map_err(db)?;
        let mut counts: BTreeMap<JobState, u64> =
            JobState::ALL.into_iter().map(|s| (s, 0)).collect();
        for row in client
            .query(&stmt, &[&namespace, &name])
            .await
            .map_err(db)?
        {
            counts.insert(state_of(row.get(0))?, row.get::<_, i64>(1) as u64);
        }
        let oldest: Option<i64> = client
            .query_one("SELECT min(run_at) FROM keel_jobs WHERE namespace = $1 AND queue = $2 AND state = 'ready'", &[&namespace, &name])
            .await
            .map_err(db)?
            .get(0);
        let settings = client
            .query_opt(
                "SELECT paused, policy::text FROM keel_queues WHERE namespace = $1 AND queue = $2",
                &[&namespace, &name],
            )
            .await
            .map_err(db)?;
        let (paused, policy) = match settings {
            Some(row) => (row.get(0), from_json(row.get(1))?),
            None => (false, QueuePolicy::default()),
        };
        Ok(QueueStats {
            counts,
            oldest_ready_at: oldest.map(Timestamp::from_millis),
            paused,
            policy,
        })
    }

    async fn queue_depths(&self) -> Result<Vec<Depth>, Error> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(include_str!("../queries/queues/depths.sql"))
            .await
            .map_err(db)?;
        let rows = client.query(&stmt, &[]).await.map_err(db)?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                Some(Depth {
                    queue: QueueRef {
                        namespace: Namespace::new(row.get(0)).ok()?,
                        queue: QueueName::new(row.get(1)).ok()?,
                    },
                    state: JobState::parse(row.get(2))?,
                    count: row.get::<_, i64>(3) as u64,
                })
            })
            .collect())
    }
}
