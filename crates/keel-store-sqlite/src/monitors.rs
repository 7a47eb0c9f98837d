//! Monitors on SQLite: a result is one writer command (read the monitor and
//! its unresolved incident, fold, write the counters, the result, the hour,
//! the incident and its jobs), so nothing interleaves between the read and
//! the write; an incident's move is the same. Reads inside a writer command
//! see everything written before it.

use async_trait::async_trait;
use keel_core::monitor::{
    Incident, IncidentMove, IncidentStatus, MonitorSpec, MonitorState, NewIncident, ProbeResult,
    Status, TimelineEntry, monitor_key,
};
use keel_core::{Error, IncidentId, Namespace, Timestamp};
use keel_store::{
    IncidentQuery, IncidentRef, IncidentWrite, Monitor, MonitorStore, Moved, NewResult, OwnedJob,
    Recorded, StoredResult, UptimeHour, fold_result, hour_of, incident_not_found,
    monitor_not_found,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::SqliteStore;
use crate::rows::{from_json, id_bytes, to_json};
use crate::writer::{Applied, Writer};

const MONITOR_COLUMNS: &str = "name, spec, token, state, incident, created_at, updated_at";

fn monitor_from_row(r: &Row<'_>) -> rusqlite::Result<Monitor> {
    let incident: Option<Vec<u8>> = r.get(4)?;
    Ok(Monitor {
        name: r.get(0)?,
        spec: from_json(&r.get::<_, String>(1)?)?,
        token: r.get(2)?,
        state: from_json(&r.get::<_, String>(3)?)?,
        incident: incident
            .map(|b| id_bytes(&b).map(IncidentId::from_bytes))
            .transpose()?,
        created_at: Timestamp::from_millis(r.get(5)?),
        updated_at: Timestamp::from_millis(r.get(6)?),
    })
}

fn monitor_row(conn: &Connection, ns: &str, name: &str) -> rusqlite::Result<Option<Monitor>> {
    conn.prepare_cached(&format!(
        "SELECT {MONITOR_COLUMNS} FROM monitors WHERE namespace = ?1 AND name = ?2"
    ))?
    .query_row(params![ns, name], monitor_from_row)
    .optional()
}

fn incident_from_row(r: &Row<'_>) -> rusqlite::Result<Incident> {
    from_json(&r.get::<_, String>(0)?)
}

fn incident_row(
    conn: &Connection,
    ns: &str,
    id: &IncidentId,
) -> rusqlite::Result<Option<Incident>> {
    conn.prepare_cached("SELECT body FROM incidents WHERE namespace = ?1 AND id = ?2")?
        .query_row(params![ns, &id.as_bytes()[..]], incident_from_row)
        .optional()
}

fn unresolved(conn: &Connection, ns: &str, key: &str) -> rusqlite::Result<Option<Incident>> {
    conn.prepare_cached(
        "SELECT body FROM incidents \
         WHERE namespace = ?1 AND dedup_key = ?2 AND status <> 'resolved'",
    )?
    .query_row(params![ns, key], incident_from_row)
    .optional()
}

fn insert_incident(conn: &Connection, ns: &str, incident: &Incident) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO incidents (namespace, id, dedup_key, monitor, status, body, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        ns,
        &incident.id.as_bytes()[..],
        incident.dedup_key,
        incident.monitor,
        incident.status.as_str(),
        to_json("incident", incident)?,
        incident.updated_at.as_millis()
    ])?;
    Ok(())
}

fn update_incident(conn: &Connection, ns: &str, incident: &Incident) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE incidents SET status = ?3, body = ?4, updated_at = ?5 \
         WHERE namespace = ?1 AND id = ?2",
    )?
    .execute(params![
        ns,
        &incident.id.as_bytes()[..],
        incident.status.as_str(),
        to_json("incident", incident)?,
        incident.updated_at.as_millis()
    ])?;
    Ok(())
}

fn set_state(
    conn: &Connection,
    ns: &str,
    name: &str,
    state: &MonitorState,
    incident: Option<IncidentId>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE monitors SET state = ?3, incident = ?4 WHERE namespace = ?1 AND name = ?2",
    )?
    .execute(params![
        ns,
        name,
        to_json("monitor state", state)?,
        incident.map(|i| i.as_bytes().to_vec())
    ])?;
    Ok(())
}

fn record(w: &mut Writer, mut new: NewResult, now: Timestamp) -> Applied<Recorded> {
    let ns = new.namespace.as_str().to_owned();
    let Some(monitor) = monitor_row(&w.conn, &ns, &new.monitor)? else {
        return Ok(Err(monitor_not_found(&new.monitor)));
    };
    let open = unresolved(&w.conn, &ns, &monitor_key(&new.monitor))?;
    let mut folded = fold_result(&monitor, open, &mut new, now);
    let jobs = std::mem::take(&mut folded.jobs);
    let written = w.write_owned(jobs, now, |conn| {
        set_state(conn, &ns, &new.monitor, &folded.state, folded.open)?;
        conn.prepare_cached(
            "INSERT INTO monitor_results (namespace, monitor, at, body) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            ns,
            new.monitor,
            new.result.at.as_millis(),
            to_json("result", &new.result)?
        ])?;
        if folded.up + folded.down > 0 {
            conn.prepare_cached(
                "INSERT INTO monitor_hours (namespace, monitor, hour, up, down) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO UPDATE \
                 SET up = up + excluded.up, down = down + excluded.down",
            )?
            .execute(params![
                ns,
                new.monitor,
                hour_of(new.result.at).as_millis(),
                folded.up as i64,
                folded.down as i64
            ])?;
        }
        match &folded.incident {
            IncidentWrite::Insert(incident) => insert_incident(conn, &ns, incident)?,
            IncidentWrite::Update(incident) => update_incident(conn, &ns, incident)?,
            IncidentWrite::None => {}
        }
        Ok(Ok(((), true)))
    })?;
    if let Err(e) = written {
        return Ok(Err(e));
    }
    let incident = match folded.incident {
        IncidentWrite::Insert(i) | IncidentWrite::Update(i) => Some(i),
        IncidentWrite::None => None,
    };
    Ok(Ok(Recorded {
        monitor: Monitor {
            state: folded.state,
            incident: folded.open,
            ..monitor
        },
        change: folded.change,
        incident,
    }))
}

fn open_incident(
    w: &mut Writer,
    ns: &str,
    new: NewIncident,
    jobs: Vec<OwnedJob>,
    now: Timestamp,
) -> Applied<(Incident, bool)> {
    if let Some(mut incident) = unresolved(&w.conn, ns, &new.dedup_key)? {
        let mut again = TimelineEntry::new(now, "triggered");
        again.text = Some(new.summary);
        incident.timeline.push(again);
        incident.updated_at = now;
        update_incident(&w.conn, ns, &incident)?;
        return Ok(Ok((incident, false)));
    }
    let incident = new.open(now);
    w.write_owned(jobs, now, |conn| {
        insert_incident(conn, ns, &incident)?;
        Ok(Ok(((), true)))
    })
    .map(|r| r.map(|()| (incident, true)))
}

fn move_incident(
    w: &mut Writer,
    ns: &str,
    which: &IncidentRef,
    change: &IncidentMove,
    jobs: Vec<OwnedJob>,
    now: Timestamp,
) -> Applied<Moved> {
    let current = match which {
        IncidentRef::Id(id) => incident_row(&w.conn, ns, id)?,
        IncidentRef::Key(key) => unresolved(&w.conn, ns, key)?,
    };
    let Some(current) = current else {
        return Ok(Err(incident_not_found(which)));
    };
    if !change.applies(&current) {
        return Ok(Ok(Moved {
            incident: current,
            applied: false,
        }));
    }
    let mut incident = current;
    change.apply(&mut incident, now);
    let resolved_by_hand = incident.status == IncidentStatus::Resolved;
    let monitor = match (&incident.monitor, resolved_by_hand) {
        (Some(name), true) => monitor_row(&w.conn, ns, name)?,
        _ => None,
    };
    let written = w.write_owned(jobs, now, |conn| {
        update_incident(conn, ns, &incident)?;
        // Resolved while its monitor is still down: the monitor starts
        // counting failures again, so a fault that lasts opens a new one.
        if let Some(m) = monitor.filter(|m| m.incident == Some(incident.id)) {
            let mut state = m.state;
            if state.status == Status::Down {
                state.status = Status::Failing;
                state.failures = 0;
            }
            set_state(conn, ns, &m.name, &state, None)?;
        }
        Ok(Ok(((), true)))
    })?;
    Ok(written.map(|()| Moved {
        incident,
        applied: true,
    }))
}

#[async_trait]
impl MonitorStore for SqliteStore {
    async fn monitor_put(
        &self,
        namespace: &Namespace,
        name: &str,
        spec: &MonitorSpec,
        token: &str,
        now: Timestamp,
    ) -> Result<(Monitor, bool), Error> {
        let (ns, name, spec, token) = (
            namespace.as_str().to_owned(),
            name.to_owned(),
            spec.clone(),
            token.to_owned(),
        );
        self.write(move |w: &mut Writer| {
            let conn = &w.conn;
            let text = to_json("monitor", &spec)?;
            let created =
                conn.prepare_cached(
                    "INSERT INTO monitors (namespace, name, spec, token, state, created_at, \
                     updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    ns,
                    name,
                    text,
                    token,
                    to_json("monitor state", &MonitorState::default())?,
                    now.as_millis()
                ])? == 1;
            if !created {
                conn.prepare_cached(
                    "UPDATE monitors SET spec = ?3, updated_at = ?4 \
                     WHERE namespace = ?1 AND name = ?2 AND spec <> ?3",
                )?
                .execute(params![ns, name, text, now.as_millis()])?;
            }
            Ok(monitor_row(conn, &ns, &name)?
                .map(|m| (m, created))
                .ok_or_else(|| monitor_not_found(&name)))
        })
        .await
    }

    async fn monitor_get(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<Option<Monitor>, Error> {
        let (ns, name) = (namespace.as_str().to_owned(), name.to_owned());
        self.read(move |conn| Ok(Ok(monitor_row(conn, &ns, &name)?)))
            .await
    }

    async fn monitors_list(
        &self,
        namespace: &Namespace,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Monitor>, Error> {
        let (ns, after) = (namespace.as_str().to_owned(), after.map(str::to_owned));
        self.read(move |conn| {
            let monitors = conn
                .prepare_cached(&format!(
                    "SELECT {MONITOR_COLUMNS} FROM monitors \
                     WHERE namespace = ?1 AND (?2 IS NULL OR name > ?2) ORDER BY name LIMIT ?3"
                ))?
                .query_map(params![ns, after, limit], monitor_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(monitors))
        })
        .await
    }

    async fn monitor_delete(
        &self,
        namespace: &Namespace,
        name: &str,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let (ns, name) = (namespace.as_str().to_owned(), name.to_owned());
        self.write(move |w: &mut Writer| {
            let conn = &w.conn;
            let gone = conn
                .prepare_cached("DELETE FROM monitors WHERE namespace = ?1 AND name = ?2")?
                .execute(params![ns, name])?
                > 0;
            if gone {
                for table in ["monitor_results", "monitor_hours"] {
                    conn.prepare_cached(&format!(
                        "DELETE FROM {table} WHERE namespace = ?1 AND monitor = ?2"
                    ))?
                    .execute(params![ns, name])?;
                }
                if let Some(mut incident) = unresolved(conn, &ns, &monitor_key(&name))? {
                    IncidentMove::Resolve {
                        by: "the monitor was deleted".into(),
                    }
                    .apply(&mut incident, now);
                    update_incident(conn, &ns, &incident)?;
                }
            }
            Ok(Ok(gone))
        })
        .await
    }

    async fn monitor_by_token(&self, token: &str) -> Result<Option<(Namespace, String)>, Error> {
        let token = token.to_owned();
        self.read(move |conn| {
            let found: Option<(String, String)> = conn
                .prepare_cached("SELECT namespace, name FROM monitors WHERE token = ?1")?
                .query_row(params![token], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            Ok(found
                .map(|(ns, name)| Namespace::new(&ns).map(|ns| (ns, name)))
                .transpose())
        })
        .await
    }

    async fn monitor_record(&self, result: NewResult, now: Timestamp) -> Result<Recorded, Error> {
        self.write(move |w: &mut Writer| record(w, result, now))
            .await
    }

    async fn monitor_results(
        &self,
        namespace: &Namespace,
        name: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredResult>, Error> {
        let (ns, name) = (namespace.as_str().to_owned(), name.to_owned());
        self.read(move |conn| {
            let read = |r: &Row<'_>| {
                Ok(StoredResult {
                    seq: r.get::<_, i64>(0)? as u64,
                    result: from_json::<ProbeResult>(&r.get::<_, String>(1)?)?,
                })
            };
            let mut results = match after {
                Some(after) => conn
                    .prepare_cached(
                        "SELECT seq, body FROM monitor_results WHERE namespace = ?1 \
                         AND monitor = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
                    )?
                    .query_map(params![ns, name, after as i64, limit], read)?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
                None => conn
                    .prepare_cached(
                        "SELECT seq, body FROM monitor_results WHERE namespace = ?1 \
                         AND monitor = ?2 ORDER BY seq DESC LIMIT ?3",
                    )?
                    .query_map(params![ns, name, limit], read)?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
            };
            if after.is_none() {
                results.reverse();
            }
            Ok(Ok(results))
        })
        .await
    }

    async fn monitor_uptime(
        &self,
        namespace: &Namespace,
        name: &str,
        since: Timestamp,
    ) -> Result<Vec<UptimeHour>, Error> {
        let (ns, name) = (namespace.as_str().to_owned(), name.to_owned());
        self.read(move |conn| {
            let hours = conn
                .prepare_cached(
                    "SELECT hour, up, down FROM monitor_hours WHERE namespace = ?1 \
                     AND monitor = ?2 AND hour >= ?3 ORDER BY hour",
                )?
                .query_map(params![ns, name, since.as_millis()], |r| {
                    Ok(UptimeHour {
                        hour: Timestamp::from_millis(r.get(0)?),
                        up: r.get::<_, i64>(1)? as u64,
                        down: r.get::<_, i64>(2)? as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(hours))
        })
        .await
    }

    async fn incident_open(
        &self,
        namespace: &Namespace,
        incident: NewIncident,
        jobs: Vec<OwnedJob>,
        now: Timestamp,
    ) -> Result<(Incident, bool), Error> {
        let ns = namespace.as_str().to_owned();
        self.write(move |w: &mut Writer| open_incident(w, &ns, incident, jobs, now))
            .await
    }

    async fn incident_move(
        &self,
        namespace: &Namespace,
        incident: &IncidentRef,
        change: IncidentMove,
        jobs: Vec<OwnedJob>,
        now: Timestamp,
    ) -> Result<Moved, Error> {
        let (ns, which) = (namespace.as_str().to_owned(), incident.clone());
        self.write(move |w: &mut Writer| move_incident(w, &ns, &which, &change, jobs, now))
            .await
    }

    async fn incident_get(
        &self,
        namespace: &Namespace,
        id: &IncidentId,
    ) -> Result<Option<Incident>, Error> {
        let (ns, id) = (namespace.as_str().to_owned(), *id);
        self.read(move |conn| Ok(Ok(incident_row(conn, &ns, &id)?)))
            .await
    }

    async fn incident_by_key(
        &self,
        namespace: &Namespace,
        dedup_key: &str,
    ) -> Result<Option<Incident>, Error> {
        let (ns, key) = (namespace.as_str().to_owned(), dedup_key.to_owned());
        self.read(move |conn| Ok(Ok(unresolved(conn, &ns, &key)?)))
            .await
    }

    async fn incidents_list(
        &self,
        namespace: &Namespace,
        query: &IncidentQuery,
    ) -> Result<Vec<Incident>, Error> {
        let ns = namespace.as_str().to_owned();
        let status = query.status.map(IncidentStatus::as_str);
        let monitor = query.monitor.clone();
        let before = query.before.map(|b| b.as_bytes().to_vec());
        let limit = query.limit;
        self.read(move |conn| {
            let incidents = conn
                .prepare_cached(
                    "SELECT body FROM incidents WHERE namespace = ?1 \
                     AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR monitor = ?3) \
                     AND (?4 IS NULL OR id < ?4) ORDER BY id DESC LIMIT ?5",
                )?
                .query_map(
                    params![ns, status, monitor, before, limit],
                    incident_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(incidents))
        })
        .await
    }

    async fn monitors_prune(
        &self,
        results_before: Timestamp,
        hours_before: Timestamp,
        limit: u32,
    ) -> Result<u64, Error> {
        self.write(move |w: &mut Writer| {
            let conn = &w.conn;
            let results = conn
                .prepare_cached(
                    "DELETE FROM monitor_results WHERE seq IN \
                     (SELECT seq FROM monitor_results WHERE at < ?1 LIMIT ?2)",
                )?
                .execute(params![results_before.as_millis(), limit])?;
            let hours = conn
                .prepare_cached(
                    "DELETE FROM monitor_hours WHERE (namespace, monitor, hour) IN \
                     (SELECT namespace, monitor, hour FROM monitor_hours WHERE hour < ?1 LIMIT ?2)",
                )?
                .execute(params![hours_before.as_millis(), limit])?;
            Ok(Ok((results + hours) as u64))
        })
        .await
    }
}
