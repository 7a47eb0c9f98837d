//! The namespace bound on PostgreSQL: an estimate of each namespace's
//! unfinished jobs, refreshed each second in the background (off the
//! enqueue's path), and an exact count inside the transaction only near the
//! bound. So it is soft under concurrent enqueues from several nodes, the one
//! cross-node rule that an in-process value guards (ARCHITECTURE.md).

use std::sync::PoisonError;

use deadpool_postgres::GenericClient;
use keel_core::{Error, Namespace};

use crate::{PostgresStore, db};

/// How long a namespace's count of unfinished jobs is trusted.
const COUNT_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// A namespace's unfinished jobs, as last counted.
pub(crate) struct NamespaceCount {
    count: u64,
    at: std::time::Instant,
    /// A recount is on its way.
    refreshing: bool,
}

impl NamespaceCount {
    fn new(count: u64) -> Self {
        NamespaceCount {
            count,
            at: std::time::Instant::now(),
            refreshing: false,
        }
    }
}

async fn count_unfinished(
    client: &impl GenericClient,
    namespace: &Namespace,
) -> Result<u64, Error> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM keel_jobs WHERE namespace = $1 AND finished_at IS NULL",
            &[&namespace.as_str()],
        )
        .await
        .map_err(db)?
        .get::<_, i64>(0) as u64)
}

impl PostgresStore {
    /// Whether a namespace may be close enough to its bound to need an exact
    /// count inside the enqueue transaction. Counting on every enqueue would
    /// cost as much as the queue is deep, so the count is trusted while far
    /// from the bound (under half of it) and refreshed in the background at
    /// most once a second, off the enqueue's path; only a namespace never
    /// counted yet is counted inline.
    pub(crate) async fn near_namespace_bound(
        &self,
        tx: &impl GenericClient,
        namespace: &Namespace,
        adding: u64,
    ) -> Result<bool, Error> {
        let limit = self
            .job_quota(tx, namespace)
            .await?
            .unwrap_or(self.max_namespace_jobs);
        let known = self
            .namespace_counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
            .map(|c| (c.count, c.at.elapsed() >= COUNT_REFRESH && !c.refreshing));
        let count = match known {
            Some((count, stale)) => {
                if stale {
                    self.refresh_count(namespace);
                }
                count
            }
            None => {
                let count = count_unfinished(tx, namespace).await?;
                self.namespace_counts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(namespace.clone(), NamespaceCount::new(count));
                count
            }
        };
        Ok(count + adding > limit / 2)
    }

    /// Recounts a namespace's unfinished jobs on a connection of its own.
    pub(crate) fn refresh_count(&self, namespace: &Namespace) {
        let counts = self.namespace_counts.clone();
        if let Some(c) = counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(namespace)
        {
            c.refreshing = true;
        }
        let (pool, namespace) = (self.pool.clone(), namespace.clone());
        tokio::spawn(async move {
            let counted = match crate::checkout(&pool).await {
                Ok(client) => count_unfinished(&client, &namespace).await.ok(),
                Err(_) => None,
            };
            let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
            match counted {
                Some(count) => {
                    counts.insert(namespace, NamespaceCount::new(count));
                }
                // Counted again at the next enqueue after a second.
                None => {
                    if let Some(c) = counts.get_mut(&namespace) {
                        c.refreshing = false;
                    }
                }
            }
        });
    }

    /// Refuses (the caller's transaction then rolls back) when `fresh` new
    /// jobs took `namespace` over its bound.
    pub(crate) async fn check_bound(
        &self,
        tx: &impl GenericClient,
        namespace: &Namespace,
        fresh: u64,
    ) -> Result<(), Error> {
        if fresh == 0 {
            return Ok(());
        }
        let quota = self.job_quota(tx, namespace).await?;
        let limit = quota.unwrap_or(self.max_namespace_jobs);
        if !self.near_namespace_bound(tx, namespace, fresh).await? {
            return Ok(());
        }
        let row = tx
            .query_one(
                "SELECT count(*) FROM keel_jobs WHERE namespace = $1 AND finished_at IS NULL",
                &[&namespace.as_str()],
            )
            .await
            .map_err(db)?;
        let unfinished = row.get::<_, i64>(0) as u64;
        match quota {
            Some(quota) if unfinished > quota => Err(keel_core::quota::exceeded(
                namespace.as_str(),
                "max_jobs",
                quota,
                unfinished,
            )),
            None if unfinished > limit => Err(Error::namespace_full(namespace, unfinished, limit)),
            _ => Ok(()),
        }
    }
}
