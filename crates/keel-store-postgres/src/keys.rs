//! Ordering keys on PostgreSQL. Exactly one unfinished job of a key is
//! `runnable` (it holds the key); leasing reads only runnable ready jobs,
//! through an index, so its cost does not grow with the backlog behind the
//! keys. Every write that decides who holds a key (an enqueue, a job that
//! finishes, a redrive) takes the key's advisory lock first, in one order
//! everywhere (`queries/jobs/lock_keys.sql`); a unique index refuses a second
//! runnable job of a key whatever happens.

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;
use keel_core::{Error, Namespace, QueueName, QueueRef};

use crate::{PostgresStore, db};

/// A key as its lock names it.
pub(crate) fn lock_name(namespace: &str, queue: &str, key: &str) -> String {
    format!("{namespace}/{queue}/{key}")
}

/// A key that a finished job held.
pub(crate) struct Freed {
    pub(crate) namespace: String,
    pub(crate) queue: String,
    pub(crate) key: String,
}

impl PostgresStore {
    /// Takes the locks of `keys` (see [`lock_name`]) for the transaction.
    pub(crate) async fn lock_keys(tx: &impl GenericClient, keys: &[String]) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        let stmt = tx
            .prepare_cached(include_str!("../queries/jobs/lock_keys.sql"))
            .await
            .map_err(db)?;
        tx.query_one(&stmt, &[&keys]).await.map_err(db)?;
        Ok(())
    }

    /// Hands each freed key to its next job: locks the keys and makes the
    /// oldest unfinished job of each runnable. Returns how many ready jobs
    /// became leasable per queue, for the wake-ups after the commit.
    pub(crate) async fn free_keys(
        tx: &impl GenericClient,
        freed: &[Freed],
    ) -> Result<BTreeMap<QueueRef, usize>, Error> {
        let mut ready = BTreeMap::new();
        if freed.is_empty() {
            return Ok(ready);
        }
        let locks: Vec<String> = freed
            .iter()
            .map(|f| lock_name(&f.namespace, &f.queue, &f.key))
            .collect();
        Self::lock_keys(tx, &locks).await?;
        let stmt = tx
            .prepare_cached(include_str!("../queries/jobs/free_keys.sql"))
            .await
            .map_err(db)?;
        let namespaces: Vec<&str> = freed.iter().map(|f| f.namespace.as_str()).collect();
        let queues: Vec<&str> = freed.iter().map(|f| f.queue.as_str()).collect();
        let keys: Vec<&str> = freed.iter().map(|f| f.key.as_str()).collect();
        for row in tx
            .query(&stmt, &[&namespaces, &queues, &keys])
            .await
            .map_err(db)?
        {
            if row.get::<_, &str>(2) == "ready" {
                let queue = QueueRef {
                    namespace: Namespace::new(row.get(0))?,
                    queue: QueueName::new(row.get(1))?,
                };
                *ready.entry(queue).or_default() += 1;
            }
        }
        Ok(ready)
    }
}
