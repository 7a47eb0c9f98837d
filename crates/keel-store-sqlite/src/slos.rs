//! SLO minutes on SQLite: a row per queue and minute. The writer adds a
//! tally to its row (reading the histogram back to add to it: the writer
//! is the only one, so nothing comes between); sums run on readers.

use async_trait::async_trait;
use keel_core::slo::{BUCKETS, Counts, Histogram, WINDOWS};
use keel_core::{Error, Namespace, QueueName, QueuePolicy, QueueRef};
use keel_store::{MinuteTally, Objectives, SloStore};
use rusqlite::{OptionalExtension, params};

use crate::SqliteStore;
use crate::rows::{corrupt, from_json};
use crate::writer::Writer;

#[async_trait]
impl SloStore for SqliteStore {
    async fn slo_objectives(&self) -> Result<Vec<Objectives>, Error> {
        self.read(|conn| {
            let mut found = Vec::new();
            let mut stmt = conn.prepare_cached(
                "SELECT namespace, queue, policy FROM queues \
                 WHERE json_extract(policy, '$.slo') IS NOT NULL ORDER BY namespace, queue",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let policy: QueuePolicy = from_json(&row.get::<_, String>(2)?)?;
                let queue = QueueRef {
                    namespace: Namespace::new(&row.get::<_, String>(0)?)
                        .map_err(|e| corrupt(e.message))?,
                    queue: QueueName::new(&row.get::<_, String>(1)?)
                        .map_err(|e| corrupt(e.message))?,
                };
                if let Some(slo) = policy.slo {
                    found.push(Objectives { queue, slo });
                }
            }
            Ok(Ok(found))
        })
        .await
    }

    async fn slo_record(&self, tallies: Vec<MinuteTally>) -> Result<(), Error> {
        self.write(move |w: &mut Writer| {
            for t in tallies {
                let (ns, queue) = (t.queue.namespace.as_str(), t.queue.queue.as_str());
                let stored: Option<String> = w
                    .conn
                    .prepare_cached(
                        "SELECT histogram FROM slo_minutes \
                         WHERE namespace = ?1 AND queue = ?2 AND minute = ?3",
                    )?
                    .query_row(params![ns, queue, t.minute], |r| r.get(0))
                    .optional()?;
                let mut waits = t.tally.waits;
                if let Some(stored) = stored {
                    waits.add(&Histogram(from_json::<[u64; BUCKETS]>(&stored)?));
                }
                let c = t.tally.counts;
                w.conn
                    .prepare_cached(
                        "INSERT INTO slo_minutes \
                         (namespace, queue, minute, waits, slow, succeeded, dead, histogram) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                         ON CONFLICT (namespace, queue, minute) DO UPDATE SET \
                         waits = waits + excluded.waits, slow = slow + excluded.slow, \
                         succeeded = succeeded + excluded.succeeded, dead = dead + excluded.dead, \
                         histogram = excluded.histogram",
                    )?
                    .execute(params![
                        ns,
                        queue,
                        t.minute,
                        c.waits as i64,
                        c.slow as i64,
                        c.succeeded as i64,
                        c.dead as i64,
                        serde_json::to_string(&waits.0).unwrap_or_default(),
                    ])?;
            }
            Ok(Ok(()))
        })
        .await
    }

    async fn slo_sums(
        &self,
        queue: &QueueRef,
        since: [i64; WINDOWS.len()],
    ) -> Result<[Counts; WINDOWS.len()], Error> {
        let queue = queue.clone();
        self.read(move |conn| {
            let first = since.iter().min().copied().unwrap_or(i64::MIN);
            let mut sums = [Counts::default(); WINDOWS.len()];
            let mut stmt = conn.prepare_cached(
                "SELECT minute, waits, slow, succeeded, dead FROM slo_minutes \
                 WHERE namespace = ?1 AND queue = ?2 AND minute >= ?3",
            )?;
            let mut rows = stmt.query(params![
                queue.namespace.as_str(),
                queue.queue.as_str(),
                first
            ])?;
            while let Some(row) = rows.next()? {
                let minute: i64 = row.get(0)?;
                let n = |i: usize| -> rusqlite::Result<u64> { Ok(row.get::<_, i64>(i)? as u64) };
                let counts = Counts {
                    waits: n(1)?,
                    slow: n(2)?,
                    succeeded: n(3)?,
                    dead: n(4)?,
                };
                for (sum, &start) in sums.iter_mut().zip(&since) {
                    if minute >= start {
                        sum.add(&counts);
                    }
                }
            }
            Ok(Ok(sums))
        })
        .await
    }

    async fn slo_waits(&self, queue: &QueueRef, since: i64) -> Result<Histogram, Error> {
        let queue = queue.clone();
        self.read(move |conn| {
            let mut sum = Histogram::default();
            let mut stmt = conn.prepare_cached(
                "SELECT histogram FROM slo_minutes \
                 WHERE namespace = ?1 AND queue = ?2 AND minute >= ?3",
            )?;
            let mut rows = stmt.query(params![
                queue.namespace.as_str(),
                queue.queue.as_str(),
                since
            ])?;
            while let Some(row) = rows.next()? {
                sum.add(&Histogram(from_json(&row.get::<_, String>(0)?)?));
            }
            Ok(Ok(sum))
        })
        .await
    }

    async fn slo_prune(&self, before: i64) -> Result<u64, Error> {
        self.write(move |w: &mut Writer| {
            let n = w
                .conn
                .prepare_cached("DELETE FROM slo_minutes WHERE minute < ?1")?
                .execute([before])?;
            Ok(Ok(n as u64))
        })
        .await
    }
}
