//! Leasing on the embedded store: pops ready jobs from the hot index (never
//! a SQL scan) within the queue's bounds — its pause switch, its
//! `max_concurrency` and its `rate_limit` (the GCRA's state lives in the
//! hot index), and for a keyed queue in fair share between its keys within
//! `max_key_concurrency` and `key_rate_limit` (`flow.rs`) — and updates
//! each job's row by its rowid.

use keel_core::{JobId, JobState, LeaseToken, Timestamp};
use keel_store::{LeaseRequest, LeasedJob};
use rusqlite::params;

use crate::rows::{raw_json, tags_from_sql, trace_from_sql};
use crate::unsynced::Readiness;
use crate::writer::{Applied, Writer, index_out_of_step};

impl Writer {
    /// Leases up to `req.max_jobs` jobs. The answer does not wait for its
    /// own commit: it leaves as soon as what made its jobs leasable is
    /// durable (`writer::write_releasing`). That may be a commit of the open
    /// transaction: a job completed there may be the one its key or its
    /// workflow waited for, and a crash would undo that.
    pub(crate) fn lease(
        &mut self,
        req: &LeaseRequest,
        now: Timestamp,
    ) -> Applied<(Vec<LeasedJob>, Readiness)> {
        let none = (Vec::new(), Readiness::Durable);
        let Some(queue_idx) = self.hot.queue_idx(&req.queue) else {
            return Ok(Ok(none));
        };
        let queue = &self.hot.queues[queue_idx];
        if queue.paused {
            return Ok(Ok(none));
        }
        let mut room = req.max_jobs as u64;
        if let Some(max) = queue.policy.max_concurrency {
            room = room.min(u64::from(max).saturating_sub(queue.count(JobState::Leased)));
        }
        let rate = queue.policy.rate_limit;
        let tat = rate.map(|rate| queue.rate_tat_us.unwrap_or_else(|| rate.spent(now)));
        if let (Some(rate), Some(tat)) = (rate, tat) {
            let take = rate.allowed(tat, now, u32::try_from(room).unwrap_or(u32::MAX));
            room = u64::from(take.granted);
            if let Some(at) = take.next_at.filter(|_| !queue.ready.is_empty()) {
                self.signal.rate_limited(&req.queue, at);
            }
        }
        let queue = &mut self.hot.queues[queue_idx];
        let room = u32::try_from(room).unwrap_or(u32::MAX);
        let picked: Vec<JobId> = match &mut queue.flow {
            Some(flow) => {
                let picked = flow.pick(room, queue.policy.fairness.as_ref(), now);
                if let Some(at) = flow.next_slot() {
                    self.signal.rate_limited(&req.queue, at);
                }
                picked
            }
            None => queue
                .ready
                .iter()
                .take(room as usize)
                .map(|&(.., id)| id)
                .collect(),
        };
        self.hot.unsynced.synced(self.durable_commit());
        let readiness = picked
            .iter()
            .map(|id| self.hot.readiness(id))
            .max()
            .unwrap_or(Readiness::Durable);
        let mut leased = Vec::new();
        for id in picked {
            let lease_seq = self.lease_numbers.next();
            let granted = self.hot.update(id, |job| {
                let lease_ms = req.lease_ms.unwrap_or(u64::from(job.lease_ms));
                let run_at = job.life.run_at;
                job.life.lease_as(now, lease_ms, lease_seq).map(|grant| {
                    (
                        grant,
                        job.seq,
                        job.life.attempt,
                        job.life.max_attempts,
                        job.priority,
                        run_at,
                        job.ordering_key().cloned(),
                    )
                })
            });
            let Some(Ok((grant, seq, attempt, max_attempts, priority, run_at, ordering_key))) =
                granted
            else {
                return Err(index_out_of_step());
            };
            let (payload, tags, created_at, traceparent): (String, Option<String>, i64, Option<String>) = self
                .conn
                .prepare_cached(
                    "UPDATE jobs SET state = 'leased', attempt = ?1, lease_seq = ?2, lease_expires_at = ?3, \
                     worker_id = ?4, updated_at = ?5 WHERE seq = ?6 RETURNING payload, tags, created_at, traceparent",
                )?
                .query_row(
                    params![attempt, grant.lease_seq as i64, grant.expires_at.as_millis(), req.worker_id, now.as_millis(), seq],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )?;
            leased.push(LeasedJob {
                id,
                queue: req.queue.queue.to_string(),
                payload: raw_json(payload)?,
                attempt,
                max_attempts,
                lease_token: LeaseToken {
                    job: id,
                    lease_seq: grant.lease_seq,
                },
                lease_expires_at: grant.expires_at,
                priority,
                tags: tags_from_sql(tags)?,
                ordering_key: ordering_key.map(|k| k.to_string()),
                created_at: Timestamp::from_millis(created_at),
                run_at,
                traceparent: trace_from_sql(traceparent),
            });
        }
        if let (Some(rate), Some(tat)) = (rate, tat) {
            let n = u32::try_from(leased.len()).unwrap_or(u32::MAX);
            self.hot.queues[queue_idx].rate_tat_us = Some(rate.after(tat, now, n));
        }
        // Before the commit, since the answer may leave before it: a lease
        // that runs out before maintenance's next wake-up brings it forward.
        if let Some(first) = leased.iter().map(|job| job.lease_expires_at).min() {
            self.signal.deadline(first);
        }
        Ok(Ok((leased, readiness)))
    }
}
