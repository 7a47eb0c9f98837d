//! Maintenance on the embedded store: due scheduled jobs and expired leases
//! come off the front of the hot index's time-ordered sets, so a pass costs
//! what it moves. The embedded store is always its own leader.

use async_trait::async_trait;
use keel_core::{Error, Timestamp, Transition};
use keel_store::{Acked, MaintenanceReport, MaintenanceStore};
use rusqlite::params;

use crate::SqliteStore;
use crate::writer::{Applied, Writer, index_out_of_step};

/// How many jobs one maintenance pass moves at most, so that other writes wait
/// no longer than one such batch; the next pass follows at once.
const MAX_MAINTENANCE_MOVES: usize = 10_000;

#[async_trait]
impl MaintenanceStore for SqliteStore {
    async fn maintenance_run(&self, now: Timestamp) -> Result<MaintenanceReport, Error> {
        self.write(move |w| w.maintenance(now)).await
    }
}

impl Writer {
    pub(crate) fn maintenance(&mut self, now: Timestamp) -> Applied<MaintenanceReport> {
        let mut report = MaintenanceReport::default();
        let mut moves = 0;
        while let Some(&(run_at, seq, id)) = self.hot.scheduled.first() {
            if run_at > now || moves == MAX_MAINTENANCE_MOVES {
                break;
            }
            self.hot.update(id, |job| job.life.promote(now));
            self.conn
                .prepare_cached("UPDATE jobs SET state = 'ready', updated_at = ?1 WHERE seq = ?2")?
                .execute(params![now.as_millis(), seq])?;
            report.promoted += 1;
            moves += 1;
        }
        while let Some(&(expires_at, id)) = self.hot.leases.first() {
            if expires_at > now || moves == MAX_MAINTENANCE_MOVES {
                break;
            }
            let expired = self.hot.update(id, |job| {
                job.life.expire(now).map(|t| {
                    (
                        t,
                        job.seq,
                        job.queue_idx(),
                        job.life.clone(),
                        job.owner().cloned(),
                    )
                })
            });
            let Some(Some((transition, seq, queue, life, owner))) = expired else {
                return Err(index_out_of_step());
            };
            self.record_failure(seq, &life, "lease expired", now)?;
            let queue = self.hot.queues[queue].queue.clone();
            match transition {
                Transition::Dead => {
                    if let Some(owner) = owner {
                        let acked = Acked {
                            id,
                            queue: queue.queue.clone(),
                            state: life.state,
                            run_at: None,
                            owner: Some(owner),
                            attempt: life.attempt,
                        };
                        report.dead_owned.push((queue.namespace.clone(), acked));
                    }
                    report.expired_to_dead.push(queue);
                }
                Transition::Ready | Transition::Scheduled => report.expired_to_ready.push(queue),
            }
            moves += 1;
        }
        report.next_due = if moves == MAX_MAINTENANCE_MOVES {
            Some(now)
        } else {
            self.hot.next_due()
        };
        Ok(Ok(report))
    }
}
