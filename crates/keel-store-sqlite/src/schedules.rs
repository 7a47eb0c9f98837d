//! Schedules on SQLite: one row each (spec and state as JSON), the ledger
//! beside it. A write compares the revision and applies the state, the
//! ledger rows and the fire's jobs in one transaction of the group commit.

use async_trait::async_trait;
use keel_core::schedule::{LEDGER_KEEP, Outcome};
use keel_core::{Error, Namespace, Timestamp};
use keel_store::{
    LedgerEntry, Schedule, ScheduleStore, ScheduleWrite, schedule_moved, schedule_not_found,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::SqliteStore;
use crate::rows::{corrupt, from_json};
use crate::writer::Writer;

const COLUMNS: &str = "namespace, name, spec, state, due_at, rev, created_at, updated_at";

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn schedules_write(
        &self,
        writes: Vec<ScheduleWrite>,
        now: Timestamp,
    ) -> Result<Vec<Result<Schedule, Error>>, Error> {
        let answers = self
            .write(move |w: &mut Writer| {
                let mut answers = Vec::with_capacity(writes.len());
                for mut write in writes {
                    let jobs = std::mem::take(&mut write.jobs);
                    let answer = w.write_owned(jobs, now, |conn| apply(conn, &write, now))?;
                    answers.push(answer);
                }
                Ok(Ok(answers))
            })
            .await?;
        let signal = &self.signal;
        for due in answers.iter().flatten().filter_map(|s| s.due_at) {
            signal.schedule_due(due);
        }
        Ok(answers)
    }

    async fn schedule_get(&self, namespace: &Namespace, name: &str) -> Result<Schedule, Error> {
        let (namespace, name) = (namespace.clone(), name.to_owned());
        self.read(move |conn| {
            Ok(schedule_row(conn, &namespace, &name)?.ok_or_else(|| schedule_not_found(&name)))
        })
        .await
    }

    async fn schedules_list(&self, namespace: &Namespace) -> Result<Vec<Schedule>, Error> {
        let namespace = namespace.clone();
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM schedules WHERE namespace = ?1 ORDER BY name"
                ))?
                .query_map([namespace.as_str()], schedule_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(rows))
        })
        .await
    }

    async fn schedule_delete(&self, namespace: &Namespace, name: &str) -> Result<(), Error> {
        let (namespace, name) = (namespace.clone(), name.to_owned());
        self.write(move |w: &mut Writer| {
            let gone = w
                .conn
                .prepare_cached("DELETE FROM schedules WHERE namespace = ?1 AND name = ?2")?
                .execute(params![namespace.as_str(), name])?;
            w.conn
                .prepare_cached(
                    "DELETE FROM schedule_ledger WHERE namespace = ?1 AND schedule = ?2",
                )?
                .execute(params![namespace.as_str(), name])?;
            Ok(if gone == 0 {
                Err(schedule_not_found(&name))
            } else {
                Ok(())
            })
        })
        .await
    }

    async fn schedule_ledger(
        &self,
        namespace: &Namespace,
        name: &str,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, Error> {
        let (namespace, name) = (namespace.clone(), name.to_owned());
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT nominal, fired_at, outcome, target_id, seq FROM schedule_ledger \
                     WHERE namespace = ?1 AND schedule = ?2 ORDER BY seq DESC LIMIT ?3",
                )?
                .query_map(params![namespace.as_str(), name, limit], |r| {
                    let outcome: String = r.get(2)?;
                    Ok(LedgerEntry {
                        nominal_time: Timestamp::from_millis(r.get(0)?),
                        fired_at: r.get::<_, Option<i64>>(1)?.map(Timestamp::from_millis),
                        outcome: Outcome::parse(&outcome)
                            .ok_or_else(|| corrupt(format!("unknown outcome {outcome:?}")))?,
                        target_id: r.get(3)?,
                        seq: r.get::<_, i64>(4)? as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(rows))
        })
        .await
    }

    async fn schedules_due(&self, now: Timestamp, limit: u32) -> Result<Vec<Schedule>, Error> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM schedules WHERE due_at IS NOT NULL AND due_at <= ?1 \
                     ORDER BY due_at LIMIT ?2"
                ))?
                .query_map(params![now.as_millis(), limit], schedule_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(rows))
        })
        .await
    }

    async fn schedules_next_due(&self) -> Result<Option<Timestamp>, Error> {
        self.read(move |conn| {
            let due: Option<i64> = conn
                .prepare_cached("SELECT min(due_at) FROM schedules WHERE due_at IS NOT NULL")?
                .query_row([], |r| r.get(0))?;
            Ok(Ok(due.map(Timestamp::from_millis)))
        })
        .await
    }
}

/// One write under its revision compare; the jobs follow when it applied.
fn apply(
    conn: &Connection,
    write: &ScheduleWrite,
    now: Timestamp,
) -> rusqlite::Result<Result<(Schedule, bool), Error>> {
    let ns = write.namespace.as_str();
    let spec = crate::rows::to_json("schedule spec", &write.spec)?;
    let state = crate::rows::to_json("schedule state", &write.state)?;
    let due = write.due_at.map(Timestamp::as_millis);
    let applied = if write.rev == 0 {
        let room = crate::namespaces::room_for_one(
            conn,
            &write.namespace,
            "max_schedules",
            "schedules",
            |q| q.max_schedules,
        )?;
        if let Err(e) = room {
            return Ok(Err(e));
        }
        conn.prepare_cached(&format!(
            "INSERT OR IGNORE INTO schedules ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6)"
        ))?
        .execute(params![ns, write.name, spec, state, due, now.as_millis()])?
    } else {
        conn.prepare_cached(
            "UPDATE schedules SET state = ?4, due_at = ?5, rev = rev + 1, \
             updated_at = CASE WHEN spec = ?3 THEN updated_at ELSE ?7 END, spec = ?3 \
             WHERE namespace = ?1 AND name = ?2 AND rev = ?6",
        )?
        .execute(params![
            ns,
            write.name,
            spec,
            state,
            due,
            write.rev as i64,
            now.as_millis()
        ])?
    };
    if applied == 0 {
        return Ok(Err(schedule_moved(&write.name)));
    }
    let mut insert = conn.prepare_cached(
        "INSERT OR REPLACE INTO schedule_ledger \
         (namespace, schedule, nominal, seq, outcome, fired_at, target_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for e in &write.ledger {
        insert.execute(params![
            ns,
            write.name,
            e.nominal_time.as_millis(),
            e.seq as i64,
            e.outcome.as_str(),
            e.fired_at.map(Timestamp::as_millis),
            e.target_id
        ])?;
    }
    if !write.ledger.is_empty() && write.state.ledger_seq > LEDGER_KEEP {
        conn.prepare_cached(
            "DELETE FROM schedule_ledger WHERE namespace = ?1 AND schedule = ?2 AND seq <= ?3",
        )?
        .execute(params![
            ns,
            write.name,
            (write.state.ledger_seq - LEDGER_KEEP) as i64
        ])?;
    }
    let stored = schedule_row(conn, &write.namespace, &write.name)?;
    Ok(stored
        .map(|s| (s, true))
        .ok_or_else(|| schedule_not_found(&write.name)))
}

fn schedule_row(
    conn: &Connection,
    namespace: &Namespace,
    name: &str,
) -> rusqlite::Result<Option<Schedule>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM schedules WHERE namespace = ?1 AND name = ?2"
    ))?
    .query_row(params![namespace.as_str(), name], schedule_from_row)
    .optional()
}

fn schedule_from_row(r: &Row<'_>) -> rusqlite::Result<Schedule> {
    let namespace: String = r.get(0)?;
    Ok(Schedule {
        namespace: Namespace::new(&namespace).map_err(|e| corrupt(e.message))?,
        name: r.get(1)?,
        spec: from_json(&r.get::<_, String>(2)?)?,
        state: from_json(&r.get::<_, String>(3)?)?,
        due_at: r.get::<_, Option<i64>>(4)?.map(Timestamp::from_millis),
        rev: r.get::<_, i64>(5)? as u64,
        created_at: Timestamp::from_millis(r.get(6)?),
        updated_at: Timestamp::from_millis(r.get(7)?),
    })
}
