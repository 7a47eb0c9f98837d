//! Debounce keys on PostgreSQL: an enqueue takes its key's advisory lock
//! (with the batch's ordering keys, in one order), finds the key's job still
//! in its window, and replaces that job's payload instead of writing a job.

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;
use keel_core::{Error, JobId, QueueRef, Timestamp};
use uuid::Uuid;

use crate::keys::lock_name;
use crate::{PostgresStore, db, job_id};

/// A debounce key as its advisory lock names it (apart from ordering keys).
pub(super) fn debounce_lock(queue: &QueueRef, key: &str) -> String {
    lock_name(
        queue.namespace.as_str(),
        queue.queue.as_str(),
        &format!("debounce:{key}"),
    )
}

/// What a batch's debounce keys write after its insert, per job: the key of
/// a new job that opens a window, the last payload of one that collapsed
/// enqueues.
#[derive(Default)]
pub(super) struct Debounced<'a> {
    jobs: BTreeMap<Uuid, (Option<&'a str>, Option<&'a str>)>,
}

impl<'a> Debounced<'a> {
    /// A new job of the batch opens its key's window.
    pub(super) fn opens(&mut self, id: Uuid, key: &'a str) {
        self.jobs.entry(id).or_default().0 = Some(key);
    }

    /// A later enqueue's payload replaces the waiting job's.
    pub(super) fn replaces(&mut self, id: Uuid, payload: &'a str) {
        self.jobs.entry(id).or_default().1 = Some(payload);
    }

    pub(super) async fn apply(&self, tx: &impl GenericClient, now: Timestamp) -> Result<(), Error> {
        if self.jobs.is_empty() {
            return Ok(());
        }
        let stmt = tx
            .prepare_cached(include_str!("../../queries/jobs/debounce_apply.sql"))
            .await
            .map_err(db)?;
        let ids: Vec<Uuid> = self.jobs.keys().copied().collect();
        let keys: Vec<Option<&str>> = self.jobs.values().map(|v| v.0).collect();
        let payloads: Vec<Option<&str>> = self.jobs.values().map(|v| v.1).collect();
        tx.execute(&stmt, &[&ids, &keys, &payloads, &now.as_millis()])
            .await
            .map_err(db)?;
        Ok(())
    }
}

impl PostgresStore {
    /// The job of `key` still in its window, locked; the caller holds the
    /// key's lock ([`debounce_lock`]).
    pub(super) async fn debounce_match(
        tx: &impl GenericClient,
        queue: &QueueRef,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<JobId>, Error> {
        let stmt = tx
            .prepare_cached(include_str!("../../queries/jobs/debounce_match.sql"))
            .await
            .map_err(db)?;
        let row = tx
            .query_opt(
                &stmt,
                &[
                    &queue.namespace.as_str(),
                    &queue.queue.as_str(),
                    &key,
                    &now.as_millis(),
                ],
            )
            .await
            .map_err(db)?;
        Ok(row.map(|r| job_id(r.get(0))))
    }
}
