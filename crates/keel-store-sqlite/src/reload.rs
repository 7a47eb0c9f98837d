//! Loading the hot index from the `jobs` and `queues` tables: at open, and
//! after a rolled-back transaction, when disk is the truth again.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};

use keel_core::{JobLifecycle, JobState, QueuePolicy, QueueRef, Timestamp};

use crate::hot::{Hot, JobKeys, LiveJob};
use crate::owner::owner_from_sql;
use crate::rows::{blob_id, from_json, job_state};
use crate::writer::{Writer, queue_ref};

impl Writer {
    /// Loads the hot index from disk: every unfinished job, every queue's policy
    /// and the counts of finished jobs.
    pub(crate) fn rebuild(&mut self) -> rusqlite::Result<()> {
        let mut hot = Hot::default();
        let mut policies = HashMap::new();
        let mut stmt = self
            .conn
            .prepare("SELECT namespace, queue, policy, paused FROM queues")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let queue = queue_ref(&row.get::<_, String>(0)?, &row.get::<_, String>(1)?)?;
            let policy: QueuePolicy = from_json(&row.get::<_, String>(2)?)?;
            let idx = hot.queue_entry(&queue);
            hot.set_policy(idx, policy.clone());
            hot.queues[idx].paused = row.get(3)?;
            // What was leased just before the restart is not on disk.
            hot.queues[idx].rate_tat_us = None;
            if let Some(flow) = &mut hot.queues[idx].flow {
                flow.forget_rates();
            }
            policies.insert(queue, policy);
        }
        drop(rows);
        drop(stmt);

        let mut stmt = self.conn.prepare(
            "SELECT namespace, queue, state, count(*) FROM jobs \
             WHERE finished_at IS NOT NULL GROUP BY namespace, queue, state",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (queue, state) = queue_and_state(row, 0)?;
            let idx = hot.queue_entry(&queue);
            hot.count_finished(idx, state, row.get(3)?);
        }
        drop(rows);
        drop(stmt);

        let mut stmt = self.conn.prepare(
            "SELECT seq, id, namespace, queue, state, priority, attempt, max_attempts, run_at, \
             lease_seq, lease_expires_at, lease_ms, backoff, ordering_key, owner, flow_key \
             FROM jobs WHERE finished_at IS NULL ORDER BY seq",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (queue, state) = queue_and_state(row, 2)?;
            let queue = hot.queue_entry(&queue);
            let job = LiveJob {
                seq: row.get(0)?,
                queue: queue as u32,
                life: JobLifecycle {
                    state,
                    attempt: row.get(6)?,
                    max_attempts: row.get(7)?,
                    run_at: Timestamp::from_millis(row.get(8)?),
                    lease_seq: row.get::<_, i64>(9)? as u64,
                    lease_expires_at: row.get::<_, Option<i64>>(10)?.map(Timestamp::from_millis),
                },
                priority: row.get(5)?,
                lease_ms: row.get::<_, i64>(11)? as u32,
                backoff: hot.intern_backoff(from_json(&row.get::<_, String>(12)?)?),
                keys: JobKeys::boxed(
                    row.get::<_, Option<String>>(13)?.map(Arc::from),
                    row.get::<_, Option<String>>(15)?.map(Arc::from),
                    owner_from_sql(row.get(14)?)?.map(|o| *o),
                ),
            };
            hot.insert(blob_id(&row.get::<_, Vec<u8>>(1)?)?, job);
        }
        drop(rows);
        drop(stmt);
        hot.take_woken();
        // After a rollback, what the index knew of commits still unsynced
        // stays true of them (at open, `Writer::open` starts it afresh).
        hot.unsynced = std::mem::take(&mut self.hot.unsynced);
        hot.unsynced.rolled_back();
        self.hot = hot;
        *self
            .policies
            .write()
            .unwrap_or_else(PoisonError::into_inner) = policies;
        Ok(())
    }
}

/// Reads `namespace, queue, state` from three columns starting at `first`.
fn queue_and_state(
    row: &rusqlite::Row<'_>,
    first: usize,
) -> rusqlite::Result<(QueueRef, JobState)> {
    let (namespace, queue, state): (String, String, String) =
        (row.get(first)?, row.get(first + 1)?, row.get(first + 2)?);
    Ok((queue_ref(&namespace, &queue)?, job_state(&state)?))
}
