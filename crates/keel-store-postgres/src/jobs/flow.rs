//! Keyed leasing on PostgreSQL: for a queue with a `key`, the leaser holds
//! the queue's row (so the keys' bounds and virtual times are read and
//! written by one leaser at a time, on every node), finds the keys with
//! ready jobs and their state (`flow_lanes.sql`), shares the lease between
//! them in `keel_core`'s fair share, leases each key's part
//! (`lease_keyed.sql`) and stores the keys' new virtual times.

use deadpool_postgres::GenericClient;
use keel_core::flow::fair::{Lane, share};
use keel_core::{Error, QueuePolicy, Timestamp};
use keel_store::LeaseRequest;
use tokio_postgres::Row;

use crate::{PostgresStore, db};

impl PostgresStore {
    /// Leases up to `room` jobs of a keyed queue; `clock` is the queue's
    /// fair-share clock, read under its row lock.
    pub(super) async fn lease_keyed(
        tx: &impl GenericClient,
        req: &LeaseRequest,
        policy: &QueuePolicy,
        clock: i64,
        room: i64,
        now: Timestamp,
    ) -> Result<Vec<Row>, Error> {
        let (namespace, queue) = (req.queue.namespace.as_str(), req.queue.queue.as_str());
        let stmt = tx
            .prepare_cached(include_str!("../../queries/jobs/flow_lanes.sql"))
            .await
            .map_err(db)?;
        let mut keys = Vec::new();
        let mut lanes = Vec::new();
        for row in tx
            .query(&stmt, &[&namespace, &queue, &room])
            .await
            .map_err(db)?
        {
            let key: String = row.get(0);
            let leased: i64 = row.get(2);
            let ready: i64 = row.get(3);
            let bound = policy
                .max_key_concurrency
                .map_or(i64::MAX, |max| i64::from(max) - leased);
            lanes.push(Lane {
                vtime: row.get(1),
                weight: policy.fairness.as_ref().map_or(1, |f| f.weight(&key)),
                available: u32::try_from(ready.min(bound).max(0)).unwrap_or(0),
            });
            keys.push(key);
        }
        let mut clock = clock;
        let taken = share(
            &mut lanes,
            &mut clock,
            u32::try_from(room).unwrap_or(u32::MAX),
        );
        let mut served: (Vec<&str>, Vec<i64>, Vec<i64>) = Default::default();
        for ((key, lane), n) in keys.iter().zip(&lanes).zip(taken) {
            if n > 0 {
                served.0.push(key);
                served.1.push(i64::from(n));
                served.2.push(lane.vtime);
            }
        }
        if served.0.is_empty() {
            return Ok(Vec::new());
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
                ],
            )
            .await
            .map_err(db)?;
        let stmt = tx
            .prepare_cached(include_str!("../../queries/jobs/flow_share_taken.sql"))
            .await
            .map_err(db)?;
        tx.execute(&stmt, &[&namespace, &queue, &served.0, &served.2, &clock])
            .await
            .map_err(db)?;
        Ok(rows)
    }
}
