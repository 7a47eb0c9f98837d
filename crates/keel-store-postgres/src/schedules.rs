//! Schedules on PostgreSQL: one row each (spec and state as JSON text), the
//! ledger beside it. A write is one transaction: the revision compare, the
//! state, the ledger rows and the fire's jobs. A batch runs its writes side
//! by side on the pool, each on its own.

use futures_util::StreamExt;
use keel_core::schedule::LEDGER_KEEP;
use keel_core::schedule::Outcome;
use keel_core::{Error, Namespace, Timestamp};
use keel_store::{
    LedgerEntry, Schedule, ScheduleStore, ScheduleWrite, schedule_moved, schedule_not_found,
};
use tokio_postgres::Row;

use crate::owner::OwnedRows;
use crate::{PostgresStore, db};

/// Writes of one batch in flight at once.
const PARALLEL_WRITES: usize = 8;

#[async_trait::async_trait]
impl ScheduleStore for PostgresStore {
    async fn schedules_write(
        &self,
        writes: Vec<ScheduleWrite>,
        now: Timestamp,
    ) -> Result<Vec<Result<Schedule, Error>>, Error> {
        Ok(futures_util::stream::iter(writes)
            .map(|write| self.schedule_write(write, now))
            .buffered(PARALLEL_WRITES)
            .collect()
            .await)
    }

    async fn schedule_get(&self, namespace: &Namespace, name: &str) -> Result<Schedule, Error> {
        let row = self
            .client()
            .await?
            .query_opt(
                include_str!("../queries/schedules/schedule_get.sql"),
                &[&namespace.as_str(), &name],
            )
            .await
            .map_err(db)?;
        row.as_ref()
            .map(schedule_from_row)
            .unwrap_or_else(|| Err(schedule_not_found(name)))
    }

    async fn schedules_list(&self, namespace: &Namespace) -> Result<Vec<Schedule>, Error> {
        self.client()
            .await?
            .query(
                include_str!("../queries/schedules/schedules_list.sql"),
                &[&namespace.as_str()],
            )
            .await
            .map_err(db)?
            .iter()
            .map(schedule_from_row)
            .collect()
    }

    async fn schedule_delete(&self, namespace: &Namespace, name: &str) -> Result<(), Error> {
        let gone: i64 = self
            .client()
            .await?
            .query_one(
                include_str!("../queries/schedules/schedule_delete.sql"),
                &[&namespace.as_str(), &name],
            )
            .await
            .map_err(db)?
            .get(0);
        if gone == 0 {
            return Err(schedule_not_found(name));
        }
        Ok(())
    }

    async fn schedule_ledger(
        &self,
        namespace: &Namespace,
        name: &str,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, Error> {
        self.client()
            .await?
            .query(
                include_str!("../queries/schedules/ledger_list.sql"),
                &[&namespace.as_str(), &name, &i64::from(limit)],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|r| {
                let outcome: &str = r.get(2);
                Ok(LedgerEntry {
                    nominal_time: Timestamp::from_millis(r.get(0)),
                    fired_at: r.get::<_, Option<i64>>(1).map(Timestamp::from_millis),
                    outcome: Outcome::parse(outcome).ok_or_else(|| {
                        Error::internal(format!("corrupt ledger outcome {outcome:?}"))
                    })?,
                    target_id: r.get(3),
                    seq: r.get::<_, i64>(4) as u64,
                })
            })
            .collect()
    }

    async fn schedules_due(&self, now: Timestamp, limit: u32) -> Result<Vec<Schedule>, Error> {
        self.client()
            .await?
            .query(
                include_str!("../queries/schedules/schedules_due.sql"),
                &[&now.as_millis(), &i64::from(limit)],
            )
            .await
            .map_err(db)?
            .iter()
            .map(schedule_from_row)
            .collect()
    }

    async fn schedules_next_due(&self) -> Result<Option<Timestamp>, Error> {
        let row = self
            .client()
            .await?
            .query_one(
                include_str!("../queries/schedules/schedules_next_due.sql"),
                &[],
            )
            .await
            .map_err(db)?;
        Ok(row.get::<_, Option<i64>>(0).map(Timestamp::from_millis))
    }
}

impl PostgresStore {
    async fn schedule_write(
        &self,
        write: ScheduleWrite,
        now: Timestamp,
    ) -> Result<Schedule, Error> {
        let ScheduleWrite {
            namespace,
            name,
            rev,
            spec,
            state,
            due_at,
            ledger,
            jobs,
        } = write;
        let ns = namespace.as_str();
        let spec = keel_store::codec::encode("schedule spec", &spec)?;
        let state_text = keel_store::codec::encode("schedule state", &state)?;
        let due = due_at.map(Timestamp::as_millis);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let row = if rev == 0 {
            crate::namespaces::room_for_one(
                &tx,
                &namespace,
                "max_schedules",
                include_str!("../queries/schedules/count.sql"),
                |q| q.max_schedules,
            )
            .await?;
            tx.query_opt(
                include_str!("../queries/schedules/schedule_insert.sql"),
                &[&ns, &name, &spec, &state_text, &due, &now.as_millis()],
            )
            .await
        } else {
            tx.query_opt(
                include_str!("../queries/schedules/schedule_update.sql"),
                &[
                    &ns,
                    &name,
                    &spec,
                    &state_text,
                    &due,
                    &(rev as i64),
                    &now.as_millis(),
                ],
            )
            .await
        }
        .map_err(db)?;
        let Some(row) = row else {
            return Err(schedule_moved(&name));
        };
        if !ledger.is_empty() {
            let nominal: Vec<i64> = ledger.iter().map(|e| e.nominal_time.as_millis()).collect();
            let seq: Vec<i64> = ledger.iter().map(|e| e.seq as i64).collect();
            let outcome: Vec<&str> = ledger.iter().map(|e| e.outcome.as_str()).collect();
            let fired: Vec<Option<i64>> = ledger
                .iter()
                .map(|e| e.fired_at.map(Timestamp::as_millis))
                .collect();
            let target: Vec<Option<&str>> = ledger.iter().map(|e| e.target_id.as_deref()).collect();
            tx.execute(
                include_str!("../queries/schedules/ledger_put.sql"),
                &[&ns, &name, &nominal, &seq, &outcome, &fired, &target],
            )
            .await
            .map_err(db)?;
            if state.ledger_seq > LEDGER_KEEP {
                tx.execute(
                    include_str!("../queries/schedules/ledger_trim.sql"),
                    &[&ns, &name, &((state.ledger_seq - LEDGER_KEEP) as i64)],
                )
                .await
                .map_err(db)?;
            }
        }
        let woken = self
            .insert_owned(&tx, OwnedRows::new(&jobs, now)?, now)
            .await?;
        tx.commit().await.map_err(db)?;
        self.wake(woken, now);
        if let Some(due) = due_at {
            self.schedule_due(due, now);
        }
        schedule_from_row(&row)
    }
}

fn schedule_from_row(r: &Row) -> Result<Schedule, Error> {
    let corrupt = |what: &str, e: String| Error::internal(format!("corrupt schedule {what}: {e}"));
    let namespace: &str = r.get(0);
    let spec: &str = r.get(2);
    let state: &str = r.get(3);
    Ok(Schedule {
        namespace: Namespace::new(namespace).map_err(|e| corrupt("namespace", e.message))?,
        name: r.get(1),
        spec: serde_json::from_str(spec).map_err(|e| corrupt("spec", e.to_string()))?,
        state: serde_json::from_str(state).map_err(|e| corrupt("state", e.to_string()))?,
        due_at: r.get::<_, Option<i64>>(4).map(Timestamp::from_millis),
        rev: r.get::<_, i64>(5) as u64,
        created_at: Timestamp::from_millis(r.get(6)),
        updated_at: Timestamp::from_millis(r.get(7)),
    })
}
