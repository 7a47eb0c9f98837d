//! Keyed leasing on PostgreSQL: for a queue with a `key`, the leaser holds
//! the queue's row (so the keys' bounds and virtual times are read and
//! written by one leaser at a time, on every node), finds the keys with
//! ready jobs and their state (`flow_lanes.sql`), shares the lease between
//! them in `keel_core`'s fair share within each key's bound and rate, and
//! leases each key's part storing the keys' new virtual times and rate
//! states in the same statement (`lease_keyed.sql`).

use deadpool_postgres::GenericClient;
use keel_core::flow::fair::{Lane, share};
use keel_core::{Error, QueuePolicy, Timestamp};
use keel_store::LeaseRequest;
use tokio_postgres::Row;

use crate::{PostgresStore, db};

impl PostgresStore {
    /// Leases up to `room` jobs of a keyed queue; `clock` is the queue's
    /// fair-share clock, read under its row lock. Also answers when the
    /// earliest key held by its rate gets its next slot.
    pub(super) async fn lease_keyed(
        tx: &impl GenericClient,
        req: &LeaseRequest,
        policy: &QueuePolicy,
        clock: i64,
        room: i64,
        now: Timestamp,
    ) -> Result<(Vec<Row>, Option<Timestamp>), Error> {
        let (namespace, queue) = (req.queue.namespace.as_str(), req.queue.queue.as_str());
        let stmt = tx
            .prepare_cached(include_str!("../../queries/jobs/flow_lanes.sql"))
            .await
            .map_err(db)?;
        let want = u32::try_from(room).unwrap_or(u32::MAX);
        let mut keys = Vec::new();
        let mut lanes = Vec::new();
        let mut tats = Vec::new();
        for row in tx
            .query(
                &stmt,
                &[
                    &namespace,
                    &queue,
                    &room,
                    &policy.max_key_concurrency.is_some(),
                ],
            )
            .await
            .map_err(db)?
        {
            let key: String = row.get(0);
            let leased: i64 = row.get(2);
            let ready: i64 = row.get(3);
            let tat: i64 = row.get(4);
            let bound = policy
                .max_key_concurrency
                .map_or(i64::MAX, |max| i64::from(max) - leased);
            let slots = policy.key_rate_limit.map_or(i64::MAX, |rate| {
                i64::from(rate.allowed(tat, now, want).granted)
            });
            lanes.push(Lane {
                vtime: row.get(1),
                weight: policy.fairness.as_ref().map_or(1, |f| f.weight(&key)),
                available: u32::try_from(ready.min(bound).min(slots).max(0)).unwrap_or(0),
            });
            keys.push((key, ready.min(bound)));
            tats.push(tat);
        }
        let mut clock = clock;
        let taken = share(&mut lanes, &mut clock, want);
        let mut served: (Vec<&str>, Vec<i64>, Vec<i64>, Vec<i64>) = Default::default();
        let mut next_slot: Option<Timestamp> = None;
        for (((key, leasable), lane), (n, tat)) in
            keys.iter().zip(&lanes).zip(taken.into_iter().zip(tats))
        {
            let tat = match policy.key_rate_limit {
                Some(rate) => {
                    let tat = rate.after(tat, now, n);
                    if i64::from(n) < *leasable
                        && let Some(at) = rate.allowed(tat, now, 1).next_at
                    {
                        next_slot = Some(next_slot.map_or(at, |t| t.min(at)));
                    }
                    tat
                }
                None => tat,
            };
            if n > 0 {
                served.0.push(key);
                served.1.push(i64::from(n));
                served.2.push(lane.vtime);
                served.3.push(tat);
            }
        }
        if served.0.is_empty() {
            return Ok((Vec::new(), next_slot));
        }
        let stmt = tx
            .prepare_cached(include_str!("../../queries/jobs/lease_keyed.sql"))
            .await
            .map_err(db)?;
        let lease_ms = req.lease_ms.map(|ms| ms as i64);
        let rows = tx
            .query(
                &stmt,
                &[
                    &namespace,
                    &queue,
                    &served.0,
                    &served.1,
                    &now.as_millis(),
                    &lease_ms,
                    &req.worker_id,
                    &served.2,
                    &served.3,
                    &clock,
                ],
            )
            .await
            .map_err(db)?;
        Ok((rows, next_slot))
    }
}
