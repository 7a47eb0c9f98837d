//! Owned jobs on the embedded store: the owner is a column of `jobs` (its
//! [`JobOwner::encode`] form) and a field of the job's hot entry, so every way
//! a job ends can report it without a read.

use std::collections::HashMap;

use keel_core::{Namespace, Timestamp};
use keel_store::{JobOwner, OwnedJob};
use rusqlite::Connection;

use crate::rows::corrupt;
use crate::writer::{Applied, Writer};

/// A stored owner back to its type; a value that does not parse is a corrupt
/// row, and an error, never "no owner".
pub(crate) fn owner_from_sql(text: Option<String>) -> rusqlite::Result<Option<Box<JobOwner>>> {
    text.map(|text| {
        JobOwner::decode(&text)
            .map(Box::new)
            .map_err(|e| corrupt(e.message))
    })
    .transpose()
}

impl Writer {
    /// An owner's write (`write`) and the jobs it creates, in one transaction:
    /// `write` answers its value and whether the jobs are to be created (not
    /// when the write was refused, or found an earlier owner under the same
    /// key). Refusals come before anything is written: a write
    /// cannot be taken back without failing the whole group commit.
    pub(crate) fn write_owned<T>(
        &mut self,
        jobs: Vec<OwnedJob>,
        now: Timestamp,
        write: impl FnOnce(&Connection) -> Applied<(T, bool)>,
    ) -> Applied<T> {
        let mut adding: HashMap<&Namespace, u64> = HashMap::new();
        for job in &jobs {
            *adding.entry(&job.queue.namespace).or_default() += 1;
        }
        for (namespace, n) in adding {
            if let Err(e) = self.room(namespace, n) {
                return Ok(Err(e));
            }
        }
        let (value, start) = match write(&self.conn)? {
            Ok(written) => written,
            Err(e) => return Ok(Err(e)),
        };
        if start {
            for OwnedJob {
                queue,
                id,
                job,
                owner,
            } in jobs
            {
                let queue_idx = self.hot.queue_entry(&queue);
                self.insert_job(&queue, queue_idx, id, job, owner, now)?;
            }
        }
        Ok(Ok(value))
    }
}
