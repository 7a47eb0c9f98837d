//! SLO minutes on PostgreSQL: a row per subject (queue or topic) and
//! minute that every node
//! adds its tallies to with an upsert (histograms added bucket by bucket).
//! A node writes its rows in key order, so two nodes adding to the same
//! minutes lock them in the same order and cannot deadlock. The sums over
//! the windows are one query.

use async_trait::async_trait;
use keel_core::slo::{BUCKETS, Counts, Histogram, Kind, Slo, Subject, WINDOWS};
use keel_core::{Error, Namespace, QueuePolicy};
use keel_store::{MinuteTally, Objectives, SloStore};

use crate::{PostgresStore, db};

#[async_trait]
impl SloStore for PostgresStore {
    async fn slo_objectives(&self) -> Result<Vec<Objectives>, Error> {
        let client = self.client().await?;
        let queues = client
            .query(include_str!("../queries/slos/queue_objectives.sql"), &[])
            .await
            .map_err(db)?;
        let topics = client
            .query(include_str!("../queries/slos/topic_objectives.sql"), &[])
            .await
            .map_err(db)?;
        let mut found = Vec::new();
        for row in queues {
            let policy: QueuePolicy = parse(row.get(2))?;
            if let Some(slo) = policy.slo {
                found.push(objectives(row.get(0), Kind::Queue, row.get(1), slo)?);
            }
        }
        for row in topics {
            found.push(objectives(
                row.get(0),
                Kind::Topic,
                row.get(1),
                parse(row.get(2))?,
            )?);
        }
        Ok(found)
    }

    async fn slo_record(&self, mut tallies: Vec<MinuteTally>) -> Result<(), Error> {
        tallies.sort_by(|a, b| (&a.subject, a.minute).cmp(&(&b.subject, b.minute)));
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let upsert = tx
            .prepare(include_str!("../queries/slos/minute_add.sql"))
            .await
            .map_err(db)?;
        for t in &tallies {
            let c = t.tally.counts;
            let histogram: Vec<i64> = t.tally.waits.0.iter().map(|&n| n as i64).collect();
            tx.execute(
                &upsert,
                &[
                    &t.subject.namespace.as_str(),
                    &t.subject.kind.as_str(),
                    &t.subject.name,
                    &t.minute,
                    &(c.waits as i64),
                    &(c.slow as i64),
                    &(c.succeeded as i64),
                    &(c.failed as i64),
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
        subject: &Subject,
        since: [i64; WINDOWS.len()],
    ) -> Result<[Counts; WINDOWS.len()], Error> {
        let rows = self
            .client()
            .await?
            .query(
                include_str!("../queries/slos/sums.sql"),
                &[
                    &subject.namespace.as_str(),
                    &subject.kind.as_str(),
                    &subject.name,
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
                failed: n(4),
            };
        }
        Ok(sums)
    }

    async fn slo_waits(&self, subject: &Subject, since: i64) -> Result<Histogram, Error> {
        let rows = self
            .client()
            .await?
            .query(
                include_str!("../queries/slos/waits.sql"),
                &[
                    &subject.namespace.as_str(),
                    &subject.kind.as_str(),
                    &subject.name,
                    &since,
                ],
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
            .execute(include_str!("../queries/slos/prune.sql"), &[&before])
            .await
            .map_err(db)
    }
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Error> {
    keel_store::codec::decode("stored objectives", text)
}

fn objectives(namespace: &str, kind: Kind, name: String, slo: Slo) -> Result<Objectives, Error> {
    Ok(Objectives {
        subject: Subject {
            namespace: Namespace::new(namespace)?,
            kind,
            name,
        },
        slo,
    })
}
