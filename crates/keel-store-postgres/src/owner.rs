//! Owned jobs on PostgreSQL: the owner is a column of `keel_jobs` (its
//! [`JobOwner::encode`] text), written with the owner's own state in one
//! statement or one transaction, and read back with every transition.

use deadpool_postgres::GenericClient;
use keel_core::{Error, JobState, Namespace, Timestamp};
use keel_store::OwnedJob;

use crate::jobs::rows::NewRows;
use crate::keys::lock_name;
use crate::{PostgresStore, Woken};

/// The rows of the jobs a journal write starts, what to signal once they
/// commit, how many new jobs each namespace gets, and the ordering keys
/// whose locks the write needs.
pub(crate) struct OwnedRows<'a> {
    pub(crate) rows: NewRows<'a>,
    pub(crate) woken: Woken,
    pub(crate) fresh: Vec<(&'a Namespace, u64)>,
    pub(crate) keys: Vec<String>,
}

impl<'a> OwnedRows<'a> {
    pub(crate) fn new(jobs: &'a [OwnedJob], now: Timestamp) -> Result<Self, keel_core::Error> {
        let mut woken = Woken::default();
        let mut rows = NewRows::default();
        let mut fresh: Vec<(&Namespace, u64)> = Vec::new();
        let mut keys = Vec::new();
        for OwnedJob {
            queue,
            id,
            job,
            owner,
        } in jobs
        {
            match rows.push(queue, *id, job, owner.as_ref(), now)? {
                JobState::Ready => *woken.ready.entry(queue.clone()).or_default() += 1,
                _ => {
                    let due = woken.due.map_or(job.run_at, |d| d.min(job.run_at));
                    woken.due = Some(due);
                }
            }
            if let Some(key) = &job.ordering_key {
                keys.push(lock_name(
                    queue.namespace.as_str(),
                    queue.queue.as_str(),
                    key,
                ));
            }
            match fresh.iter_mut().find(|(ns, _)| *ns == &queue.namespace) {
                Some((_, n)) => *n += 1,
                None => fresh.push((&queue.namespace, 1)),
            }
        }
        Ok(OwnedRows {
            rows,
            woken,
            fresh,
            keys,
        })
    }
}

impl PostgresStore {
    /// Creates the jobs of a run's journal write inside its transaction;
    /// returns what to signal once it commits.
    pub(crate) async fn insert_owned(
        &self,
        tx: &impl GenericClient,
        jobs: OwnedRows<'_>,
        now: Timestamp,
    ) -> Result<Woken, Error> {
        let OwnedRows {
            rows,
            woken,
            fresh,
            keys,
        } = jobs;
        Self::lock_keys(tx, &keys).await?;
        Self::insert_jobs(tx, &rows, now).await?;
        for (namespace, n) in fresh {
            self.check_bound(tx, namespace, n).await?;
        }
        Ok(woken)
    }

    /// Whether writing `jobs` takes a transaction rather than one statement:
    /// when they have ordering keys (whose locks must be held), or a
    /// namespace they go to is near its bound (by the estimate), where only a
    /// transaction can count exactly and roll back.
    pub(crate) async fn needs_transaction(
        &self,
        client: &impl GenericClient,
        jobs: &OwnedRows<'_>,
    ) -> Result<bool, Error> {
        if !jobs.keys.is_empty() {
            return Ok(true);
        }
        for (namespace, n) in &jobs.fresh {
            if self.near_namespace_bound(client, namespace, *n).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
