//! Leasing on PostgreSQL: a plain queue's jobs in one statement
//! (`lease.sql`); a bounded or keyed queue's under its row lock, taken by
//! its leasers on every node in turn, where the concurrency count, the
//! rate's state and the fair share's clock are read and written
//! (`flow.rs` shares a keyed queue's lease between its keys).

use deadpool_postgres::GenericClient;
use keel_core::{Error, LeaseToken, QueuePolicy, Timestamp, TraceParent};
use keel_store::{LeaseRequest, LeasedJob};

use super::rows::{from_json, raw, tags_from};
use crate::{PostgresStore, db, job_id};

impl PostgresStore {
    pub(super) async fn lease(
        &self,
        req: &LeaseRequest,
        now: Timestamp,
    ) -> Result<Vec<LeasedJob>, Error> {
        let (namespace, queue) = (req.queue.namespace.as_str(), req.queue.queue.as_str());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let settings = tx
            .query_opt(
                "SELECT paused, policy::text FROM keel_queues WHERE namespace = $1 AND queue = $2",
                &[&namespace, &queue],
            )
            .await
            .map_err(db)?;
        let mut room = i64::from(req.max_jobs);
        let mut rated = None;
        let mut keyed = None;
        if let Some(row) = settings {
            if row.get::<_, bool>(0) {
                return Ok(Vec::new());
            }
            let policy: QueuePolicy = from_json(row.get(1))?;
            if policy.max_concurrency.is_some()
                || policy.rate_limit.is_some()
                || policy.key.is_some()
            {
                // Leasers of a bounded or keyed queue take turns on its row,
                // on every node, and read the rate's and the fair share's
                // state under the lock.
                let row = tx
                    .query_one(
                        "SELECT rate_tat, fair_clock FROM keel_queues WHERE namespace = $1 AND queue = $2 FOR UPDATE",
                        &[&namespace, &queue],
                    )
                    .await
                    .map_err(db)?;
                let tat: i64 = row.get(0);
                if let Some(max) = policy.max_concurrency {
                    // A statement of its own: its snapshot comes after the lock.
                    let leased: i64 = tx
                        .query_one("SELECT count(*) FROM keel_jobs WHERE namespace = $1 AND queue = $2 AND state = 'leased'", &[&namespace, &queue])
                        .await
                        .map_err(db)?
                        .get(0);
                    room = room.min(i64::from(max) - leased).max(0);
                }
                if let Some(rate) = policy.rate_limit {
                    let take = rate.allowed(tat, now, u32::try_from(room).unwrap_or(u32::MAX));
                    room = i64::from(take.granted);
                    if let Some(at) = take.next_at {
                        self.signal.rate_limited(&req.queue, at);
                    }
                    rated = Some((rate, tat));
                }
                if policy.key.is_some() {
                    keyed = Some((policy, row.get::<_, i64>(1)));
                }
            }
        }
        if room == 0 {
            return Ok(Vec::new());
        }
        let rows = match &keyed {
            Some((policy, clock)) => {
                let (rows, next_slot) =
                    Self::lease_keyed(&tx, req, policy, *clock, room, now).await?;
                if let Some(at) = next_slot {
                    self.signal.rate_limited(&req.queue, at);
                }
                rows
            }
            None => {
                let stmt = tx
                    .prepare_cached(include_str!("../../queries/jobs/lease.sql"))
                    .await
                    .map_err(db)?;
                let lease_ms = req.lease_ms.map(|ms| ms as i64);
                tx.query(
                    &stmt,
                    &[
                        &namespace,
                        &queue,
                        &room,
                        &now.as_millis(),
                        &lease_ms,
                        &req.worker_id,
                    ],
                )
                .await
                .map_err(db)?
            }
        };
        if let Some((rate, tat)) = rated {
            let n = u32::try_from(rows.len()).unwrap_or(u32::MAX);
            tx.execute(
                "UPDATE keel_queues SET rate_tat = $3 WHERE namespace = $1 AND queue = $2",
                &[&namespace, &queue, &rate.after(tat, now, n)],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        self.deadline(
            rows.iter()
                .map(|row| Timestamp::from_millis(row.get(5)))
                .min(),
            now,
        );
        let mut leased: Vec<(i64, LeasedJob)> = rows
            .into_iter()
            .map(|row| {
                let id = job_id(row.get(0));
                Ok((
                    row.get::<_, i64>(11),
                    LeasedJob {
                        id,
                        queue: queue.to_owned(),
                        payload: raw(row.get(1))?,
                        attempt: row.get::<_, i32>(2) as u32,
                        max_attempts: row.get::<_, i32>(3) as u32,
                        lease_token: LeaseToken {
                            job: id,
                            lease_seq: row.get::<_, i64>(4) as u64,
                        },
                        lease_expires_at: Timestamp::from_millis(row.get(5)),
                        priority: row.get(6),
                        tags: tags_from(row.get(7))?,
                        ordering_key: row.get(8),
                        created_at: Timestamp::from_millis(row.get(9)),
                        run_at: Timestamp::from_millis(row.get(10)),
                        traceparent: row.get::<_, Option<&str>>(12).and_then(TraceParent::parse),
                    },
                ))
            })
            .collect::<Result<_, Error>>()?;
        leased.sort_by(|(a_seq, a), (b_seq, b)| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a_seq.cmp(b_seq))
        });
        Ok(leased.into_iter().map(|(_, job)| job).collect())
    }
}
