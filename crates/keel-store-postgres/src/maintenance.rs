//! Maintenance on PostgreSQL: one leader (a session advisory lock) promotes
//! due jobs and reclaims expired leases; an idle pass is one query.

use std::collections::BTreeMap;

use async_trait::async_trait;
use keel_core::{Error, Namespace, QueueName, QueueRef, Timestamp, Transition};
use keel_store::{Acked, MaintenanceReport, MaintenanceStore};
use tokio_postgres::NoTls;

use crate::keys::Freed;
use crate::{PostgresStore, db, job_id};

/// How many jobs one maintenance pass moves at most; the next pass follows.
const MAX_MAINTENANCE_MOVES: i64 = 10_000;

#[async_trait]
impl MaintenanceStore for PostgresStore {
    /// The leader holds a session advisory lock on a connection of its own.
    /// When the node dies, its connection and the lock go with it, and the
    /// next node to ask becomes the leader. Asking costs a query; leading
    /// costs none.
    async fn maintenance_leader(&self) -> Result<bool, Error> {
        let mut leader = self.leader.lock().await;
        if leader.as_ref().is_none_or(|(client, _)| client.is_closed()) {
            let (client, connection) = self.config.connect(NoTls).await.map_err(db)?;
            tokio::spawn(connection);
            *leader = Some((client, false));
        }
        let Some((client, holds)) = leader.as_mut() else {
            return Ok(false);
        };
        if !*holds {
            // One query per call while another node leads; none once leading.
            // NULL when the schema is gone from under the node: an error,
            // not a panic.
            *holds = client
                .query_one("SELECT pg_try_advisory_lock(hashtextextended('keel_maintenance.' || current_schema(), 0))", &[])
                .await
                .map_err(db)?
                .try_get(0)
                .map_err(db)?;
        }
        Ok(*holds)
    }

    async fn maintenance_run(&self, now: Timestamp) -> Result<MaintenanceReport, Error> {
        let mut report = MaintenanceReport::default();
        let mut client = self.client().await?;
        // The idle case costs one query: nothing is due, say when something will be.
        let next: Option<i64> = client
            .query_one(include_str!("../queries/maintenance/next_due.sql"), &[])
            .await
            .map_err(db)?
            .get(0);
        if next.is_none_or(|due| due > now.as_millis()) {
            report.next_due = next.map(Timestamp::from_millis);
            return Ok(report);
        }
        let tx = client.transaction().await.map_err(db)?;
        let promote = tx
            .prepare_cached(include_str!("../queries/maintenance/promote_due.sql"))
            .await
            .map_err(db)?;
        let mut woken: Vec<QueueRef> = Vec::new();
        let promoted = tx
            .query(&promote, &[&now.as_millis(), &MAX_MAINTENANCE_MOVES])
            .await
            .map_err(db)?;
        report.promoted = promoted.len() as u64;
        for row in &promoted {
            if let (Ok(namespace), Ok(queue)) =
                (Namespace::new(row.get(0)), QueueName::new(row.get(1)))
            {
                woken.push(QueueRef { namespace, queue });
            }
        }
        let expired_stmt = tx
            .prepare_cached(include_str!("../queries/maintenance/expired_leases.sql"))
            .await
            .map_err(db)?;
        let expired = tx
            .query(&expired_stmt, &[&now.as_millis(), &MAX_MAINTENANCE_MOVES])
            .await
            .map_err(db)?;
        let mut freed: Vec<Freed> = Vec::new();
        for row in &expired {
            let id = job_id(row.get(0));
            let namespace = Namespace::new(row.get(1))?;
            let Some(mut locked) = Self::lock_job(&tx, &namespace, id).await? else {
                continue;
            };
            let Some(transition) = locked.life.expire(now) else {
                continue;
            };
            Self::write_life(&tx, id, &locked.life, now, None).await?;
            Self::record_error(&tx, id, locked.life.attempt, "lease expired", now).await?;
            freed.extend(locked.freed(&namespace));
            let queue = QueueRef {
                namespace,
                queue: QueueName::new(&locked.queue)?,
            };
            match transition {
                Transition::Dead => {
                    if let Some(owner) = locked.owner {
                        let acked = Acked {
                            id,
                            queue: queue.queue.clone(),
                            state: locked.life.state,
                            run_at: None,
                            owner: Some(owner),
                            attempt: locked.life.attempt,
                        };
                        report.dead_owned.push((queue.namespace.clone(), acked));
                    }
                    report.expired_to_dead.push(queue);
                }
                Transition::Ready | Transition::Scheduled => {
                    woken.push(queue.clone());
                    report.expired_to_ready.push(queue);
                }
            }
        }
        // Keys whose jobs died pass to their next jobs, all locked together.
        let handed_on = Self::free_keys(&tx, &freed).await?;
        let next: Option<i64> = tx
            .query_one(include_str!("../queries/maintenance/next_due.sql"), &[])
            .await
            .map_err(db)?
            .get(0);
        tx.commit().await.map_err(db)?;
        let full = promoted.len() as i64 == MAX_MAINTENANCE_MOVES
            || expired.len() as i64 == MAX_MAINTENANCE_MOVES;
        report.next_due = if full {
            Some(now)
        } else {
            next.map(Timestamp::from_millis)
        };
        let mut ready: BTreeMap<QueueRef, usize> = handed_on;
        for queue in woken {
            *ready.entry(queue).or_default() += 1;
        }
        for (queue, jobs) in &ready {
            self.ready(queue, *jobs);
        }
        Ok(report)
    }
}
