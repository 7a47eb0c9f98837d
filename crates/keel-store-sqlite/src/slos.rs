//! SLO minutes on SQLite: a row per subject (queue or topic) and minute.
//! The writer adds a tally to its row (reading the histogram back to add to
//! it: the writer is the only one, so nothing comes between); sums run on
//! readers.

use async_trait::async_trait;
use keel_core::slo::{BUCKETS, Counts, Histogram, Kind, Slo, Subject, WINDOWS};
use keel_core::{Error, Namespace, QueuePolicy};
use keel_store::{MinuteTally, Objectives, SloStore};
use rusqlite::{Connection, OptionalExtension, params};

use crate::SqliteStore;
use crate::rows::{corrupt, from_json};
use crate::writer::Writer;

#[async_trait]
impl SloStore for SqliteStore {
    async fn slo_objectives(&self) -> Result<Vec<Objectives>, Error> {
        self.read(|conn| {
            let mut found = Vec::new();
            let queues = "SELECT namespace, queue, policy FROM queues \
                          WHERE json_extract(policy, '$.slo') IS NOT NULL ORDER BY namespace, queue";
            for (namespace, name, policy) in rows(conn, queues)? {
                if let Some(slo) = from_json::<QueuePolicy>(&policy)?.slo {
                    found.push(objectives(&namespace, Kind::Queue, name, slo)?);
                }
            }
            let topics = "SELECT namespace, name, slo FROM topics \
                          WHERE slo IS NOT NULL ORDER BY namespace, name";
            for (namespace, name, slo) in rows(conn, topics)? {
                found.push(objectives(&namespace, Kind::Topic, name, from_json(&slo)?)?);
            }
            Ok(Ok(found))
        })
        .await
    }

    async fn slo_record(&self, tallies: Vec<MinuteTally>) -> Result<(), Error> {
        self.write(move |w: &mut Writer| {
            for t in tallies {
                let s = &t.subject;
                let key = params![s.namespace.as_str(), s.kind.as_str(), s.name, t.minute];
                let stored: Option<String> = w
                    .conn
                    .prepare_cached(
                        "SELECT histogram FROM slo_minutes \
                         WHERE namespace = ?1 AND kind = ?2 AND name = ?3 AND minute = ?4",
                    )?
                    .query_row(key, |r| r.get(0))
                    .optional()?;
                let mut waits = t.tally.waits;
                if let Some(stored) = stored {
                    waits.add(&Histogram(from_json::<[u64; BUCKETS]>(&stored)?));
                }
                let c = t.tally.counts;
                w.conn
                    .prepare_cached(
                        "INSERT INTO slo_minutes (namespace, kind, name, minute, \
                         waits, slow, succeeded, failed, histogram) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                         ON CONFLICT (namespace, kind, name, minute) DO UPDATE SET \
                         waits = waits + excluded.waits, slow = slow + excluded.slow, \
                         succeeded = succeeded + excluded.succeeded, \
                         failed = failed + excluded.failed, histogram = excluded.histogram",
                    )?
                    .execute(params![
                        s.namespace.as_str(),
                        s.kind.as_str(),
                        s.name,
                        t.minute,
                        c.waits as i64,
                        c.slow as i64,
                        c.succeeded as i64,
                        c.failed as i64,
                        crate::rows::to_json("slo waits", &waits.0)?,
                    ])?;
            }
            Ok(Ok(()))
        })
        .await
    }

    async fn slo_sums(
        &self,
        subject: &Subject,
        since: [i64; WINDOWS.len()],
    ) -> Result<[Counts; WINDOWS.len()], Error> {
        let s = subject.clone();
        self.read(move |conn| {
            let first = since.iter().min().copied().unwrap_or(i64::MIN);
            let mut sums = [Counts::default(); WINDOWS.len()];
            let mut stmt = conn.prepare_cached(
                "SELECT minute, waits, slow, succeeded, failed FROM slo_minutes \
                 WHERE namespace = ?1 AND kind = ?2 AND name = ?3 AND minute >= ?4",
            )?;
            let mut rows = stmt.query(params![
                s.namespace.as_str(),
                s.kind.as_str(),
                s.name,
                first
            ])?;
            while let Some(row) = rows.next()? {
                let minute: i64 = row.get(0)?;
                let n = |i: usize| -> rusqlite::Result<u64> { Ok(row.get::<_, i64>(i)? as u64) };
                let counts = Counts {
                    waits: n(1)?,
                    slow: n(2)?,
                    succeeded: n(3)?,
                    failed: n(4)?,
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

    async fn slo_waits(&self, subject: &Subject, since: i64) -> Result<Histogram, Error> {
        let s = subject.clone();
        self.read(move |conn| {
            let mut sum = Histogram::default();
            let mut stmt = conn.prepare_cached(
                "SELECT histogram FROM slo_minutes \
                 WHERE namespace = ?1 AND kind = ?2 AND name = ?3 AND minute >= ?4",
            )?;
            let mut rows = stmt.query(params![
                s.namespace.as_str(),
                s.kind.as_str(),
                s.name,
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

/// The three text columns of each row of `sql`.
fn rows(conn: &Connection, sql: &str) -> rusqlite::Result<Vec<(String, String, String)>> {
    conn.prepare_cached(sql)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect()
}

fn objectives(namespace: &str, kind: Kind, name: String, slo: Slo) -> rusqlite::Result<Objectives> {
    Ok(Objectives {
        subject: Subject {
            namespace: Namespace::new(namespace).map_err(|e| corrupt(e.message))?,
            kind,
            name,
        },
        slo,
    })
}
