//! SLO minutes on PostgreSQL: a row per queue and minute that every node
//! adds its tallies to with an upsert (histograms added bucket by bucket).
//! A node writes its rows in key order, so two nodes adding to the same
//! minutes lock them in the same order and cannot deadlock. The sums over
//! the windows are one query.

use async_trait::async_trait;
use keel_core::slo::{BUCKETS, Counts, Histogram, WINDOWS};
use keel_core::{Error, Namespace, QueueName, QueuePolicy, QueueRef};
use keel_store::{MinuteTally, Objectives, SloStore};

use crate::{PostgresStore, db};

#[async_trait]
impl SloStore for PostgresStore {
    async fn slo_objectives(&self) -> Result<Vec<Objectives>, Error> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT namespace, queue, policy::text FROM keel_queues \
                 WHERE policy ? 'slo' ORDER BY namespace, queue",
                &[],
            )
            .await
            .map_err(db)?;
        let mut found = Vec::new();
        for row in rows {
            let policy: QueuePolicy = serde_json::from_str(row.get(2))
                .map_err(|e| Error::internal(format!("a stored queue policy: {e}")))?;
            let queue = QueueRef {
                namespace: Namespace::new(row.get::<_, &str>(0))?,
                queue: QueueName::new(row.get::<_, &str>(1))?,
            };
            if let Some(slo) = policy.slo {
                found.push(Objectives { queue, slo });
            }
        }
        Ok(found)
    }

    async fn slo_record(&self, mut tallies: Vec<MinuteTally>) -> Result<(), Error> {
        tallies.sort_by(|a, b| (&a.queue, a.minute).cmp(&(&b.queue, b.minute)));
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let upsert = tx
            .prepare(
                "INSERT INTO keel_slo_minutes \
                 (namespace, queue, minute, waits, slow, succeeded, dead, histogram) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (namespace, queue, minute) DO UPDATE SET \
                 waits = keel_slo_minutes.waits + excluded.waits, \
                 slow = keel_slo_minutes.slow + excluded.slow, \
                 succeeded = keel_slo_minutes.succeeded + excluded.succeeded, \
                 dead = keel_slo_minutes.dead + excluded.dead, \
                 histogram = ARRAY(SELECT a + b FROM unnest(keel_slo_minutes.histogram, \
                 excluded.histogram) WITH ORDINALITY AS t(a, b, i) ORDER BY i)",
            )
            .await
            .map_err(db)?;
        for t in &tallies {
            let c = t.tally.counts;
            let histogram: Vec<i64> = t.tally.waits.0.iter().map(|&n| n as i64).collect();
            tx.execute(
                &upsert,
                &[
                    &t.queue.namespace.as_str(),
                    &t.queue.queue.as_str(),
                    &t.minute,
                    &(c.waits as i64),
                    &(c.slow as i64),
                    &(c.succeeded as i64),
                    &(c.dead as i64),
                    &histogram,
                ],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn slo_sums(
        &self,
        queue: &QueueRef,
        since: [i64; WINDOWS.len()],
    ) -> Result<[Counts; WINDOWS.len()], Error> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT w.i, coalesce(sum(m.waits), 0)::bigint, coalesce(sum(m.slow), 0)::bigint, \
                 coalesce(sum(m.succeeded), 0)::bigint, coalesce(sum(m.dead), 0)::bigint \
                 FROM unnest($3::bigint[]) WITH ORDINALITY AS w(start, i) \
                 LEFT JOIN keel_slo_minutes m \
                 ON m.namespace = $1 AND m.queue = $2 AND m.minute >= w.start \
                 GROUP BY w.i ORDER BY w.i",
                &[
                    &queue.namespace.as_str(),
                    &queue.queue.as_str(),
                    &since.to_vec(),
                ],
            )
            .await
            .map_err(db)?;
        let mut sums = [Counts::default(); WINDOWS.len()];
        for (sum, row) in sums.iter_mut().zip(&rows) {
            let n = |i: usize| row.get::<_, i64>(i) as u64;
            *sum = Counts {
                waits: n(1),
                slow: n(2),
                succeeded: n(3),
                dead: n(4),
            };
        }
        Ok(sums)
    }

    async fn slo_waits(&self, queue: &QueueRef, since: i64) -> Result<Histogram, Error> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT histogram FROM keel_slo_minutes \
                 WHERE namespace = $1 AND queue = $2 AND minute >= $3",
                &[&queue.namespace.as_str(), &queue.queue.as_str(), &since],
            )
            .await
            .map_err(db)?;
        let mut sum = Histogram::default();
        for row in rows {
            let stored: Vec<i64> = row.get(0);
            let mut buckets = [0u64; BUCKETS];
            for (b, n) in buckets.iter_mut().zip(stored) {
                *b = n as u64;
            }
            sum.add(&Histogram(buckets));
        }
        Ok(sum)
    }

    async fn slo_prune(&self, before: i64) -> Result<u64, Error> {
        self.client()
            .await?
            .execute("DELETE FROM keel_slo_minutes WHERE minute < $1", &[&before])
            .await
            .map_err(db)
    }
}
